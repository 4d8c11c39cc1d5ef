package queue

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outgrow/outgrow/internal/redistest"
)

// BenchmarkMemoryThroughput: jobs enqueued in batches of 100 and run by a Worker with a no-op
// handler, in one process (ns/op and allocs/op are per job, enqueue and run together).
func BenchmarkMemoryThroughput(b *testing.B) {
	s, err := NewMemoryStore(MemoryConfig{})
	if err != nil {
		b.Fatal(err)
	}
	q, _ := New(s, Config{})
	var done atomic.Int64
	finished := make(chan struct{})
	target := int64(b.N)
	w, err := NewWorker(s, WorkerConfig{Logger: quiet, Queues: map[string]QueueConfig{DefaultQueue: {Concurrency: 64,
		Handler: func(context.Context, *Delivery) error {
			if done.Add(1) == target {
				close(finished)
			}
			return nil
		}}}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() { ran <- w.Run(ctx) }()
	payload := make([]byte, 64)
	batch := make([]Job, 100)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(batch) {
		n := min(len(batch), b.N-i)
		for k := range n {
			batch[k] = Job{Payload: payload}
		}
		if _, err := q.EnqueueMany(ctx, batch[:n]); err != nil {
			b.Fatal(err)
		}
	}
	<-finished
	b.StopTimer()
	stop()
	<-ran
}

// BenchmarkMemoryEnqueue: one Enqueue of a 64-byte job.
func BenchmarkMemoryEnqueue(b *testing.B) {
	s, _ := NewMemoryStore(MemoryConfig{})
	q, _ := New(s, Config{})
	payload := make([]byte, 64)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := q.Enqueue(ctx, Job{Payload: payload}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedisDrain: b.N jobs of 64 bytes, enqueued beforehand, drained by a Worker of
// concurrency 16 with a no-op handler, on a real Redis (OUTGROW_REDIS_URL) or miniredis
// (ns/op per job; roundtrips/job counts the store's calls while draining).
func BenchmarkRedisDrain(b *testing.B) {
	s, q := benchRedisQueue(b)
	ctx := context.Background()
	payload := make([]byte, 64)
	for i := 0; i < b.N; i += 1000 {
		batch := make([]Job, min(1000, b.N-i))
		for k := range batch {
			batch[k].Payload = payload
		}
		if _, err := q.EnqueueMany(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	var done atomic.Int64
	finished := make(chan struct{})
	w, err := NewWorker(s, WorkerConfig{Logger: quiet, Queues: map[string]QueueConfig{DefaultQueue: {Concurrency: 16,
		Handler: func(context.Context, *Delivery) error {
			if done.Add(1) == int64(b.N) {
				close(finished)
			}
			return nil
		}}}})
	if err != nil {
		b.Fatal(err)
	}
	calls := s.Stats().Calls
	b.ResetTimer()
	wctx, stop := context.WithCancel(ctx)
	ran := make(chan error)
	go func() { ran <- w.Run(wctx) }()
	<-finished
	b.StopTimer()
	b.ReportMetric(float64(s.Stats().Calls-calls)/float64(b.N), "roundtrips/job")
	stop()
	<-ran
}

// BenchmarkRedisEnqueue: one Enqueue of a 64-byte job, one at a time, on a real Redis
// (OUTGROW_REDIS_URL) or miniredis: the API's cost of handing work off.
func BenchmarkRedisEnqueue(b *testing.B) {
	_, q := benchRedisQueue(b)
	ctx := context.Background()
	payload := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := q.Enqueue(ctx, Job{Payload: payload}); err != nil {
			b.Fatal(err)
		}
	}
}

// benchRedisQueue returns a Queue over a RedisStore on a real Redis when OUTGROW_REDIS_URL is
// set, on miniredis otherwise (the figures then say little), under the benchmark's prefix.
func benchRedisQueue(b *testing.B) (*RedisStore, *Queue) {
	kind := redistest.Miniredis
	if slices.Contains(redistest.Kinds(), redistest.Redis) {
		kind = redistest.Redis
	}
	be := redistest.Open(b, kind)
	s, err := NewRedisStore(be.Client, RedisConfig{Prefix: be.Prefix, Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	q, err := New(s, Config{})
	if err != nil {
		b.Fatal(err)
	}
	return s, q
}
