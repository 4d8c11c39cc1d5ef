package queue

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

// TestRedisFrozen: with a real redis-server frozen (SIGSTOP) mid-use, an Enqueue returns within
// about Timeout with ErrUnavailable, a Worker shuts down within its bounds, and once Redis is
// back, enqueueing the same ID again (as Enqueue's doc advises) stores the job at most once,
// whether or not the frozen call's script ran when Redis woke up.
func TestRedisFrozen(t *testing.T) {
	srv := redistest.StartServer(t, 0)
	client := func() *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	cfg := RedisConfig{Timeout: 100 * time.Millisecond, RetryInterval: 50 * time.Millisecond, Logger: quiet}
	producer, err := NewRedisStore(client(), cfg)
	require.NoError(t, err)
	consumer, err := NewRedisStore(client(), cfg)
	require.NoError(t, err)
	q := newQueue(t, producer)
	ctx := context.Background()

	var runs atomic.Int32
	w, err := NewWorker(consumer, WorkerConfig{Logger: quiet, Lease: time.Second, ShutdownTimeout: time.Second,
		Queues: map[string]QueueConfig{"reports": {Handler: func(context.Context, *Delivery) error {
			runs.Add(1)
			return nil
		}}}})
	require.NoError(t, err)
	wctx, stopWorker := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- w.Run(wctx) }()

	srv.Freeze()
	t0 := time.Now()
	_, err = q.Enqueue(ctx, Job{ID: "q4", Queue: "reports"})
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(t0), 500*time.Millisecond, "bounded by Timeout, not by Redis")

	t0 = time.Now()
	stopWorker() // shut down while Redis is frozen: no call may hold it
	select {
	case err := <-ran:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		srv.Thaw()
		t.Fatal("Run did not return with Redis frozen")
	}
	assert.Less(t, time.Since(t0), 3*time.Second, "ShutdownTimeout and a blocked wait's bound")
	srv.Thaw()

	// The frozen call's script may have run on thaw (then the retry is a duplicate) or not
	// (its connection was closed first): either way the job runs once.
	var again Enqueued
	require.Eventually(t, func() bool {
		again, err = q.Enqueue(ctx, Job{ID: "q4", Queue: "reports"})
		return err == nil
	}, 5*time.Second, 20*time.Millisecond)
	t.Logf("the retry was a duplicate: %v", again.Duplicate)
	w2, err := NewWorker(consumer, WorkerConfig{Logger: quiet, Queues: map[string]QueueConfig{"reports": {Handler: func(context.Context, *Delivery) error {
		runs.Add(1)
		return nil
	}}}})
	require.NoError(t, err)
	_, err = w2.Work(ctx)
	require.NoError(t, err)
	assert.Equal(t, int32(1), runs.Load())
	st, err := q.QueueStats(ctx, "reports")
	require.NoError(t, err)
	assert.Equal(t, QueueStats{}, st)
}
