package queue

import (
	"context"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestContractPause: a paused queue's jobs are not claimed, enqueues go on, and a resume makes
// them claimable at once; a waiter on a paused queue is not woken by its due jobs, and is by
// the resume.
func TestContractPause(t *testing.T) {
	eachStore(t, func(t *testing.T, s Store, _ func(time.Duration)) {
		q := newQueue(t, s)
		ctx := context.Background()
		enqueue(t, q, Job{Queue: "mail", ID: "running"})
		running := claimIDs(t, s, "mail", 1)
		enqueue(t, q, Job{Queue: "mail", ID: "a"}, Job{Queue: "mail", ID: "b"})
		require.NoError(t, q.Pause(ctx, "mail"))
		// A run in progress settles while the queue is paused, alone or riding with a claim.
		ok, err := s.backend().settle(ctx, []op{{kind: opExtend, queue: "mail", id: "running", token: running[0].token, lease: time.Hour}})
		require.NoError(t, err)
		assert.Equal(t, []bool{true}, ok, "an extension while paused")
		got, ok, err := s.backend().settleClaim(ctx, "mail", []op{{kind: opAck, queue: "mail", id: "running", token: running[0].token}}, 5, time.Hour, 3)
		require.NoError(t, err)
		assert.Equal(t, []bool{true}, ok, "an ack while paused")
		assert.Empty(t, got, "and nothing claimed")
		require.NoError(t, q.Pause(ctx, "mail"), "pausing twice")
		assert.Empty(t, claimIDs(t, s, "mail", 5), "claimed from a paused queue")
		enqueue(t, q, Job{Queue: "mail", ID: "c"})
		st, err := q.QueueStats(ctx, "mail")
		require.NoError(t, err)
		assertStats(t, QueueStats{Due: 3, Paused: true}, st)

		// A waiter stays asleep with 3 due jobs, until the resume.
		woke := make(chan time.Duration, 1)
		start := time.Now()
		go func() {
			_ = s.backend().wait(ctx, "mail", 10*time.Second)
			woke <- time.Since(start)
		}()
		time.Sleep(300 * time.Millisecond)
		select {
		case d := <-woke:
			t.Fatalf("a wait on a paused queue with due jobs returned after %v", d)
		default:
		}
		require.NoError(t, q.Resume(ctx, "mail"))
		select {
		case d := <-woke:
			assert.Less(t, d, 2*time.Second, "the resume woke the waiter")
		case <-time.After(5 * time.Second):
			t.Fatal("the resume did not wake the waiter")
		}
		assert.ElementsMatch(t, []string{"a", "b", "c"}, ids(claimIDs(t, s, "mail", 5)))
		st, err = q.QueueStats(ctx, "mail")
		require.NoError(t, err)
		assertStats(t, QueueStats{Running: 3}, st)
		require.NoError(t, q.Resume(ctx, "mail"), "resuming a queue that runs")

		// Pausing names no queue, and other queues are not paused.
		require.NoError(t, q.Pause(ctx, "other"))
		enqueue(t, q, Job{Queue: "third"})
		assert.Len(t, claimIDs(t, s, "third", 5), 1)
		for _, bad := range []string{"", "bad name"} {
			assert.ErrorIs(t, q.Pause(ctx, bad), ErrInvalidJob)
			assert.ErrorIs(t, q.Resume(ctx, bad), ErrInvalidJob)
		}
	})
}

// TestContractQueues: Queues lists the queues enqueued on, sorted, from any instance.
func TestContractQueues(t *testing.T) {
	eachStore(t, func(t *testing.T, s Store, _ func(time.Duration)) {
		q := newQueue(t, s)
		ctx := context.Background()
		names, err := q.Queues(ctx)
		require.NoError(t, err)
		assert.Empty(t, names)
		enqueue(t, q, Job{Queue: "b"})
		enqueue(t, q, Job{Queue: "c"}, Job{Queue: "a"}, Job{Queue: "c"})
		_, err = q.QueueStats(ctx, "looked-at")
		require.NoError(t, err)
		require.NoError(t, q.Pause(ctx, "paused-only"))
		names, err = q.Queues(ctx)
		require.NoError(t, err)
		assert.Equal(t, []string{"a", "b", "c"}, names, "queues with jobs enqueued, not those only looked at")
		// Another Queue over the same store sees them.
		names, err = newQueue(t, s).Queues(ctx)
		require.NoError(t, err)
		assert.Equal(t, []string{"a", "b", "c"}, names)
	})
}

// TestWorkerPaused: a running worker leaves a paused queue's jobs alone and serves its other
// queues; on resume it runs them at once.
func TestWorkerPaused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, q := newMemQueue(t)
		ctx := context.Background()
		var rec starts
		w, _ := startWorker(t, s, WorkerConfig{Queues: map[string]QueueConfig{
			"mail": {Handler: rec.handler(0)}, "pdf": {Handler: rec.handler(0)},
		}})
		require.NoError(t, q.Pause(ctx, "mail"))
		enqueue(t, q, Job{Queue: "mail"}, Job{Queue: "mail"}, Job{Queue: "pdf"})
		time.Sleep(time.Minute)
		assert.Equal(t, []string{"pdf"}, rec.snapshot())
		require.NoError(t, q.Resume(ctx, "mail"))
		synctest.Wait()
		assert.Equal(t, []string{"pdf", "mail", "mail"}, rec.snapshot(), "ran at once on resume")
		assert.Equal(t, uint64(3), w.Stats().Succeeded)
	})
}

// TestDeadLimitCapped: one Dead call lists at most MaxDeadLimit jobs, whatever it asks.
func TestDeadLimitCapped(t *testing.T) {
	s, q := newMemQueue(t)
	ctx := context.Background()
	jobs := make([]Job, MaxDeadLimit+5)
	enqueue(t, q, jobs...)
	var ops []op
	for _, c := range claimIDs(t, s, DefaultQueue, len(jobs)) {
		ops = append(ops, op{kind: opDead, queue: DefaultQueue, id: c.ID, token: c.token, err: "x"})
	}
	_, err := s.backend().settle(ctx, ops)
	require.NoError(t, err)
	dead, err := q.Dead(ctx, DefaultQueue, math.MaxInt)
	require.NoError(t, err)
	assert.Len(t, dead, MaxDeadLimit)
}
