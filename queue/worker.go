package queue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Handler runs one job. A nil error succeeds; an error fails the run (wrap it with
// NonRetryable to end the job at once). ctx ends when the run's Timeout passes, when the worker
// lost the job's lease (cause ErrLeaseLost) and when the worker shuts down past its
// ShutdownTimeout: return then. A panic is a failure. Jobs run at least once: a handler must
// be idempotent.
type Handler func(ctx context.Context, d *Delivery) error

// QueueConfig says how a [Worker] serves one queue.
type QueueConfig struct {
	// Handler runs the queue's jobs. Required.
	Handler Handler
	// Concurrency is how many of the queue's jobs run at once on this worker. Default: 10,
	// or, when the queues share WorkerConfig.Concurrency, that (this is then a cap on the
	// queue's part of it).
	Concurrency int
	// Weight is the queue's share of WorkerConfig.Concurrency when queues with jobs to run
	// compete for its slots: a queue of Weight 3 gets three slots for every one of a queue of
	// Weight 1. With StrictPriority, it is the queue's rank instead. Set it only with
	// WorkerConfig.Concurrency. Default: 1.
	Weight int
	// Timeout bounds one run: its context ends then, and the run fails. Default: 0 (none).
	Timeout time.Duration
}

// WorkerConfig configures a [Worker].
type WorkerConfig struct {
	// Queues are the queues the worker serves, by name. Required.
	Queues map[string]QueueConfig
	// Concurrency, when set, is how many jobs of all the queues run at once on this worker:
	// the queues share it by Weight, and a queue with no job to run leaves its share to the
	// others. Default: 0 (each queue runs its own QueueConfig.Concurrency jobs, whatever the
	// others do).
	Concurrency int
	// StrictPriority makes the queues sharing Concurrency take turns by rank rather than
	// share by Weight: a free slot goes to a queue of the highest Weight that has jobs to run,
	// so a queue runs only while every queue of higher Weight is empty (or at its
	// QueueConfig.Concurrency). Running jobs are never stopped to make room. Default: false.
	StrictPriority bool
	// Lease is how long a claimed job is this worker's: the worker extends it every Lease/3
	// while the handler runs, and if the worker dies, another claims the job about Lease
	// later. Default: 30s.
	Lease time.Duration
	// MaxInterrupted is how many runs of a job may end without an outcome (a worker crashed
	// or lost the lease) before the job is dead: a job that kills its workers does not run
	// forever. Interrupted runs are not failures and use no attempt. Default: 3.
	MaxInterrupted int
	// Backoff returns how long a job waits after its n-th failure (n ≥ 1). Default: a random
	// delay between 0 and min(1h, 1s·2^(n-1)) (full jitter, so that failures spread out).
	Backoff func(n int) time.Duration
	// ShutdownTimeout is how long Run lets running jobs finish once its context ends; it then
	// cancels them and gives their jobs back, due at once, without counting an attempt.
	// Default: 25s (Kubernetes waits 30s between SIGTERM and SIGKILL).
	ShutdownTimeout time.Duration
	// IdleWait bounds one wait for a job on an empty queue (a job enqueued wakes the worker at
	// once; the bound only caps how long a missed wake-up can delay it). Default: 5s.
	IdleWait time.Duration
	// Logger receives store failures (once per outage) and handler panics. Default:
	// slog.Default().
	Logger *slog.Logger
	// Hooks observe the runs: OnStart, OnDone, OnLeaseLost. Default: none.
	Hooks Hooks
}

// WorkerStats counts what a Worker did: a snapshot, a plain value.
type WorkerStats struct {
	Started   uint64 // runs started
	Succeeded uint64 // runs that succeeded
	Failed    uint64 // runs whose failure the store recorded: Retried + Dead
	Retried   uint64 // failed runs whose job runs again later
	Dead      uint64 // failed runs that ended their job
	Panics    uint64 // runs that panicked (counted in Failed too)
	LeaseLost uint64 // runs whose outcome the store did not confirm (see Hooks.OnLeaseLost)
	Released  uint64 // runs stopped by the shutdown, their jobs given back
	Running   int    // runs in progress
}

// Worker claims the jobs of its queues from a [Store] and runs their handlers.
//
// The zero value is not usable; create a Worker with [NewWorker] and start it with Run. It is
// safe for concurrent use.
type Worker struct {
	store  backend
	local  bool // store is a MemoryStore: it always answers, at once, so nothing is batched or timed
	cfg    WorkerConfig
	logger *slog.Logger
	queues []string
	slots  map[string]*member // each queue's part of the run slots

	mu      sync.Mutex
	running map[*run]struct{}
	runs    sync.WaitGroup
	failing atomic.Bool // the store is failing: logged once
	started atomic.Bool // Run was called
	working sync.Mutex  // held by Run and Work

	outbox     outbox
	background context.Context // settlements of finished runs: they must reach the store
	replies    sync.Pool       // chan settleReply, empty, for settleMany
	pending    sync.WaitGroup  // settlements sent by settleAsync, not yet answered

	startedN, succeeded, failed, retried, dead, panics, lost, released atomic.Uint64
	inFlight                                                           atomic.Int64
}

// NewWorker returns a Worker for cfg's queues over store. Its error wraps ErrInvalidConfig and
// names the field at fault.
func NewWorker(store Store, cfg WorkerConfig) (*Worker, error) {
	invalid := func(field string, v any, why string) error {
		return fmt.Errorf("%w: WorkerConfig.%s %v %s", ErrInvalidConfig, field, v, why)
	}
	if store == nil {
		return nil, fmt.Errorf("%w: store is nil", ErrInvalidConfig)
	}
	if len(cfg.Queues) == 0 {
		return nil, invalid("Queues", "{}", "is empty")
	}
	switch {
	case cfg.Concurrency < 0:
		return nil, invalid("Concurrency", cfg.Concurrency, "is negative")
	case cfg.StrictPriority && cfg.Concurrency == 0:
		return nil, invalid("StrictPriority", true, "needs Concurrency: the queues share no slots")
	}
	qs := make(map[string]QueueConfig, len(cfg.Queues))
	names := make([]string, 0, len(cfg.Queues))
	for name, qc := range cfg.Queues {
		field := fmt.Sprintf("Queues[%q]", name)
		switch {
		case !validName(name, maxQueueLen):
			return nil, invalid("Queues", fmt.Sprintf("%q", name), "is not a queue name")
		case qc.Handler == nil:
			return nil, invalid(field+".Handler", "nil", "is required")
		case qc.Concurrency < 0 || qc.Timeout < 0 || qc.Weight < 0:
			return nil, invalid(field, "", "has a negative Concurrency, Weight or Timeout")
		case qc.Weight > 0 && cfg.Concurrency == 0:
			return nil, invalid(field+".Weight", qc.Weight, "needs WorkerConfig.Concurrency: the queues share no slots")
		}
		switch {
		case cfg.Concurrency > 0 && (qc.Concurrency == 0 || qc.Concurrency > cfg.Concurrency):
			qc.Concurrency = cfg.Concurrency
		case qc.Concurrency == 0:
			qc.Concurrency = 10
		}
		qc.Weight = max(qc.Weight, 1)
		qs[name] = qc
		names = append(names, name)
	}
	// Work serves the queues in this order: the highest Weight first, then by name.
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(qs[b].Weight-qs[a].Weight, strings.Compare(a, b))
	})
	cfg.Queues = qs
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{"Lease", cfg.Lease}, {"ShutdownTimeout", cfg.ShutdownTimeout}, {"IdleWait", cfg.IdleWait}} {
		if f.v < 0 {
			return nil, invalid(f.name, f.v, "is negative")
		}
	}
	if cfg.MaxInterrupted < 0 {
		return nil, invalid("MaxInterrupted", cfg.MaxInterrupted, "is negative")
	}
	if cfg.Lease == 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.Lease < 30*time.Millisecond {
		return nil, invalid("Lease", cfg.Lease, "is shorter than 30ms")
	}
	if cfg.MaxInterrupted == 0 {
		cfg.MaxInterrupted = 3
	}
	if cfg.Backoff == nil {
		cfg.Backoff = defaultBackoff
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 25 * time.Second
	}
	if cfg.IdleWait == 0 {
		cfg.IdleWait = 5 * time.Second
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	var shared *slots
	if cfg.Concurrency > 0 {
		shared = newSlots(cfg.Concurrency, cfg.StrictPriority)
	}
	members := make(map[string]*member, len(names))
	for _, name := range names {
		qc, pool := qs[name], shared
		if pool == nil {
			pool = newSlots(qc.Concurrency, false)
		}
		members[name] = pool.join(qc.Concurrency, qc.Weight)
	}
	_, local := store.backend().(*MemoryStore)
	return &Worker{store: store.backend(), local: local, cfg: cfg, logger: logger, queues: names, slots: members,
		outbox: outbox{kick: make(chan struct{}, 1)}, running: map[*run]struct{}{}, background: context.Background()}, nil
}

// defaultBackoff is full jitter over min(1h, 1s·2^(n-1)).
func defaultBackoff(n int) time.Duration {
	ceil := time.Hour
	if n < 13 {
		ceil = min(ceil, time.Second<<(n-1))
	}
	return rand.N(ceil + 1)
}

// run is one job running on this worker.
type run struct {
	claimed
	cancel context.CancelCauseFunc
	// until is when the lease surely ends on this instance's clock (Unix ns): the time a claim
	// or an extension was sent, plus Lease. Past it without a successful extension (the store
	// cannot be reached), the run is stopped: another worker may be running the job.
	until atomic.Int64
	// expiry stops the run at until when the store cannot be reached (stores other than a
	// MemoryStore, which always answers); nil otherwise.
	expiry *time.Timer
	// state: 0 running, 1 finished (its outcome is being settled), 2 lease lost, 3 released
	// by the shutdown
	state atomic.Int32
}

// Run serves the worker's queues until ctx ends, then shuts down: it stops claiming, lets the
// running jobs finish for ShutdownTimeout, then cancels the others and gives their jobs back
// (due at once, no attempt counted), and returns once every handler has returned: a handler
// must return when its context ends. A Worker runs once: Run returns ErrClosed if called
// again, or while Work runs.
func (w *Worker) Run(ctx context.Context) error {
	if !w.working.TryLock() {
		return ErrClosed
	}
	defer w.working.Unlock()
	if !w.started.CompareAndSwap(false, true) {
		return ErrClosed
	}
	// Jobs outlive ctx by up to ShutdownTimeout: they run under a context of their own, with
	// ctx's values, cancelled one by one (stopAll), so that a run's context is not registered
	// with a shared parent (a lock and a map entry per run).
	jobs := context.WithoutCancel(ctx)
	var settler, extender, loops sync.WaitGroup
	settleCtx, stopSettler := context.WithCancel(context.WithoutCancel(ctx))
	settler.Go(func() { w.settleLoop(settleCtx) })
	// Leases are extended until the last run ends, through the shutdown.
	extendCtx, stopExtender := context.WithCancel(context.WithoutCancel(ctx))
	extender.Go(func() { w.extendLoop(extendCtx) })
	for _, name := range w.queues {
		loops.Go(func() { w.dispatch(ctx, jobs, name) })
	}
	loops.Wait()

	// ctx ended: let the running jobs finish, then stop and release the rest.
	done := make(chan struct{})
	go func() { w.runs.Wait(); close(done) }()
	timer := time.NewTimer(w.cfg.ShutdownTimeout)
	select {
	case <-done:
	case <-timer.C:
		// Stop the rest, and give their jobs back once their handlers returned: given back
		// earlier, a job could start on another worker while its handler here still runs.
		stopped := w.stopAll()
		<-done
		w.release(context.WithoutCancel(ctx), stopped)
	}
	timer.Stop()
	stopExtender()
	extender.Wait()
	w.pending.Wait()
	stopSettler()
	settler.Wait()
	return nil
}

// claimWindow is how long a dispatcher with a backlog waits for more free slots before it
// claims: a few runs' worth of a quick handler, small against a job's latency.
const claimWindow = 2 * time.Millisecond

// errShutdown is the cause of the cancellation of the jobs still running at the end of
// ShutdownTimeout.
var errShutdown = errors.New("queue: worker shutting down")

// dispatch claims and starts the jobs of one queue while ctx lasts.
func (w *Worker) dispatch(ctx context.Context, jobs context.Context, name string) {
	qc, slots := w.cfg.Queues[name], w.slots[name]
	defer slots.idle()
	pause := 10 * time.Millisecond
	backlog := false // the last claim took all it asked for: more jobs are waiting
	for ctx.Err() == nil {
		// Wait for free slots, then claim as many jobs as there are. With a backlog, wait up
		// to claimWindow for three quarters of the queue's slots, so that busy queues claim
		// in batches rather than a round trip per job (a MemoryStore has no round trip to
		// save). Measured on Redis at concurrency 16 with a no-op handler, three quarters
		// took a third fewer round trips than half, and drained faster.
		var window time.Duration
		if backlog && !w.local {
			window = claimWindow
		}
		free := slots.acquire(ctx, qc.Concurrency-qc.Concurrency/4, window)
		if ctx.Err() != nil {
			slots.release(free)
			return
		}
		// A claim in flight when ctx ends completes: its jobs are given back at once rather
		// than left to wait for their leases.
		sent := time.Now()
		got, err := w.settleClaim(context.WithoutCancel(ctx), name, free)
		if err == nil && ctx.Err() != nil {
			w.giveBack(got)
			got = nil
		}
		if err != nil {
			slots.release(free)
			slots.idle()
			if ctx.Err() != nil {
				return
			}
			w.storeFailed(err)
			sleep(ctx, pause)
			pause = min(2*pause, time.Second)
			continue
		}
		w.storeAnswered()
		pause = 10 * time.Millisecond
		backlog = len(got) == free
		if !backlog {
			// The queue is empty for now: the slots it got meanwhile are the others'.
			slots.release(free - len(got))
			slots.idle()
		}
		for _, c := range got {
			w.start(jobs, &w.runs, qc, c, sent, func() { slots.release(1) })
		}
		if len(got) == 0 {
			if err := w.store.wait(ctx, name, w.cfg.IdleWait); err != nil && ctx.Err() == nil {
				w.storeFailed(err)
				sleep(ctx, pause)
			}
		}
	}
}

// start runs the claimed job c on a goroutine of wg, which calls done when the run is over.
func (w *Worker) start(jobs context.Context, wg *sync.WaitGroup, qc QueueConfig, c claimed, sent time.Time, done func()) {
	r := &run{claimed: c}
	r.until.Store(sent.Add(w.cfg.Lease).UnixNano())
	ctx, cancel := context.WithCancelCause(jobs)
	r.cancel = cancel
	if !w.local {
		r.expiry = time.AfterFunc(time.Until(sent.Add(w.cfg.Lease)), func() { w.expire(r) })
	}
	w.mu.Lock()
	w.running[r] = struct{}{}
	w.mu.Unlock()
	w.inFlight.Add(1)
	w.startedN.Add(1)
	wg.Go(func() {
		defer func() {
			w.mu.Lock()
			delete(w.running, r)
			w.mu.Unlock()
			w.inFlight.Add(-1)
			if r.expiry != nil {
				r.expiry.Stop()
			}
			cancel(nil)
			done()
		}()
		w.execute(ctx, qc, r)
	})
}

// Work runs the due jobs of the worker's queues until none is due, and returns how many runs
// it made: for tests, where jobs should run at a known point rather than in the background.
// It serves the queues by rank, the highest Weight first (a queue's jobs run once those of
// higher Weight are done, as with StrictPriority), each queue's jobs Concurrency at a time; a retry whose delay has passed runs too (move
// time forward, in a synctest bubble, to reach later ones). Leases are not extended: keep
// handlers shorter than Lease. It returns ErrClosed while Run or another Work is running, and
// ctx's error when it ends first.
func (w *Worker) Work(ctx context.Context) (int, error) {
	if !w.working.TryLock() {
		return 0, ErrClosed
	}
	defer w.working.Unlock()
	if w.started.Load() {
		return 0, ErrClosed
	}
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	var settler sync.WaitGroup
	settler.Go(func() { w.settleLoop(sctx) })
	defer func() { stop(); settler.Wait() }()
	n := 0
	for {
		// One batch of the first queue with due jobs, then from the first queue again: jobs
		// the batch enqueued on a queue of higher Weight run next.
		ran := 0
		for _, name := range w.queues {
			qc := w.cfg.Queues[name]
			sent := time.Now()
			got, err := w.settleClaim(ctx, name, qc.Concurrency)
			if err != nil {
				return n, err
			}
			var wg sync.WaitGroup
			for _, c := range got {
				w.start(ctx, &wg, qc, c, sent, func() {})
			}
			wg.Wait()
			w.pending.Wait() // their outcomes are in the store before the next claim
			if ran = len(got); ran > 0 {
				break
			}
		}
		if n += ran; ran == 0 {
			return n, ctx.Err()
		}
	}
}

// execute calls the handler and settles the outcome.
func (w *Worker) execute(ctx context.Context, qc QueueConfig, r *run) {
	d := r.Delivery
	if qc.Timeout > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, qc.Timeout)
		defer stop()
	}
	t0 := time.Now()
	err := w.call(ctx, qc.Handler, &d)
	took := time.Since(t0)
	if !r.state.CompareAndSwap(0, 1) {
		// Lost or released meanwhile: the outcome is not ours to record.
		w.leaseLost(ctx, r, &d)
		return
	}
	o := op{queue: d.Queue, id: d.ID, token: r.token}
	var retryAt time.Time
	switch {
	case err == nil:
		o.kind = opAck
	case IsNonRetryable(err) || d.Attempt >= d.MaxAttempts:
		o.kind, o.err = opDead, err.Error()
	default:
		o.kind, o.err = opRetry, err.Error()
		o.delay = max(0, w.cfg.Backoff(d.Attempt))
		retryAt = time.Now().Add(o.delay)
	}
	// The settlement goes out with others (one round trip for many runs) while the slot is
	// freed at once; the hooks then see the run's context without its cancellation.
	hctx := context.WithoutCancel(ctx)
	w.pending.Add(1)
	w.settleAsync(o, func(ok bool, serr error) {
		defer w.pending.Done()
		switch {
		case serr != nil:
			// The store did not answer: the lease will expire and the job run again.
			w.storeFailed(serr)
			w.leaseLost(hctx, r, &d)
			return
		case !ok:
			w.leaseLost(hctx, r, &d)
			return
		}
		switch o.kind {
		case opAck:
			w.succeeded.Add(1)
		case opRetry:
			w.failed.Add(1)
			w.retried.Add(1)
		case opDead:
			w.failed.Add(1)
			w.dead.Add(1)
		}
		if h := w.cfg.Hooks.OnDone; h != nil {
			h(hctx, &d, took, err, retryAt)
		}
	})
}

// call runs the handler, turning a panic into an error.
func (w *Worker) call(ctx context.Context, h Handler, d *Delivery) (err error) {
	defer func() {
		if p := recover(); p != nil {
			w.panics.Add(1)
			w.logger.Error("queue: handler panicked", "queue", d.Queue, "job", d.ID, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("queue: handler panicked: %v", p)
		}
	}()
	if on := w.cfg.Hooks.OnStart; on != nil {
		on(ctx, d) // inside the recover: a panicking hook fails the run, not the process
	}
	return h(ctx, d)
}

func (w *Worker) leaseLost(ctx context.Context, r *run, d *Delivery) {
	if r.state.Load() == 3 { // released by the shutdown
		return
	}
	w.lost.Add(1)
	if h := w.cfg.Hooks.OnLeaseLost; h != nil {
		h(ctx, d)
	}
}

// extendLoop extends the leases of the running jobs every Lease/3, in one settlement, and
// cancels the runs whose lease was lost.
func (w *Worker) extendLoop(ctx context.Context) {
	t := time.NewTicker(w.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		var runs []*run
		var ops []op
		w.mu.Lock()
		for r := range w.running {
			if r.state.Load() == 0 {
				runs = append(runs, r)
				ops = append(ops, op{kind: opExtend, queue: r.Queue, id: r.ID, token: r.token, lease: w.cfg.Lease})
			}
		}
		w.mu.Unlock()
		if len(ops) == 0 {
			continue
		}
		sent := time.Now()
		ok, err := w.settleMany(context.WithoutCancel(ctx), ops)
		if err != nil {
			w.storeFailed(err) // the next tick tries again, while the leases last
		}
		for i, r := range runs {
			switch {
			case err == nil && ok[i]:
				r.until.Store(sent.Add(w.cfg.Lease).UnixNano())
				if r.expiry != nil {
					r.expiry.Reset(time.Until(sent.Add(w.cfg.Lease)))
				}
			case err == nil, time.Now().UnixNano() >= r.until.Load():
				// Refused: another claim holds the job. Or unanswered past the lease:
				// another worker may hold it. Either way this run must stop.
				if r.state.CompareAndSwap(0, 2) {
					r.cancel(ErrLeaseLost)
				}
			}
		}
	}
}

// expire stops r if its lease is surely over: no extension was answered in time.
func (w *Worker) expire(r *run) {
	if time.Now().UnixNano() >= r.until.Load() && r.state.CompareAndSwap(0, 2) {
		r.cancel(ErrLeaseLost)
	}
}

// stopAll marks the runs still going at the end of the shutdown as released, so that their
// outcomes are not recorded, cancels them, and returns them.
func (w *Worker) stopAll() []*run {
	var runs []*run
	w.mu.Lock()
	for r := range w.running {
		if r.state.CompareAndSwap(0, 3) {
			runs = append(runs, r)
		}
	}
	w.mu.Unlock()
	for _, r := range runs {
		r.cancel(errShutdown)
	}
	return runs
}

// release gives back the jobs of runs stopped by the shutdown, once their handlers returned.
func (w *Worker) release(ctx context.Context, runs []*run) {
	if len(runs) == 0 {
		return
	}
	ops := make([]op, len(runs))
	for i, r := range runs {
		ops[i] = op{kind: opRelease, queue: r.Queue, id: r.ID, token: r.token}
	}
	ok, err := w.settleMany(ctx, ops)
	if err != nil {
		w.storeFailed(err) // their leases will expire: they run again then
		return
	}
	for i, r := range runs {
		if ok[i] {
			w.released.Add(1)
			continue
		}
		// Refused: the lease was lost before the shutdown stopped the run.
		w.lost.Add(1)
		if h := w.cfg.Hooks.OnLeaseLost; h != nil {
			h(ctx, &r.Delivery)
		}
	}
}

// giveBack releases jobs claimed but not started.
func (w *Worker) giveBack(got []claimed) {
	if len(got) == 0 {
		return
	}
	ops := make([]op, len(got))
	for i, c := range got {
		ops[i] = op{kind: opRelease, queue: c.Queue, id: c.ID, token: c.token}
	}
	if _, err := w.store.settle(context.Background(), ops); err != nil {
		w.storeFailed(err) // their leases will expire: they run again then
	}
}

func (w *Worker) storeFailed(err error) {
	if w.failing.CompareAndSwap(false, true) {
		w.logger.Warn("queue: store unavailable; retrying", "err", err)
	}
}

func (w *Worker) storeAnswered() {
	if w.failing.Load() && w.failing.CompareAndSwap(true, false) {
		w.logger.Info("queue: store answers again")
	}
}

// Stats returns the Worker's counters.
func (w *Worker) Stats() WorkerStats {
	return WorkerStats{
		Started: w.startedN.Load(), Succeeded: w.succeeded.Load(), Failed: w.failed.Load(),
		Retried: w.retried.Load(), Dead: w.dead.Load(), Panics: w.panics.Load(),
		LeaseLost: w.lost.Load(), Released: w.released.Load(), Running: int(w.inFlight.Load()),
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
