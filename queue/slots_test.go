package queue

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// starts records the queue of each run, in the order the runs started.
type starts struct {
	mu    sync.Mutex
	order []string
}

func (s *starts) handler(d time.Duration) Handler {
	return func(ctx context.Context, j *Delivery) error {
		s.mu.Lock()
		s.order = append(s.order, j.Queue)
		s.mu.Unlock()
		time.Sleep(d)
		return nil
	}
}

func (s *starts) snapshot() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.order...)
}

// TestWorkerWeights: queues sharing the worker's Concurrency, each with a backlog, run their
// jobs in proportion to their Weights.
func TestWorkerWeights(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, q := newMemQueue(t)
		for range 300 {
			enqueue(t, q, Job{Queue: "mail"}, Job{Queue: "bulk"})
		}
		var rec starts
		_, stop := startWorker(t, s, WorkerConfig{Concurrency: 4, Queues: map[string]QueueConfig{
			"mail": {Handler: rec.handler(10 * time.Millisecond), Weight: 3},
			"bulk": {Handler: rec.handler(10 * time.Millisecond)},
		}})
		time.Sleep(995 * time.Millisecond)
		order := rec.snapshot()
		stop()
		require.Len(t, order, 400, "4 slots, 10ms a job: 100 rounds before 995ms")
		mail := 0
		for _, queue := range order {
			if queue == "mail" {
				mail++
			}
		}
		// 3:1 is 300 of 400; a 1:1 share (weights ignored) would be 200.
		assert.InDelta(t, 300, mail, 20, "runs of mail (Weight 3) among 400, against bulk (Weight 1)")
	})
}

// TestWorkerStrictPriority: with StrictPriority, a queue runs only while the queues of higher
// Weight have no job to run, and a job enqueued on a higher one takes the next free slot.
func TestWorkerStrictPriority(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, q := newMemQueue(t)
		for range 50 {
			enqueue(t, q, Job{Queue: "later"}, Job{Queue: "urgent"})
		}
		var rec starts
		_, stop := startWorker(t, s, WorkerConfig{Concurrency: 2, StrictPriority: true, Queues: map[string]QueueConfig{
			"urgent": {Handler: rec.handler(10 * time.Millisecond), Weight: 2},
			"later":  {Handler: rec.handler(10 * time.Millisecond), Weight: 1},
		}})
		time.Sleep(time.Second)
		order := rec.snapshot()
		require.Len(t, order, 100, "50 rounds of 2, in 500ms")
		last := 0
		for i, queue := range order {
			if queue == "urgent" {
				last = i
			}
		}
		// Before the worker's first claims, no queue waits for slots: the first two may go to
		// either. After that, later runs only once urgent is empty.
		early := 0
		for _, queue := range order[:last] {
			if queue == "later" {
				early++
			}
		}
		assert.LessOrEqual(t, early, 2, "later jobs started before urgent's last: %v", order)

		// urgent is empty and later busy: one urgent job enqueued takes the next free slot.
		for range 50 {
			enqueue(t, q, Job{Queue: "later"})
		}
		time.Sleep(25 * time.Millisecond) // later holds both slots
		enqueue(t, q, Job{Queue: "urgent"})
		time.Sleep(time.Second)
		stop()
		order = rec.snapshot()[100:]
		require.Len(t, order, 51)
		at := 0
		for i, queue := range order {
			if queue == "urgent" {
				at = i
			}
		}
		// 25ms in, 6 later jobs have started (two per 10ms); the urgent one starts at the next
		// release, at 30ms, with the 7th.
		assert.LessOrEqual(t, at, 7, "the urgent job started after %d later ones: %v", at, order)
	})
}

// TestWorkerSharedConcurrency: the queues sharing Concurrency never run more at once, a
// queue's own Concurrency caps its part, and a queue with no jobs leaves its share to the
// others whatever its Weight.
func TestWorkerSharedConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, q := newMemQueue(t)
		var total, capped, totalPeak, cappedPeak atomic.Int32
		peak := func(n int32, p *atomic.Int32) {
			for old := p.Load(); n > old && !p.CompareAndSwap(old, n); old = p.Load() {
			}
		}
		h := func(ctx context.Context, d *Delivery) error {
			peak(total.Add(1), &totalPeak)
			if d.Queue == "capped" {
				peak(capped.Add(1), &cappedPeak)
				defer capped.Add(-1)
			}
			defer total.Add(-1)
			time.Sleep(10 * time.Millisecond)
			return nil
		}
		for range 100 {
			enqueue(t, q, Job{Queue: "capped"}, Job{Queue: "open"})
		}
		w, stop := startWorker(t, s, WorkerConfig{Concurrency: 6, Queues: map[string]QueueConfig{
			"capped": {Handler: h, Concurrency: 2, Weight: 5},
			"open":   {Handler: h},
			"idle":   {Handler: h, Weight: 100},
		}})
		time.Sleep(time.Second)
		stop()
		assert.Equal(t, uint64(200), w.Stats().Succeeded)
		assert.Equal(t, int32(2), cappedPeak.Load(), "capped's own Concurrency")
		assert.Equal(t, int32(6), totalPeak.Load(), "the shared Concurrency, filled though idle has the highest Weight")
	})
}

// TestWorkerWorkByWeight: Work serves the queues of higher Weight first.
func TestWorkerWorkByWeight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, q := newMemQueue(t)
		for range 5 {
			enqueue(t, q, Job{Queue: "a"}, Job{Queue: "b"})
		}
		var rec starts
		w, err := NewWorker(s, WorkerConfig{Logger: quiet, Concurrency: 2, Queues: map[string]QueueConfig{
			"a": {Handler: rec.handler(0)},
			"b": {Handler: rec.handler(0), Weight: 2},
		}})
		require.NoError(t, err)
		n, err := w.Work(context.Background())
		require.NoError(t, err)
		assert.Equal(t, 10, n)
		assert.Equal(t, []string{"b", "b", "b", "b", "b", "a", "a", "a", "a", "a"}, rec.snapshot())
	})
}

// TestStrictPriorityEveryStore: strict priorities hold on every store, whose claims take
// round trips (slots freed during one stay the claiming queue's).
func TestStrictPriorityEveryStore(t *testing.T) {
	eachStore(t, func(t *testing.T, s Store, _ func(time.Duration)) {
		q := newQueue(t, s)
		for range 40 {
			enqueue(t, q, Job{Queue: "later"}, Job{Queue: "urgent"})
		}
		var rec starts
		w, stop := startWorker(t, s, WorkerConfig{Concurrency: 4, StrictPriority: true, Queues: map[string]QueueConfig{
			"urgent": {Handler: rec.handler(5 * time.Millisecond), Weight: 2},
			"later":  {Handler: rec.handler(5 * time.Millisecond), Weight: 1},
		}})
		require.Eventually(t, func() bool { return w.Stats().Succeeded == 80 }, 10*time.Second, 5*time.Millisecond)
		stop()
		order := rec.snapshot()
		last, early := 0, 0
		for i, queue := range order {
			if queue == "urgent" {
				last = i
			}
		}
		for _, queue := range order[:last] {
			if queue == "later" {
				early++
			}
		}
		assert.LessOrEqual(t, early, 4, "later jobs started before urgent's last (4 may win the start): %v", order)
	})
}
