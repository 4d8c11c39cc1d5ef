package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outgrow/outgrow/internal/risefall"
)

// Defaults of Config. The interval, timeout and thresholds are those of in-process dependency
// checks, not the load balancer's: a critical dependency that dies is seen within
// defaultInterval×defaultUnhealthyThreshold+defaultTimeout = 14 s even when it hangs rather than
// refuses, and one that comes back within defaultInterval×defaultHealthyThreshold = 8 s (see
// "Two layers of thresholds" in the package doc).
const (
	defaultPath               = "/api/health"
	defaultReadyPath          = "/api/ready"
	defaultInterval           = 4 * time.Second
	defaultTimeout            = 2 * time.Second
	defaultHealthyThreshold   = 2
	defaultUnhealthyThreshold = 3
	defaultDrainDelay         = 5 * time.Second
	defaultShutdownTimeout    = 20 * time.Second
)

// Errors reported by checks and by the [Checker].
var (
	// ErrTimeout is the error of a check that did not return within its timeout, of one whose
	// previous run had still not returned when the next pass began, and of a Local check while a
	// call of it has been running for longer than its timeout. It wraps
	// [context.DeadlineExceeded].
	ErrTimeout = fmt.Errorf("health: check timed out: %w", context.DeadlineExceeded)
	// ErrClosed is returned by [Checker.Refresh] after [Checker.Close].
	ErrClosed = errors.New("health: checker closed")
	// ErrInvalidConfig is wrapped by the error of [New] given a Config or Check that cannot
	// work; the message names the field.
	ErrInvalidConfig = errors.New("health: invalid config")
)

// errStillRunning is the error of a check whose previous run has not returned: it is not
// started again, so a check that ignores its context costs one goroutine, not one per pass.
var errStillRunning = fmt.Errorf("%w (the previous run has not returned)", ErrTimeout)

// CheckFunc reports whether one dependency works: nil means healthy. Its zero value (nil) is not
// a check.
//
// A background check (the default) must return when ctx is done; its ctx carries the check's
// timeout. It is never called concurrently with itself: while a run has not returned, the next
// pass records a timeout instead of starting another.
//
// A [Check.Local] check runs on the goroutine that asks for readiness, with that request's ctx,
// and may be called by several probes at once, so it must be safe for concurrent use and must
// return at once: it reads in-process state (an atomic, a circuit breaker's state) and never
// waits on I/O or on a lock held for long.
type CheckFunc func(ctx context.Context) error

// Check is one named readiness check, given to [New], which copies it. Its zero value is not a
// valid check (it has no Name and no Func). How its Func may be called concurrently is said at
// [CheckFunc].
type Check struct {
	// Name identifies the check in responses, hooks and logs. Required and unique per Checker.
	Name string
	// Func runs the check. Required.
	Func CheckFunc
	// NonCritical marks a dependency the service can work without: while it is unhealthy the
	// service reports a degraded ("warn") status and stays ready (200). A critical check makes
	// the service not ready (503) while it is unhealthy. Default: false (critical).
	NonCritical bool
	// Local marks a cheap check that does no I/O, such as a circuit breaker's state
	// (breaker.Breaker.Check). It is not run by the background passes: it is called on every
	// readiness request, [Checker.Ready] and [Checker.Stats] call, and its result counts at once,
	// with no threshold (a breaker already applies its own), so readiness follows it on the very
	// next probe. See [CheckFunc] for what such a function must do. Default: false (the check
	// runs in the background passes, every [Config.Interval], under the thresholds).
	Local bool
	// Timeout bounds one run of a background check; it may not exceed [Config.Interval]. For a
	// Local check, which cannot be interrupted, it is a guard: once a call has been running for
	// longer than Timeout, probes stop calling the function until it returns and count the check
	// failed with [ErrTimeout] meanwhile, so a Local check that blocks holds up the probes that
	// called it, not every probe after them. Default: [Config.Timeout].
	Timeout time.Duration
}

// Config configures a [Checker]. The zero value is ready to use: every field is optional. New
// copies it, so changing a Config afterwards does not change the Checker.
//
// Interval, Timeout and the thresholds govern the in-process dependency checks behind readiness,
// not the load balancer that probes readiness: they default to faster settings than a balancer's
// so that the two layers together stay short (see "Two layers of thresholds" in the package doc).
type Config struct {
	// Path is where the liveness handler answers in [Checker.Middleware]. Default: "/api/health".
	Path string
	// ReadyPath is where the readiness handler answers in [Checker.Middleware]. Default: "/api/ready".
	ReadyPath string
	// Interval is the time between two background passes over the checks. Default: 4s.
	Interval time.Duration
	// Timeout bounds each check run unless the check sets its own. It may not exceed Interval;
	// when Interval is set below 2 s, Timeout defaults to Interval. Default: 2s.
	Timeout time.Duration
	// HealthyThreshold is the number of consecutive successes that turn an unhealthy check
	// healthy. Default: 2.
	HealthyThreshold int
	// UnhealthyThreshold is the number of consecutive failures that turn a healthy check
	// unhealthy. Default: 3.
	UnhealthyThreshold int
	// AllowVerbose decides whether a request with the "verbose" query parameter may see details:
	// error strings, durations and counters. It is called by concurrent requests. Nil keeps
	// details out of every response. Default: nil.
	AllowVerbose func(r *http.Request) bool
	// DrainDelay is how long [Checker.Shutdown] keeps serving after readiness turns failing, so that
	// load balancers notice and stop routing. Set it to at least the balancer's probe interval times
	// its failure threshold plus its propagation time. Default: 5s.
	DrainDelay time.Duration
	// ShutdownTimeout bounds the wait for in-flight requests in [Checker.Shutdown]; with the
	// default DrainDelay it fits Kubernetes' default 30 s grace period. Default: 20s.
	ShutdownTimeout time.Duration
	// Logger receives state changes: a check turning unhealthy or recovering, and a background
	// check panicking. It never gets one line per request. Default: slog.Default().
	Logger *slog.Logger
	// Hooks observe checks and status changes. Default: none.
	Hooks Hooks
}

// Hooks are optional callbacks. They are called one at a time and in the order of the events,
// possibly on another goroutine than the one that caused the event (a [Checker.Drain] never waits
// for a hook of a pass in progress; that pass's goroutine reports the drain after its own events),
// so they need not be safe for concurrent use. They should return quickly and must not call
// [Checker.Close]. The zero value has no hooks.
type Hooks struct {
	// OnCheckDone is called after every run of a background check, with its duration and error
	// (nil on success). Local checks, called on every probe, report only their changes.
	OnCheckDone func(ctx context.Context, name string, d time.Duration, err error)
	// OnCheckChange is called when a check's state changes. For a Local check, ctx is that of
	// the request that saw the change, without its cancellation.
	OnCheckChange func(ctx context.Context, name string, from, to State)
	// OnStatusChange is called when the readiness status changes.
	OnStatusChange func(ctx context.Context, from, to Status)
}

// Status is the readiness of the service, in the vocabulary of the IETF health check response
// format (draft-inadarei-api-health-check). The plain JSON body words it for people: pass is
// "ok", warn is "degraded", and fail names its reason ("starting", "unavailable", "draining",
// "closed"). The zero value "" is no status; a [Checker] never reports it.
type Status string

// The readiness statuses. Readiness answers 200 for pass and warn, 503 for fail.
const (
	StatusPass Status = "pass" // every check healthy
	StatusWarn Status = "warn" // every critical check healthy, some non-critical check unhealthy
	StatusFail Status = "fail" // starting, draining, closed, or some critical check not healthy
)

// State is the state of one check; its zero value is [StateUnknown]. A background check's first
// failure makes it [StateUnhealthy] and its first success ever makes it [StateHealthy] (as a new
// target needs one pass on ALB and Envoy), so a dependency that is slow to come up at boot delays
// readiness by no more than one interval. Once it has been healthy, it turns unhealthy only after
// UnhealthyThreshold consecutive failures and healthy again only after HealthyThreshold
// consecutive successes, so a single blip never flips it. A Local check's state is the result of
// its latest call.
type State int

// The states of a check.
const (
	StateUnknown State = iota
	StateHealthy
	StateUnhealthy
)

// String returns "unknown", "healthy" or "unhealthy".
func (s State) String() string {
	switch s {
	case StateHealthy:
		return "healthy"
	case StateUnhealthy:
		return "unhealthy"
	default:
		return "unknown"
	}
}

// Stats is a snapshot of a Checker, returned by [Checker.Stats]; the Checker never changes a
// snapshot it has returned, so a Stats may be read from any goroutine. The zero value is an empty
// snapshot.
type Stats struct {
	// Status is the readiness status handlers report.
	Status Status
	// Draining reports whether [Checker.Drain] was called.
	Draining bool
	// Passes counts completed background passes over the checks.
	Passes uint64
	// LastPass is when the last pass completed; zero before the first.
	LastPass time.Time
	// Checks holds one entry per check, in the order given to [New].
	Checks []CheckStats
}

// CheckStats is a snapshot of one check, part of [Stats], and like it never changed once
// returned. The zero value is an empty snapshot.
type CheckStats struct {
	// Name, NonCritical and Local are the check's, as given to [New].
	Name        string
	NonCritical bool
	Local       bool
	// State is the check's state after the last run.
	State State
	// LastError is the error of the last run; nil if it succeeded or none has run.
	LastError error
	// LastDuration is how long the last run took (up to its timeout).
	LastDuration time.Duration
	// LastRun is when the last run completed; zero before the first.
	LastRun time.Time
	// ConsecutiveSuccesses and ConsecutiveFailures count the runs since the last change of
	// outcome; one of them is zero.
	ConsecutiveSuccesses int
	ConsecutiveFailures  int
	// Runs and Failures count every run and every failed run.
	Runs, Failures uint64
}

// Checker serves liveness and readiness for one service. It runs its background checks all at
// once every Interval and caches the verdict, so probes never reach a dependency and a probe
// costs the same whatever the number of background checks; it calls its Local checks on each
// probe. Concurrent refreshes share one pass.
//
// The zero value is not usable; create a Checker with [New]. It is safe for concurrent use. Call
// [Checker.Close] to stop its goroutines.
type Checker struct {
	cfg        Config
	start      time.Time
	checks     []*checkState // every check, in the order given to New
	background []*checkState // the checks the passes run
	locals     []*checkState // the checks each probe calls

	snap atomic.Pointer[snapshot]

	ctx    context.Context // lifetime of background work; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// hookMu is held by the goroutine delivering queued hook calls (see deliver), so that hooks
	// run one at a time and in the order their events were queued under mu.
	hookMu sync.Mutex

	mu       sync.Mutex // guards the fields below and every checkState's results
	events   []func()   // hook calls queued in event order, not yet delivered
	passDone chan struct{}
	passes   uint64
	lastPass time.Time
	draining bool
	closed   bool
}

type checkState struct {
	Check
	idx     int         // position in Checker.checks and in each snapshot's checks
	running atomic.Bool // a background run has not returned yet; at most one at a time

	// Guarded by Checker.mu; what snapshots show. Of a Local check only state and lastErr (for
	// the log line) are kept, copied from its live record when its state changes: the rest of
	// its entry is always read from the live record (see checkStats).
	state        State
	rf           risefall.Machine // a background check's counters; state follows its State
	lastErr      error
	lastDuration time.Duration
	lastRun      time.Time
	runs, fails  uint64

	// Local checks only.
	busySince atomic.Int64 // 1 + start of the watched call (time since Checker.start); 0 when none
	liveMu    sync.Mutex   // guards live
	live      liveRecord
}

// liveRecord is a Local check's record, updated by every call.
type liveRecord struct {
	err         error
	d           time.Duration
	at          time.Time
	rf          risefall.Machine // under localPolicy
	runs, fails uint64
}

// New returns a Checker over checks and starts its first pass at once. Until that pass completes
// the service is not ready. It returns an error matching [ErrInvalidConfig] for a negative
// duration or threshold, a timeout longer than the interval, a bad path, a check without a name
// or function, or two checks with the same name.
func New(cfg Config, checks ...Check) (*Checker, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	c := &Checker{cfg: cfg, start: time.Now()}
	seen := make(map[string]bool, len(checks))
	for i, ch := range checks {
		switch {
		case ch.Name == "":
			return nil, fmt.Errorf("%w: check %d has no Name", ErrInvalidConfig, i)
		case ch.Func == nil:
			return nil, fmt.Errorf("%w: check %q has no Func", ErrInvalidConfig, ch.Name)
		case seen[ch.Name]:
			return nil, fmt.Errorf("%w: two checks are named %q", ErrInvalidConfig, ch.Name)
		case ch.Timeout < 0:
			return nil, fmt.Errorf("%w: check %q: Check.Timeout %v is negative", ErrInvalidConfig, ch.Name, ch.Timeout)
		case !ch.Local && ch.Timeout > cfg.Interval:
			return nil, fmt.Errorf("%w: check %q: Check.Timeout %v exceeds Config.Interval %v",
				ErrInvalidConfig, ch.Name, ch.Timeout, cfg.Interval)
		}
		seen[ch.Name] = true
		if ch.Timeout == 0 {
			ch.Timeout = cfg.Timeout
		}
		cs := &checkState{Check: ch, idx: i}
		c.checks = append(c.checks, cs)
		if ch.Local {
			c.locals = append(c.locals, cs)
		} else {
			c.background = append(c.background, cs)
		}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.mu.Lock()
	c.publish()
	c.mu.Unlock()
	c.wg.Add(1)
	go c.loop()
	return c, nil
}

func (cfg *Config) setDefaults() error {
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"Interval", &cfg.Interval, defaultInterval},
		{"Timeout", &cfg.Timeout, -1}, // derived from Interval below
		{"DrainDelay", &cfg.DrainDelay, defaultDrainDelay},
		{"ShutdownTimeout", &cfg.ShutdownTimeout, defaultShutdownTimeout},
	} {
		if *d.v < 0 {
			return fmt.Errorf("%w: Config.%s %v is negative", ErrInvalidConfig, d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.Timeout < 0 {
		cfg.Timeout = min(defaultTimeout, cfg.Interval)
	}
	if cfg.Timeout > cfg.Interval {
		return fmt.Errorf("%w: Config.Timeout %v exceeds Interval %v", ErrInvalidConfig, cfg.Timeout, cfg.Interval)
	}
	for _, n := range []struct {
		name string
		v    *int
		def  int
	}{
		{"HealthyThreshold", &cfg.HealthyThreshold, defaultHealthyThreshold},
		{"UnhealthyThreshold", &cfg.UnhealthyThreshold, defaultUnhealthyThreshold},
	} {
		if *n.v < 0 {
			return fmt.Errorf("%w: Config.%s %d is negative", ErrInvalidConfig, n.name, *n.v)
		}
		if *n.v == 0 {
			*n.v = n.def
		}
	}
	if cfg.Path == "" {
		cfg.Path = defaultPath
	}
	if cfg.ReadyPath == "" {
		cfg.ReadyPath = defaultReadyPath
	}
	switch {
	case !strings.HasPrefix(cfg.Path, "/"):
		return fmt.Errorf("%w: Config.Path %q does not start with /", ErrInvalidConfig, cfg.Path)
	case !strings.HasPrefix(cfg.ReadyPath, "/"):
		return fmt.Errorf("%w: Config.ReadyPath %q does not start with /", ErrInvalidConfig, cfg.ReadyPath)
	case cfg.Path == cfg.ReadyPath:
		return fmt.Errorf("%w: Config.Path and ReadyPath are both %q", ErrInvalidConfig, cfg.Path)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return nil
}

// loop runs a pass at once and then every Interval until Close.
func (c *Checker) loop() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		done, err := c.startPass()
		if err != nil {
			return
		}
		select {
		case <-done:
		case <-c.ctx.Done():
			return
		}
		select {
		case <-t.C:
		case <-c.ctx.Done():
			return
		}
	}
}

// Refresh runs every background check now, or joins the pass already running, and returns the
// resulting snapshot (Local checks are called for it, as for [Checker.Stats]). It returns ctx's
// error if ctx ends first (the pass goes on) and [ErrClosed] after Close. Its passes count
// toward the thresholds like the background ones: three Refresh calls against a failing
// dependency mark it unhealthy at once.
func (c *Checker) Refresh(ctx context.Context) (Stats, error) {
	done, err := c.startPass()
	if err != nil {
		return Stats{}, err
	}
	select {
	case <-done:
	case <-ctx.Done():
		return Stats{}, ctx.Err()
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return Stats{}, ErrClosed // the pass was cut short
	}
	return c.Stats(), nil
}

// startPass starts a pass unless one is running, and returns a channel closed when that pass ends.
func (c *Checker) startPass() (<-chan struct{}, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if c.passDone != nil {
		return c.passDone, nil
	}
	done := make(chan struct{})
	c.passDone = done
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.runPass()
		c.mu.Lock()
		c.passDone = nil
		c.mu.Unlock()
		close(done)
	}()
	return done, nil
}

type result struct {
	err error
	d   time.Duration
	at  time.Time
}

// runPass runs every background check concurrently, each bounded by its timeout, then applies
// the results.
func (c *Checker) runPass() {
	ctx := c.ctx
	results := make([]result, len(c.background))
	var wg sync.WaitGroup
	for i, cs := range c.background {
		wg.Go(func() { results[i] = c.run(ctx, cs) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // closing: a cancelled run says nothing about the dependency
	}

	h := c.cfg.Hooks
	c.mu.Lock()
	before := c.snap.Load().status
	for i, cs := range c.background {
		r := results[i]
		if h.OnCheckDone != nil {
			c.events = append(c.events, func() { h.OnCheckDone(ctx, cs.Name, r.d, r.err) })
		}
		from, to := cs.apply(r, c.cfg)
		c.queueCheckChange(ctx, cs, from, to)
	}
	c.passes++
	c.lastPass = time.Now()
	after := c.publish().status
	c.queueStatusChange(ctx, before, after)
	c.mu.Unlock()
	c.deliver()
}

// queueCheckChange queues the log line and OnCheckChange of a check's change of state, if any.
// The caller holds c.mu.
func (c *Checker) queueCheckChange(ctx context.Context, cs *checkState, from, to State) {
	if from == to {
		return
	}
	name, err, h := cs.Name, cs.lastErr, c.cfg.Hooks.OnCheckChange
	c.events = append(c.events, func() {
		if to == StateUnhealthy {
			c.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "health: check unhealthy", slog.String("component", "health"),
				slog.String("check", name), slog.Any("error", err))
		} else if from == StateUnhealthy {
			c.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "health: check recovered", slog.String("component", "health"),
				slog.String("check", name))
		}
		if h != nil {
			h(ctx, name, from, to)
		}
	})
}

// queueStatusChange queues OnStatusChange if the status changed. The caller holds c.mu.
func (c *Checker) queueStatusChange(ctx context.Context, before, after Status) {
	if before != after && c.cfg.Hooks.OnStatusChange != nil {
		c.events = append(c.events, func() { c.cfg.Hooks.OnStatusChange(ctx, before, after) })
	}
}

// deliver calls the queued hooks unless another goroutine is already doing so, in which case
// that goroutine delivers them too: it looks at the queue again after releasing hookMu, so no
// event is left behind.
func (c *Checker) deliver() {
	for {
		if !c.hookMu.TryLock() {
			return
		}
		for {
			c.mu.Lock()
			evs := c.events
			c.events = nil
			c.mu.Unlock()
			if len(evs) == 0 {
				break
			}
			for _, ev := range evs {
				ev()
			}
		}
		c.hookMu.Unlock()
		c.mu.Lock()
		more := len(c.events) > 0
		c.mu.Unlock()
		if !more {
			return
		}
	}
}

// run runs one check in its own goroutine and waits for it at most its timeout. The goroutine
// reports through a buffered channel, so it exits as soon as the check returns, even after the
// pass has stopped waiting for it; and a check whose previous run has not returned is not started
// again, so a check that ignores its context costs at most one goroutine.
func (c *Checker) run(ctx context.Context, cs *checkState) result {
	start := time.Now()
	if !cs.running.CompareAndSwap(false, true) {
		return result{err: errStillRunning, at: start}
	}
	ctx, cancel := context.WithTimeout(ctx, cs.Timeout)
	defer cancel()
	ch := make(chan error, 1)
	c.wg.Go(func() {
		err := c.call(ctx, cs) // never panics: call recovers
		// Over before the result is handed over: the pass that receives it, or the next one,
		// must find the check free.
		cs.running.Store(false)
		ch <- err
	})
	var err error
	select {
	case err = <-ch:
	case <-ctx.Done():
		err = fmt.Errorf("%w after %v", ErrTimeout, cs.Timeout)
	}
	now := time.Now()
	return result{err: err, d: now.Sub(start), at: now}
}

// call runs the check function, turning a panic into an error. A background check's panic is
// logged with its stack; a Local check's is not, since it would repeat on every probe (its
// error, which names the panic, is logged when the check turns unhealthy).
func (c *Checker) call(ctx context.Context, cs *checkState) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("health: check %q panicked: %v", cs.Name, p)
			if !cs.Local {
				c.cfg.Logger.LogAttrs(ctx, slog.LevelError, "health: check panicked", slog.String("component", "health"),
					slog.String("check", cs.Name), slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
			}
		}
	}()
	return cs.Func(ctx)
}

// policy is the rise/fall policy of the background checks: the thresholds, after the first
// result, which decides at once (see [State]).
func (cfg *Config) policy() risefall.Policy {
	return risefall.Policy{Rise: cfg.HealthyThreshold, Fall: cfg.UnhealthyThreshold, Start: risefall.FirstResult}
}

// stateOf maps a rise/fall state to a check's.
func stateOf(s risefall.State) State {
	switch s {
	case risefall.Up:
		return StateHealthy
	case risefall.Down:
		return StateUnhealthy
	default:
		return StateUnknown
	}
}

// apply records one result of a background check and moves the state machine; c.mu must be held.
func (cs *checkState) apply(r result, cfg Config) (from, to State) {
	from = cs.state
	cs.runs++
	cs.lastErr, cs.lastDuration, cs.lastRun = r.err, r.d, r.at
	if r.err != nil {
		cs.fails++
	}
	cs.rf.Record(r.err == nil, cfg.policy())
	cs.state = stateOf(cs.rf.State())
	return from, cs.state
}

// view returns the snapshot to answer from. With Local checks it calls them first and, when one
// changed state since the snapshot was published, publishes a new one.
func (c *Checker) view(ctx context.Context) *snapshot {
	s := c.snap.Load()
	if len(c.locals) == 0 || s.closed {
		return s
	}
	changed := false
	for _, cs := range c.locals {
		if c.callLocal(ctx, cs) != s.checks[cs.idx].State {
			changed = true
		}
	}
	if !changed {
		return s // the cached bodies still hold
	}
	return c.applyLocal(ctx)
}

// localPolicy is a Local check's: no threshold, each call's result is its state.
var localPolicy = risefall.Policy{Rise: 1, Fall: 1}

// callLocal calls a Local check on the caller's goroutine, records the result and returns the
// state it gives. One call at a time is watched: while it has been running for longer than the
// check's Timeout, the check is not called and counts as failed.
func (c *Checker) callLocal(ctx context.Context, cs *checkState) State {
	start := time.Now()
	now := int64(start.Sub(c.start)) + 1
	var err error
	if since := cs.busySince.Load(); since != 0 && time.Duration(now-since) > cs.Timeout {
		err = errStillRunning
	} else {
		watched := since == 0 && cs.busySince.CompareAndSwap(0, now)
		err = c.call(ctx, cs)
		if watched {
			cs.busySince.Store(0)
		}
	}
	end := time.Now()
	cs.liveMu.Lock()
	l := &cs.live
	l.err, l.d, l.at = err, end.Sub(start), end
	l.runs++
	if err != nil {
		l.fails++
	}
	_, to := l.rf.Record(err == nil, localPolicy)
	cs.liveMu.Unlock()
	return stateOf(to)
}

// applyLocal sets the Local checks' states from their live records, publishes the snapshot and
// reports the changes.
func (c *Checker) applyLocal(ctx context.Context) *snapshot {
	ctx = context.WithoutCancel(ctx) // hooks may be delivered after the request has ended
	c.mu.Lock()
	before := c.snap.Load().status
	for _, cs := range c.locals {
		cs.liveMu.Lock()
		l := cs.live
		cs.liveMu.Unlock()
		if l.runs == 0 {
			continue // not called yet: still unknown
		}
		from := cs.state
		cs.state, cs.lastErr = stateOf(l.rf.State()), l.err
		c.queueCheckChange(ctx, cs, from, cs.state)
	}
	s := c.publish()
	c.queueStatusChange(ctx, before, s.status)
	c.mu.Unlock()
	c.deliver()
	return s
}

// checkStats returns the snapshot's check entries with each Local check's latest call.
func (c *Checker) checkStats(s *snapshot) []CheckStats {
	checks := append([]CheckStats(nil), s.checks...)
	for _, cs := range c.locals {
		cs.liveMu.Lock()
		l := cs.live
		cs.liveMu.Unlock()
		st := &checks[cs.idx]
		st.LastError, st.LastDuration, st.LastRun = l.err, l.d, l.at
		st.ConsecutiveSuccesses, st.ConsecutiveFailures, st.Runs, st.Failures = l.rf.Successes(), l.rf.Failures(), l.runs, l.fails
	}
	return checks
}

// Drain turns readiness failing (503, "draining") for good while liveness stays OK, so that load
// balancers stop sending new requests before the server shuts down. See [Checker.Shutdown].
func (c *Checker) Drain() {
	c.setFlag(&c.draining)
}

// Close stops the background passes and waits for every goroutine the Checker started, including
// checks still running: their context is cancelled, so a check that ignores its context delays
// Close until it returns. Readiness reports fail afterwards; liveness is unaffected. Close is
// idempotent and always returns nil.
func (c *Checker) Close() error {
	c.setFlag(&c.closed)
	c.cancel()
	c.wg.Wait()
	return nil
}

// setFlag sets one of the flags that force readiness to fail, and reports the status change.
func (c *Checker) setFlag(flag *bool) {
	c.mu.Lock()
	if *flag {
		c.mu.Unlock()
		return
	}
	before := c.snap.Load().status
	*flag = true
	after := c.publish().status
	c.queueStatusChange(context.Background(), before, after)
	c.mu.Unlock()
	c.deliver()
}

// Stats returns a snapshot of the checker and of every check. It calls the Local checks, so
// their entries and the status are current.
func (c *Checker) Stats() Stats {
	s := c.view(context.Background())
	return Stats{
		Status:   s.status,
		Draining: s.draining,
		Passes:   s.passes,
		LastPass: s.lastPass,
		Checks:   c.checkStats(s),
	}
}

// Ready reports whether readiness currently answers 200 (status pass or warn). It calls the
// Local checks.
func (c *Checker) Ready() bool {
	return c.view(context.Background()).status != StatusFail
}

// status derives the readiness status from the flags and check states; c.mu must be held.
func (c *Checker) status() (Status, string) {
	switch {
	case c.closed:
		return StatusFail, "closed"
	case c.draining:
		return StatusFail, "draining"
	case c.passes == 0:
		return StatusFail, "starting"
	}
	st, reason := StatusPass, ""
	for _, cs := range c.checks {
		switch {
		case cs.state == StateHealthy:
		case !cs.NonCritical:
			return StatusFail, "unavailable"
		case cs.state == StateUnhealthy:
			st, reason = StatusWarn, "degraded"
		}
	}
	return st, reason
}
