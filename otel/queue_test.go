package otel_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	outgrowotel "github.com/outgrow/outgrow/otel"
	"github.com/outgrow/outgrow/queue"
)

// TestQueue: enqueues are counted by queue and add an event to the caller's span, runs are
// recorded by outcome, and the store's jobs by state with the lag of the oldest due one.
func TestQueue(t *testing.T) {
	h := newHarness(t)
	store, err := queue.NewMemoryStore(queue.MemoryConfig{})
	require.NoError(t, err)
	var enqueued int
	var done atomic.Int32 // runs end on several goroutines
	hooks := h.tel.QueueHooks(queue.Hooks{
		OnEnqueue: func(context.Context, string, string) { enqueued++ },
		OnDone:    func(context.Context, *queue.Delivery, time.Duration, error, time.Time) { done.Add(1) },
	})
	q, err := queue.New(store, queue.Config{Hooks: hooks})
	require.NoError(t, err)
	reg, err := h.tel.ObserveQueues(q, "emails", "reports")
	require.NoError(t, err)
	t.Cleanup(func() { _ = reg.Unregister() })
	_, err = h.tel.ObserveQueues(q, "emails")
	require.ErrorIs(t, err, outgrowotel.ErrObserved, "one source per series")

	ctx, span := h.request(context.Background())
	_, err = q.EnqueueMany(ctx, []queue.Job{
		{ID: "ok", Queue: "emails"}, {ID: "flaky", Queue: "emails"}, {ID: "bad", Queue: "emails"},
		{ID: "ok", Queue: "emails"}, // a duplicate: not counted
		{ID: "later", Queue: "reports", Delay: time.Hour},
	})
	require.NoError(t, err)
	span.End()
	w, err := queue.NewWorker(store, queue.WorkerConfig{Logger: quiet, Hooks: hooks, Backoff: func(int) time.Duration { return time.Hour },
		Queues: map[string]queue.QueueConfig{"emails": {Handler: func(_ context.Context, d *queue.Delivery) error {
			switch d.ID {
			case "flaky":
				return errors.New("smtp timeout")
			case "bad":
				return queue.NonRetryable(errors.New("no such address"))
			}
			time.Sleep(2 * time.Millisecond)
			return nil
		}}}})
	require.NoError(t, err)
	_, err = w.Work(context.Background())
	require.NoError(t, err)

	ms := h.collect(t)
	assert.Equal(t, 3.0, value(t, ms, "outgrow.queue.enqueued", "outgrow.queue.name", "emails"))
	assert.Equal(t, 1.0, value(t, ms, "outgrow.queue.enqueued", "outgrow.queue.name", "reports"))
	for outcome, n := range map[string]float64{"succeeded": 1, "retried": 1, "dead": 1} {
		assert.Equal(t, n, value(t, ms, "outgrow.queue.run.duration", "outgrow.queue.name", "emails", "outgrow.queue.outcome", outcome), outcome)
	}
	for _, p := range points(t, ms["outgrow.queue.run.duration"]) {
		if p.attrs["outgrow.queue.outcome"] == "succeeded" {
			assert.GreaterOrEqual(t, p.sum, 0.002)
		}
	}
	jobs := func(q, state string) float64 {
		return value(t, ms, "outgrow.queue.jobs", "outgrow.queue.name", q, "outgrow.queue.state", state)
	}
	assert.Equal(t, []float64{0, 1, 0, 1}, []float64{jobs("emails", "due"), jobs("emails", "scheduled"), jobs("emails", "running"), jobs("emails", "dead")})
	assert.Equal(t, 1.0, jobs("reports", "scheduled"))
	assert.Equal(t, 0.0, value(t, ms, "outgrow.queue.lag", "outgrow.queue.name", "reports"))
	assert.Equal(t, "s", ms["outgrow.queue.lag"].Unit)
	assert.Equal(t, []int{4, 3}, []int{enqueued, int(done.Load())}, "the hooks given are called too")

	evs := h.events(t, "request")
	require.Len(t, evs, 4)
	assert.Equal(t, map[string]string{"event": "outgrow.queue.enqueued", "outgrow.queue.name": "emails"}, evs[0].attrs)
}
