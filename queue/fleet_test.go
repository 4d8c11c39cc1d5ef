package queue

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

// TestFleetRunsEachJobOnce: three instances, each with its own client and store over the same
// Redis, work one queue that a fourth fills: every job runs, once.
func TestFleetRunsEachJobOnce(t *testing.T) {
	eachRedis(t, func(t *testing.T, _ *RedisStore, b redistest.Backend) {
		store := func() *RedisStore {
			s, err := NewRedisStore(b.NewClient(t), testConfig(b))
			require.NoError(t, err)
			return s
		}
		var mu sync.Mutex
		runs := map[string]int{}
		h := func(_ context.Context, d *Delivery) error {
			mu.Lock()
			runs[d.ID]++
			mu.Unlock()
			return nil
		}
		for range 3 {
			startWorker(t, store(), WorkerConfig{IdleWait: 200 * time.Millisecond,
				Queues: map[string]QueueConfig{"fleet": {Handler: h, Concurrency: 4}}})
		}
		q := newQueue(t, store())
		const n = 300
		for i := 0; i < n; i += 50 {
			batch := make([]Job, 50)
			for k := range batch {
				batch[k] = Job{ID: fmt.Sprint("job-", i+k), Queue: "fleet"}
			}
			enqueue(t, q, batch...)
		}
		require.Eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(runs) == n
		}, 20*time.Second, 10*time.Millisecond)
		time.Sleep(100 * time.Millisecond) // a duplicate run would show by now
		mu.Lock()
		for id, c := range runs {
			assert.Equal(t, 1, c, id)
		}
		mu.Unlock()
		st, err := q.QueueStats(context.Background(), "fleet")
		require.NoError(t, err)
		assert.Equal(t, QueueStats{}, st)
	})
}

// TestFleetPartitionedWorker: a worker cut off from Redis (its traffic blackholed) stops its
// run once its lease is surely over, another instance runs the job within about the lease,
// and when the first one's traffic flows again it can record nothing for the job.
func TestFleetPartitionedWorker(t *testing.T) {
	for _, k := range redistest.Kinds() {
		if k != redistest.Miniredis && k != redistest.Redis {
			continue // a proxy in front of one server
		}
		t.Run(string(k), func(t *testing.T) {
			b := redistest.Open(t, k)
			addr := b.Client.(*redis.Client).Options().Addr
			proxy := redistest.StartProxy(t, addr)
			cfg := testConfig(b)
			cfg.Timeout, cfg.Logger = 200*time.Millisecond, quiet
			viaProxy := redis.NewClient(&redis.Options{Addr: proxy.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
			t.Cleanup(func() { _ = viaProxy.Close() })
			cut, err := NewRedisStore(viaProxy, cfg)
			require.NoError(t, err)
			healthy, err := NewRedisStore(b.NewClient(t), cfg)
			require.NoError(t, err)

			const lease = time.Second
			started := make(chan struct{}, 1)
			stopped := make(chan error, 1)
			a, stopA := startWorker(t, cut, WorkerConfig{Lease: lease, ShutdownTimeout: time.Second,
				Queues: map[string]QueueConfig{"jobs": {Handler: func(ctx context.Context, d *Delivery) error {
					started <- struct{}{}
					<-ctx.Done()
					stopped <- context.Cause(ctx)
					return ctx.Err()
				}}}})
			q := newQueue(t, healthy)
			enqueue(t, q, Job{ID: "report", Queue: "jobs"})
			<-started
			proxy.Blackhole(true)
			t0 := time.Now()

			done := make(chan time.Duration, 1)
			b2, _ := startWorker(t, healthy, WorkerConfig{Lease: lease, IdleWait: 100 * time.Millisecond,
				Queues: map[string]QueueConfig{"jobs": {Handler: func(context.Context, *Delivery) error {
					done <- time.Since(t0)
					return nil
				}}}})
			select {
			case err := <-stopped:
				assert.ErrorIs(t, err, ErrLeaseLost)
				// At the lease's end on this instance's clock (a timer), plus scheduling on a busy
				// machine.
				assert.Less(t, time.Since(t0), lease+time.Second, "stopped once the lease was surely over")
			case <-time.After(5 * time.Second):
				t.Fatal("the cut-off worker's run was not stopped")
			}
			select {
			case took := <-done:
				assert.Less(t, took, lease+2*time.Second, "run again within about the lease")
			case <-time.After(10 * time.Second):
				t.Fatal("the job was not run again")
			}
			proxy.Blackhole(false)
			proxy.Cut()
			stopA()
			assert.Equal(t, uint64(1), a.Stats().LeaseLost)
			assert.Zero(t, a.Stats().Released, "nothing of the job is its to give back")
			require.Eventually(t, func() bool { return b2.Stats().Succeeded == 1 }, 5*time.Second, 5*time.Millisecond,
				"the handler returned: its ack follows")
			st, err := q.QueueStats(context.Background(), "jobs")
			require.NoError(t, err)
			assert.Equal(t, QueueStats{}, st, "done once, nothing left")
		})
	}
}

// TestRedisIdleWorkerDoesNotPoll: an idle worker blocks on Redis instead of polling it: over
// 3 seconds it makes a few calls a second at most (a peek and a bounded BLPOP per second),
// whatever its concurrency, and a job enqueued then still starts at once.
func TestRedisIdleWorkerDoesNotPoll(t *testing.T) {
	eachRedis(t, func(t *testing.T, s *RedisStore, b redistest.Backend) {
		started := make(chan time.Time, 1)
		startWorker(t, s, WorkerConfig{Queues: map[string]QueueConfig{"idle": {Concurrency: 50,
			Handler: func(context.Context, *Delivery) error { started <- time.Now(); return nil }}}})
		time.Sleep(100 * time.Millisecond) // settled into its wait
		before := s.Stats().Calls
		time.Sleep(3 * time.Second)
		calls := s.Stats().Calls - before
		t.Logf("%d calls in 3s of idling", calls)
		assert.LessOrEqual(t, calls, uint64(12), "calls in 3s of idling")
		other, err := NewRedisStore(b.NewClient(t), testConfig(b))
		require.NoError(t, err)
		t0 := time.Now()
		enqueue(t, newQueue(t, other), Job{Queue: "idle"})
		select {
		case at := <-started:
			assert.Less(t, at.Sub(t0), 500*time.Millisecond, "woken by the enqueue")
		case <-time.After(5 * time.Second):
			t.Fatal("the idle worker did not start the job")
		}
	})
}

// TestDelayedLateness: an idle worker starts delayed jobs on time, not at its next poll: how
// late each of 40 jobs, due 50-650ms after their enqueue, starts, on every store. On Redis a
// waiter spends the last 200ms before the job it waits for on a local timer (Redis ends blocks
// up to 1/hz late), which a sooner job enqueued meanwhile does not cut short: the bound.
func TestDelayedLateness(t *testing.T) {
	eachStore(t, func(t *testing.T, s Store, _ func(time.Duration)) {
		q := newQueue(t, s)
		const n = 40
		var mu sync.Mutex
		due := map[string]time.Time{}
		var late []time.Duration
		_, stop := startWorker(t, s, WorkerConfig{Queues: map[string]QueueConfig{DefaultQueue: {
			Handler: func(_ context.Context, d *Delivery) error {
				mu.Lock()
				defer mu.Unlock()
				late = append(late, time.Since(due[d.ID]))
				return nil
			}}}})
		time.Sleep(50 * time.Millisecond) // the worker is idle, waiting
		for i := range n {
			delay := 50*time.Millisecond + time.Duration(i*37%n)*15*time.Millisecond
			id := fmt.Sprint("job-", i)
			mu.Lock()
			due[id] = time.Now().Add(delay)
			mu.Unlock()
			enqueue(t, q, Job{ID: id, Delay: delay})
		}
		require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(late) == n }, 5*time.Second, time.Millisecond)
		stop()
		slices.Sort(late)
		t.Logf("lateness of %d delayed jobs: p50 %v, max %v", n, late[n/2], late[n-1])
		assert.GreaterOrEqual(t, late[0], -2*time.Millisecond, "a job started before its time")
		assert.Less(t, late[n/2], 25*time.Millisecond, "the median start")
		assert.Less(t, late[n-1], 300*time.Millisecond, "the latest start")
	})
}

// TestFleetPause: one instance pauses a queue, and a worker of another instance, idle and
// waiting on the same Redis, runs none of the jobs enqueued meanwhile; when the first instance
// resumes the queue, the waiting worker starts them at once (it is woken, not polling). The
// second instance lists the queue the first one enqueued on.
func TestFleetPause(t *testing.T) {
	eachRedis(t, func(t *testing.T, _ *RedisStore, b redistest.Backend) {
		instance := func() *RedisStore {
			s, err := NewRedisStore(b.NewClient(t), testConfig(b))
			require.NoError(t, err)
			return s
		}
		var ran atomic.Int32
		worker := instance()
		startWorker(t, worker, WorkerConfig{IdleWait: 5 * time.Second, Queues: map[string]QueueConfig{
			"mail": {Handler: func(context.Context, *Delivery) error { ran.Add(1); return nil }}}})
		time.Sleep(100 * time.Millisecond) // the worker waits
		ctx := context.Background()
		ops := newQueue(t, instance())
		require.NoError(t, ops.Pause(ctx, "mail"))
		enqueue(t, ops, Job{Queue: "mail"}, Job{Queue: "mail"}, Job{Queue: "mail"})
		time.Sleep(500 * time.Millisecond)
		assert.Zero(t, ran.Load(), "a paused queue's jobs ran on another instance")
		names, err := newQueue(t, worker).Queues(ctx)
		require.NoError(t, err)
		assert.Equal(t, []string{"mail"}, names)

		resumed := time.Now()
		require.NoError(t, ops.Resume(ctx, "mail"))
		require.Eventually(t, func() bool { return ran.Load() == 3 }, 5*time.Second, time.Millisecond)
		assert.Less(t, time.Since(resumed), time.Second, "the resume woke the waiting worker (its IdleWait is 5s)")
	})
}
