package queue

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newMemQueue(t *testing.T) (*MemoryStore, *Queue) {
	t.Helper()
	s, err := NewMemoryStore(MemoryConfig{})
	require.NoError(t, err)
	q, err := New(s, Config{})
	require.NoError(t, err)
	return s, q
}

// startWorker runs a worker until the test's end (or until stop is called) and returns stop,
// which waits for Run to return.
func startWorker(t *testing.T, s Store, cfg WorkerConfig) (*Worker, func()) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	w, err := NewWorker(s, cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return w, stop
}

// TestWorkerRunsJobs: every job runs once and is removed; the handler gets the job; a job
// enqueued while the worker idles starts at once.
func TestWorkerRunsJobs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, q := newMemQueue(t)
		var mu sync.Mutex
		seen := map[string]string{}
		h := func(_ context.Context, d *Delivery) error {
			mu.Lock()
			seen[d.ID] = string(d.Payload)
			mu.Unlock()
			return nil
		}
		for i := range 50 {
			enqueue(t, q, Job{ID: string(rune('a'+i%26)) + string(rune('a'+i/26)), Payload: []byte{byte('0' + i%10)}})
		}
		w, stop := startWorker(t, s, WorkerConfig{Queues: map[string]QueueConfig{DefaultQueue: {Handler: h, Concurrency: 4}}})
		synctest.Wait()
		mu.Lock()
		assert.Len(t, seen, 50)
		mu.Unlock()

		time.Sleep(time.Minute) // idle
		t0 := time.Now()
		enqueue(t, q, Job{ID: "late", Payload: []byte("x")})
		synctest.Wait()
		assert.Equal(t, t0, time.Now(), "picked up without waiting")
		mu.Lock()
		assert.Equal(t, "x", seen["late"])
		mu.Unlock()
		stop()
		st, err := q.QueueStats(context.Background(), DefaultQueue)
		require.NoError(t, err)
		assert.Equal(t, QueueStats{}, st, "nothing left")
		assert.Equal(t, WorkerStats{Started: 51, Succeeded: 51}, w.Stats())
	})
}

// TestWorkerRetries: a failing job runs again after its backoff, with its attempt number, and
// dies after MaxAttempts; NonRetryable ends it at once; a panic is a failure.
func TestWorkerRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, q := newMemQueue(t)
		var mu sync.Mutex
		var runs []string
		h := func(_ context.Context, d *Delivery) error {
			mu.Lock()
			runs = append(runs, d.ID+":"+string(rune('0'+d.Attempt)))
			mu.Unlock()
			switch d.ID {
			case "flaky":
				if d.Attempt < 3 {
					return errors.New("try again")
				}
				return nil
			case "bad":
				return NonRetryable(errors.New("malformed"))
			case "panics":
				panic("boom")
			}
			return errors.New("always")
		}
		var done []string
		hooks := Hooks{OnDone: func(_ context.Context, d *Delivery, _ time.Duration, err error, retryAt time.Time) {
			mu.Lock()
			done = append(done, d.ID)
			mu.Unlock()
			if err != nil && d.ID == "flaky" {
				assert.False(t, retryAt.IsZero())
			}
		}}
		enqueue(t, q, Job{ID: "flaky"}, Job{ID: "bad"}, Job{ID: "panics", MaxAttempts: 1}, Job{ID: "doomed", MaxAttempts: 2})
		w, stop := startWorker(t, s, WorkerConfig{
			Queues:  map[string]QueueConfig{DefaultQueue: {Handler: h, Concurrency: 1}},
			Backoff: func(n int) time.Duration { return time.Duration(n) * time.Second },
			Hooks:   hooks,
		})
		synctest.Wait()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		stop()
		mu.Lock()
		assert.ElementsMatch(t, []string{"flaky:1", "flaky:2", "flaky:3", "bad:1", "panics:1", "doomed:1", "doomed:2"}, runs)
		assert.Len(t, done, 7)
		mu.Unlock()
		dead, err := q.Dead(context.Background(), DefaultQueue, 10)
		require.NoError(t, err)
		var why []string
		for _, d := range dead {
			why = append(why, d.ID+": "+d.LastError)
		}
		assert.ElementsMatch(t, []string{"bad: malformed", "panics: queue: handler panicked: boom", "doomed: always"}, why)
		assert.Equal(t, WorkerStats{Started: 7, Succeeded: 1, Failed: 6, Retried: 3, Dead: 3, Panics: 1}, w.Stats())
	})
}

// TestWorkerConcurrency: no more than Concurrency jobs of a queue run at once, and queues are
// served apart.
func TestWorkerConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, q := newMemQueue(t)
		var now, peak atomic.Int32
		h := func(ctx context.Context, d *Delivery) error {
			n := now.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			time.Sleep(time.Second)
			now.Add(-1)
			return nil
		}
		var other atomic.Int32
		for range 20 {
			enqueue(t, q, Job{}, Job{Queue: "other"})
		}
		w, stop := startWorker(t, s, WorkerConfig{Queues: map[string]QueueConfig{
			DefaultQueue: {Handler: h, Concurrency: 3},
			"other":      {Handler: func(context.Context, *Delivery) error { other.Add(1); return nil }},
		}})
		time.Sleep(time.Minute)
		stop()
		assert.Equal(t, int32(3), peak.Load())
		assert.Equal(t, int32(20), other.Load())
		assert.Equal(t, uint64(40), w.Stats().Succeeded)
	})
}

// TestWorkerLeaseExtended: a job that runs longer than its lease stays this worker's: a second
// worker does not run it too.
func TestWorkerLeaseExtended(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, q := newMemQueue(t)
		var runs atomic.Int32
		h := func(ctx context.Context, d *Delivery) error {
			runs.Add(1)
			time.Sleep(10 * time.Second)
			return ctx.Err()
		}
		cfg := WorkerConfig{Lease: time.Second, Queues: map[string]QueueConfig{DefaultQueue: {Handler: h}}}
		enqueue(t, q, Job{ID: "long"})
		w1, stop1 := startWorker(t, s, cfg)
		synctest.Wait()
		w2, stop2 := startWorker(t, s, cfg)
		time.Sleep(time.Minute)
		stop1()
		stop2()
		assert.Equal(t, int32(1), runs.Load())
		assert.Equal(t, uint64(1), w1.Stats().Succeeded+w2.Stats().Succeeded)
	})
}

// dropExtends is a store whose extensions of the first claim of a job are refused, as when a
// worker stalled past its lease and another claimed the job: the first one must stop. Later
// claims (tokens above 1) are extended as usual.
type dropExtends struct{ *MemoryStore }

func (d dropExtends) backend() backend { return d }

func (d dropExtends) settle(ctx context.Context, ops []op) ([]bool, error) {
	dropped := func(o op) bool { return o.kind == opExtend && o.token == 1 }
	var keep []op
	for _, o := range ops {
		if !dropped(o) {
			keep = append(keep, o)
		}
	}
	ok, err := d.MemoryStore.settle(ctx, keep)
	out := make([]bool, len(ops))
	j := 0
	for i, o := range ops {
		if dropped(o) {
			continue // lost: false
		}
		out[i] = ok[j]
		j++
	}
	return out, err
}

// TestWorkerLeaseLost: when the lease is lost, the handler's context ends with ErrLeaseLost,
// its outcome is not recorded, and the job runs again elsewhere.
func TestWorkerLeaseLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem, q := newMemQueue(t)
		s := dropExtends{mem}
		var causes []error
		var mu sync.Mutex
		var lost atomic.Int32
		h := func(ctx context.Context, d *Delivery) error {
			if d.Deliveries > 1 {
				return nil
			}
			<-ctx.Done()
			mu.Lock()
			causes = append(causes, context.Cause(ctx))
			mu.Unlock()
			return ctx.Err()
		}
		enqueue(t, q, Job{ID: "j"})
		w, stop := startWorker(t, s, WorkerConfig{Lease: 3 * time.Second, Queues: map[string]QueueConfig{DefaultQueue: {Handler: h}},
			Hooks: Hooks{OnLeaseLost: func(context.Context, *Delivery) { lost.Add(1) }}})
		time.Sleep(10 * time.Second)
		stop()
		mu.Lock()
		assert.Equal(t, []error{ErrLeaseLost}, causes)
		mu.Unlock()
		assert.Equal(t, int32(1), lost.Load())
		st := w.Stats()
		assert.Equal(t, uint64(1), st.LeaseLost)
		assert.Equal(t, uint64(1), st.Succeeded, "claimed again once the lease expired")
		assert.Zero(t, st.Failed, "a lost lease is no failure")
	})
}

// TestWorkerShutdown: on shutdown, running jobs may finish within ShutdownTimeout; those that
// do not are cancelled and given back due at once, without an attempt counted; no job is
// claimed after the shutdown began.
func TestWorkerShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, q := newMemQueue(t)
		h := func(ctx context.Context, d *Delivery) error {
			wait := time.Second
			if d.ID == "slow" {
				wait = time.Hour
			}
			select {
			case <-time.After(wait):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		enqueue(t, q, Job{ID: "quick"}, Job{ID: "slow"})
		w, stop := startWorker(t, s, WorkerConfig{ShutdownTimeout: 5 * time.Second,
			Queues: map[string]QueueConfig{DefaultQueue: {Handler: h}}})
		synctest.Wait()
		t0 := time.Now()
		stop()
		assert.Equal(t, 5*time.Second, time.Since(t0), "waited ShutdownTimeout for the slow one")
		enqueue(t, q, Job{ID: "after"})
		assert.Equal(t, WorkerStats{Started: 2, Succeeded: 1, Released: 1}, w.Stats())
		got := claimIDs(t, s, DefaultQueue, 5)
		assert.Equal(t, []string{"slow", "after"}, ids(got), "given back, due at once")
		assert.Equal(t, 1, got[0].Attempt)
		assert.Equal(t, 1, got[0].Deliveries, "the released run is not counted")
	})
}

// TestWorkerConfigErrors: NewWorker names the field at fault.
func TestWorkerConfigErrors(t *testing.T) {
	s, _ := newMemQueue(t)
	h := func(context.Context, *Delivery) error { return nil }
	for name, cfg := range map[string]WorkerConfig{
		"Queues":                    {},
		`Queues["default"].Handler`: {Queues: map[string]QueueConfig{DefaultQueue: {}}},
		`"bad name"`:                {Queues: map[string]QueueConfig{"bad name": {Handler: h}}},
		"Lease":                     {Lease: time.Millisecond, Queues: map[string]QueueConfig{DefaultQueue: {Handler: h}}},
		"ShutdownTimeout":           {ShutdownTimeout: -1, Queues: map[string]QueueConfig{DefaultQueue: {Handler: h}}},
		"Concurrency":               {Concurrency: -1, Queues: map[string]QueueConfig{DefaultQueue: {Handler: h}}},
		"StrictPriority":            {StrictPriority: true, Queues: map[string]QueueConfig{DefaultQueue: {Handler: h}}},
		`Queues["default"].Weight`:  {Queues: map[string]QueueConfig{DefaultQueue: {Handler: h, Weight: 2}}},
		`Queues["default"]`:         {Concurrency: 4, Queues: map[string]QueueConfig{DefaultQueue: {Handler: h, Weight: -1}}},
	} {
		_, err := NewWorker(s, cfg)
		require.ErrorIs(t, err, ErrInvalidConfig, name)
		assert.Contains(t, err.Error(), name)
	}
	w, err := NewWorker(s, WorkerConfig{Logger: quiet, Queues: map[string]QueueConfig{DefaultQueue: {Handler: h}}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, w.Run(ctx))
	assert.ErrorIs(t, w.Run(ctx), ErrClosed, "a Worker runs once")
	_, err = w.Work(ctx)
	assert.ErrorIs(t, err, ErrClosed, "Work is for a Worker that is not run")
}

// TestWorkerWork: Work runs what is due, retries whose delay passed included, then returns;
// it refuses to run beside Run.
func TestWorkerWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, q := newMemQueue(t)
		var runs atomic.Int32
		w, err := NewWorker(s, WorkerConfig{Logger: quiet, Backoff: func(int) time.Duration { return 0 },
			Queues: map[string]QueueConfig{DefaultQueue: {Handler: func(_ context.Context, d *Delivery) error {
				runs.Add(1)
				if d.Attempt == 1 && d.ID == "flaky" {
					return errors.New("once")
				}
				return nil
			}}}})
		require.NoError(t, err)
		enqueue(t, q, Job{ID: "flaky"}, Job{ID: "ok"}, Job{ID: "later", Delay: time.Hour})
		n, err := w.Work(context.Background())
		require.NoError(t, err)
		assert.Equal(t, 3, n, "flaky twice, ok once")
		time.Sleep(time.Hour)
		n, err = w.Work(context.Background())
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		assert.Equal(t, int32(4), runs.Load())
		assert.Equal(t, WorkerStats{Started: 4, Succeeded: 3, Failed: 1, Retried: 1}, w.Stats())
	})
}

// TestJSONHandler: payloads round-trip as JSON, and one that does not decode kills its job at
// once.
func TestJSONHandler(t *testing.T) {
	s, q := newMemQueue(t)
	type report struct{ Quarter string }
	var got []string
	w, err := NewWorker(s, WorkerConfig{Logger: quiet, Queues: map[string]QueueConfig{DefaultQueue: {Concurrency: 1,
		Handler: JSONHandler(func(_ context.Context, _ *Delivery, r report) error { got = append(got, r.Quarter); return nil })}}})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = EnqueueJSON(ctx, q, Job{ID: "a"}, report{Quarter: "Q4"})
	require.NoError(t, err)
	enqueue(t, q, Job{ID: "b", Payload: []byte("{not json")})
	_, err = EnqueueJSON(ctx, q, Job{}, func() {})
	require.ErrorIs(t, err, ErrInvalidJob)
	_, err = w.Work(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"Q4"}, got)
	dead, err := q.Dead(ctx, DefaultQueue, 10)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Equal(t, "b", dead[0].ID)
	assert.Contains(t, dead[0].LastError, "decoding the payload")
}

// TestWorkerShutdownNoOverlap: a job given back at the end of ShutdownTimeout is not claimed
// by another worker while the handler of the stopping worker still runs: it is released once
// that handler returned (here it takes 100ms to stop after its context ends).
func TestWorkerShutdownNoOverlap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, q := newMemQueue(t)
		var running, overlaps, runs atomic.Int32
		h := func(ctx context.Context, d *Delivery) error {
			if running.Add(1) > 1 {
				overlaps.Add(1)
			}
			defer running.Add(-1)
			if runs.Add(1) > 1 {
				return nil
			}
			<-ctx.Done()
			time.Sleep(100 * time.Millisecond) // cleanup before returning
			return ctx.Err()
		}
		enqueue(t, q, Job{ID: "j"})
		cfg := WorkerConfig{ShutdownTimeout: time.Second, Queues: map[string]QueueConfig{DefaultQueue: {Handler: h}}}
		w1, stop1 := startWorker(t, s, cfg)
		synctest.Wait()
		w2, _ := startWorker(t, s, cfg)
		stop1()
		time.Sleep(time.Second)
		assert.Zero(t, overlaps.Load(), "the job ran on two workers at once")
		assert.Equal(t, uint64(1), w1.Stats().Released)
		assert.Equal(t, uint64(1), w2.Stats().Succeeded)
	})
}

// stalledExtends is a store whose extensions hang for a minute and then fail, as when the
// network to Redis blackholes: nothing comes back before the lease ends.
type stalledExtends struct{ *MemoryStore }

func (s stalledExtends) backend() backend { return s }

func (s stalledExtends) settle(ctx context.Context, ops []op) ([]bool, error) {
	for _, o := range ops {
		if o.kind == opExtend {
			time.Sleep(time.Minute)
			return nil, ErrUnavailable
		}
	}
	return s.MemoryStore.settle(ctx, ops)
}

// TestWorkerStopsAtLeaseEnd: a run whose extensions get no answer stops when its lease ends
// on this instance's clock, not when the store finally answers.
func TestWorkerStopsAtLeaseEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem, q := newMemQueue(t)
		stopped := make(chan time.Duration, 1)
		t0 := time.Now()
		_, stop := startWorker(t, stalledExtends{mem}, WorkerConfig{Lease: 3 * time.Second, ShutdownTimeout: time.Second,
			Queues: map[string]QueueConfig{DefaultQueue: {Handler: func(ctx context.Context, d *Delivery) error {
				<-ctx.Done()
				if errors.Is(context.Cause(ctx), ErrLeaseLost) {
					stopped <- time.Since(t0)
				}
				return ctx.Err()
			}}}})
		enqueue(t, q, Job{ID: "j"})
		assert.Equal(t, 3*time.Second, <-stopped, "at the lease's end")
		stop()
	})
}

// TestWorkerHookPanics: a panicking OnStart hook fails the run; the process goes on.
func TestWorkerHookPanics(t *testing.T) {
	s, q := newMemQueue(t)
	var ran atomic.Bool
	w, err := NewWorker(s, WorkerConfig{Logger: quiet, Hooks: Hooks{OnStart: func(context.Context, *Delivery) { panic("hook") }},
		Queues: map[string]QueueConfig{DefaultQueue: {Handler: func(_ context.Context, d *Delivery) error {
			ran.Store(true)
			return nil
		}}}})
	require.NoError(t, err)
	enqueue(t, q, Job{ID: "j", MaxAttempts: 1})
	_, err = w.Work(context.Background())
	require.NoError(t, err)
	assert.False(t, ran.Load())
	assert.Equal(t, uint64(1), w.Stats().Panics)
	dead, err := q.Dead(context.Background(), DefaultQueue, 1)
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Contains(t, dead[0].LastError, "panicked: hook")
}
