package queue_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/outgrow/outgrow/queue"
)

// An API enqueues a welcome email and answers at once; a worker sends it in the background.
// With a RedisStore the worker can be another process, on any instance.
func Example() {
	store, _ := queue.NewMemoryStore(queue.MemoryConfig{})
	q, _ := queue.New(store, queue.Config{})

	type email struct{ To, Subject string }
	// In the request handler: one call, and the response goes out.
	_, err := queue.EnqueueJSON(context.Background(), q, queue.Job{Queue: "emails"}, email{To: "ada@example.com", Subject: "Welcome"})
	if err != nil {
		log.Fatal(err)
	}

	sent := make(chan string, 1)
	w, _ := queue.NewWorker(store, queue.WorkerConfig{Queues: map[string]queue.QueueConfig{
		"emails": {Concurrency: 5, Handler: queue.JSONHandler(func(ctx context.Context, d *queue.Delivery, e email) error {
			sent <- e.To // ... send it; an error retries it later, with backoff
			return nil
		})},
	}})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }() // until SIGTERM, in a real service

	fmt.Println("sent to", <-sent)
	stop()
	<-done
	// Output: sent to ada@example.com
}

// In tests, Work runs the due jobs at a known point.
func ExampleWorker_Work() {
	store, _ := queue.NewMemoryStore(queue.MemoryConfig{})
	q, _ := queue.New(store, queue.Config{})
	w, _ := queue.NewWorker(store, queue.WorkerConfig{Queues: map[string]queue.QueueConfig{
		"reports": {Handler: func(ctx context.Context, d *queue.Delivery) error {
			fmt.Printf("rendering report %s\n", d.Payload)
			return nil
		}},
	}})
	_, _ = q.Enqueue(context.Background(), queue.Job{Queue: "reports", Payload: []byte("2026-Q4")})
	_, _ = q.Enqueue(context.Background(), queue.Job{Queue: "reports", Payload: []byte("later"), Delay: time.Hour})
	n, _ := w.Work(context.Background())
	fmt.Println(n, "run")
	// Output:
	// rendering report 2026-Q4
	// 1 run
}

// Twenty slots shared by three queues: while all have jobs, critical gets 6 of every 10 free
// slots, default 3 and low 1 (and never more than 5 at once); an empty queue leaves its share
// to the others. Work, for tests, serves them by rank.
func ExampleWorkerConfig_weights() {
	store, _ := queue.NewMemoryStore(queue.MemoryConfig{})
	q, _ := queue.New(store, queue.Config{})
	handle := func(ctx context.Context, d *queue.Delivery) error {
		fmt.Println(d.Queue, string(d.Payload))
		return nil
	}
	w, _ := queue.NewWorker(store, queue.WorkerConfig{Concurrency: 20, Queues: map[string]queue.QueueConfig{
		"critical": {Handler: handle, Weight: 6},
		"default":  {Handler: handle, Weight: 3},
		"low":      {Handler: handle, Weight: 1, Concurrency: 5},
	}})
	ctx := context.Background()
	_, _ = q.EnqueueMany(ctx, []queue.Job{
		{Queue: "low", Payload: []byte("monthly report")},
		{Queue: "default", Payload: []byte("welcome email")},
		{Queue: "critical", Payload: []byte("payment receipt")},
	})
	_, _ = w.Work(ctx)
	// Output:
	// critical payment receipt
	// default welcome email
	// low monthly report
}

// Operators read the queues through a JSON endpoint behind their own authorization, and
// pause a queue during an incident.
func ExampleQueue_Handler() {
	store, _ := queue.NewMemoryStore(queue.MemoryConfig{})
	q, _ := queue.New(store, queue.Config{})
	ctx := context.Background()
	_, _ = q.Enqueue(ctx, queue.Job{Queue: "emails", Payload: []byte("hello")})
	_ = q.Pause(ctx, "emails") // the mail provider is down: hold the emails

	h, err := q.Handler(queue.HandlerConfig{Authorize: func(r *http.Request) bool {
		return r.Header.Get("Authorization") == "Bearer "+os.Getenv("OPS_TOKEN")
	}})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/queues/", http.StripPrefix("/admin/queues", h))

	r := httptest.NewRequest("GET", "/admin/queues/emails", nil)
	r.Header.Set("Authorization", "Bearer "+os.Getenv("OPS_TOKEN"))
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, r)
	var st struct {
		Name   string
		Due    int
		Paused bool
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &st) // {"name":"emails","due":1,...,"lag_seconds":0.001,"paused":true}
	fmt.Println(rec.Code, st.Name, st.Due, st.Paused)
	// Output: 200 emails 1 true
}
