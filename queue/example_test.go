package queue_test

import (
	"context"
	"fmt"
	"log"
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
