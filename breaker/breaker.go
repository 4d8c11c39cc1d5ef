package breaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// State is the state of a Breaker. The zero value is StateClosed.
type State uint8

// The states of a Breaker.
const (
	// StateClosed lets calls through and counts failures.
	StateClosed State = iota
	// StateOpen refuses calls with an *OpenError until its open duration has passed.
	StateOpen
	// StateHalfOpen lets a few probe calls through; their outcomes close or reopen the breaker.
	StateHalfOpen
)

// String returns "closed", "open" or "half-open".
func (s State) String() string {
	switch s {
	case StateClosed:
		return "closed"
	case StateOpen:
		return "open"
	case StateHalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Stats is a snapshot of a Breaker, a plain value. The zero value is a closed breaker that has
// counted nothing.
type Stats struct {
	State               State  // as State reports it
	ConsecutiveFailures int    // failures since the last success while closed
	Failures            uint64 // failures counted, all states
	Rejected            uint64 // calls refused with an *OpenError
	Opens               uint64 // transitions to open
	Mode                Mode   // set by SetMode
}

// Mode overrides the state machine by hand; see [Breaker.SetMode]. The zero value is ModeAuto.
type Mode uint8

// The modes of a Breaker.
const (
	// ModeAuto is normal operation.
	ModeAuto Mode = iota
	// ModeForcedOpen refuses every call.
	ModeForcedOpen
	// ModeForcedClosed lets every call through and still counts outcomes (they never open it).
	ModeForcedClosed
	// ModeDisabled lets every call through and counts nothing.
	ModeDisabled
)

// String returns "auto", "forced-open", "forced-closed" or "disabled".
func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeForcedOpen:
		return "forced-open"
	case ModeForcedClosed:
		return "forced-closed"
	case ModeDisabled:
		return "disabled"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

var (
	// ErrOpen is matched by every *OpenError: errors.Is(err, breaker.ErrOpen).
	ErrOpen = errors.New("breaker: open")
	// ErrInvalidConfig is wrapped by the error of a constructor given a configuration that
	// cannot work; the message names the field.
	ErrInvalidConfig = errors.New("breaker: invalid config")
)

// OpenError is the error of a refused call. It matches ErrOpen; errors.As gives the wait.
// Retrying it right away is pointless: retry helpers should stop on it. The zero value reports
// no wait; an OpenError is safe for concurrent use.
type OpenError struct {
	// Name is the breaker's name.
	Name  string
	until int64 // monotonic ns since the breaker's epoch; 0 when unknown
	b     *Breaker
}

// Error returns "breaker <name>: open".
func (e *OpenError) Error() string {
	if e.Name == "" {
		return "breaker: open"
	}
	return "breaker " + e.Name + ": open"
}

// Is makes errors.Is(err, ErrOpen) true.
func (e *OpenError) Is(target error) bool { return target == ErrOpen }

// RetryAfter is how long until the breaker lets a probe through; 0 when it is half-open and all
// its probes are busy (retry soon).
func (e *OpenError) RetryAfter() time.Duration {
	if e.until == 0 {
		return 0
	}
	return time.Duration(max(0, e.until-e.b.now()))
}

// Breaker is a circuit breaker: closed, open after Config.Failures consecutive failures, then
// half-open with a few leased probes. A call through a closed breaker takes no lock and
// allocates nothing; with a Store, the first call after each batch also queues the breaker for
// the next one, under the store's lock.
//
// The zero value is not usable; create a Breaker with [New]. It is safe for concurrent use and
// has no goroutine of its own.
type Breaker struct {
	cfg   Config
	epoch time.Time
	plain bool // default classifier, no SlowCall, no OnOutcome: a nil error is a success

	// word is the generation: state in the top 2 bits; for open, the open-until time below;
	// otherwise a sequence number. Every transition changes it, so a token from an earlier
	// generation can tell.
	word     atomic.Uint64
	seq      atomic.Uint64
	mode     atomic.Uint32
	failures atomic.Int64 // consecutive, while closed
	window   window       // outcomes of the last Window, when FailureRate is set
	calls    *calls       // outcomes of the last WindowCalls calls, when set instead
	openErr  atomic.Pointer[OpenError]
	busyErr  *OpenError

	link *storeLink // to Config.Store; nil without one

	totalFailures, opens atomic.Uint64
	rejected             [8]paddedCount // striped: refusals on many cores do not share a line

	mu        sync.Mutex // half-open bookkeeping and the backoff, off the hot path
	probeGen  uint64
	leases    []int64 // probe lease deadlines; 0 free
	successes int
	reopens   int // consecutive reopenings from half-open, for the backoff
}

const (
	stateShift = 62
	valueMask  = 1<<stateShift - 1
)

func pack(s State, v uint64) uint64 { return uint64(s)<<stateShift | v&valueMask }
func stateOf(w uint64) State        { return State(w >> stateShift) }

// New returns a closed Breaker. Its error wraps ErrInvalidConfig and names the field at fault.
func New(cfg Config) (*Breaker, error) {
	cfg, err := cfg.withDefaults("Config")
	if err != nil {
		return nil, err
	}
	if cfg.Store != nil && cfg.Name == "" {
		return nil, fmt.Errorf("%w: Config.Name is empty: breakers sharing a Store are matched by name", ErrInvalidConfig)
	}
	plain := cfg.Classify == nil && cfg.SlowCall == 0 && cfg.Hooks.OnOutcome == nil
	if cfg.Classify == nil {
		cfg.Classify = DefaultClassifier
	}
	b := &Breaker{cfg: cfg, epoch: time.Now(), plain: plain, leases: make([]int64, cfg.Probes)}
	if cfg.WindowCalls > 0 && cfg.FailureRate > 0 {
		b.calls = newCalls(cfg.WindowCalls)
	}
	b.busyErr = &OpenError{Name: cfg.Name, b: b}
	b.word.Store(pack(StateClosed, b.seq.Add(1)))
	if cfg.Store != nil {
		bt := cfg.Store.batcher()
		b.link = newStoreLink(bt, &b.cfg)
		bt.register(b)
	}
	return b, nil
}

func (b *Breaker) now() int64 { return int64(time.Since(b.epoch)) + 1 } // never 0

// Token is the permission to make one call. Report its outcome with Done.
//
// A Token is a small value meant to live for one call; it keeps the call's context for the
// classifier. The zero Token counts nothing. Done may be called from any goroutine, once.
type Token struct {
	b     *Breaker
	ctx   context.Context
	word  uint64
	start int64 // 0 unless durations are needed
	lease int   // probe lease index + 1, 0 when not a probe; -slot for a lease of the Store
	until int64 // the lease's deadline, which identifies it
	sgen  int64 // the shared generation of a Store lease
}

// Allow asks to make a call. It returns an *OpenError (matching ErrOpen) when the breaker is
// open, or half-open with every probe busy.
func (b *Breaker) Allow(ctx context.Context) (Token, error) {
	switch Mode(b.mode.Load()) {
	case ModeForcedOpen:
		return Token{}, b.reject(ctx, b.forcedErr())
	case ModeForcedClosed, ModeDisabled:
		return Token{b: b, ctx: ctx, word: b.word.Load(), start: b.start()}, nil
	}
	w := b.word.Load()
	if stateOf(w) == StateClosed {
		if b.link != nil {
			b.link.queue(b)
		}
		return Token{b: b, ctx: ctx, word: w, start: b.start()}, nil
	}
	return b.allowSlow(ctx, w)
}

func (b *Breaker) start() int64 {
	if b.cfg.SlowCall > 0 || b.cfg.Hooks.OnOutcome != nil {
		return b.now()
	}
	return 0
}

func (b *Breaker) forcedErr() *OpenError {
	return &OpenError{Name: b.cfg.Name, b: b}
}

// allowSlow handles open and half-open.
func (b *Breaker) allowSlow(ctx context.Context, w uint64) (Token, error) {
	now := b.now()
	if stateOf(w) == StateOpen {
		until := int64(w & valueMask)
		if now < until {
			return Token{}, b.reject(ctx, b.openErr.Load())
		}
		if b.link != nil {
			if tok, err, ok := b.acquireSharedProbe(ctx); ok {
				return tok, err
			}
			// The store failed: this instance probes alone.
		}
		// The open duration is over: one caller moves the breaker to half-open.
		hw := pack(StateHalfOpen, b.seq.Add(1))
		if b.word.CompareAndSwap(w, hw) {
			b.changed(ctx, StateOpen, StateHalfOpen)
		}
		w = b.word.Load()
		if stateOf(w) == StateClosed {
			return Token{b: b, ctx: ctx, word: w, start: b.start()}, nil
		}
		if stateOf(w) == StateOpen {
			return Token{}, b.reject(ctx, b.openErr.Load())
		}
	}
	// Half-open: take a free or expired probe lease.
	b.mu.Lock()
	if b.word.Load() != w {
		b.mu.Unlock()
		return b.Allow(ctx)
	}
	b.resetProbes(w)
	for i, deadline := range b.leases {
		if deadline == 0 || deadline <= now {
			until := now + int64(b.cfg.ProbeTimeout)
			b.leases[i] = until
			b.mu.Unlock()
			return Token{b: b, ctx: ctx, word: w, start: now, lease: i + 1, until: until}, nil
		}
	}
	b.mu.Unlock()
	return Token{}, b.reject(ctx, b.busyErr)
}

// resetProbes starts the bookkeeping of a new half-open generation. b.mu is held.
func (b *Breaker) resetProbes(w uint64) {
	if b.probeGen != w {
		b.probeGen = w
		clear(b.leases)
		b.successes = 0
	}
}

// Done reports the outcome of the call: err is what the call returned. It reports whether the
// outcome counted: outcomes of a previous generation (the breaker changed state since Allow)
// and ignored outcomes do not. Call it exactly once per Token; the zero Token counts nothing.
func (t Token) Done(err error) bool {
	b := t.b
	if b == nil {
		return false
	}
	if err == nil && b.plain {
		// The hot path: a success with the default classifier, no slow calls, no hook.
		return b.record(t, OutcomeSuccess)
	}
	var d time.Duration
	if t.start != 0 {
		d = time.Duration(b.now() - t.start)
	}
	o := b.cfg.Classify(t.ctx, err, d)
	if o == OutcomeSuccess && b.cfg.SlowCall > 0 && d > b.cfg.SlowCall {
		o = OutcomeFailure
	}
	counted := b.record(t, o)
	if h := b.cfg.Hooks.OnOutcome; h != nil {
		h(t.ctx, b.cfg.Name, o, d, counted)
	}
	return counted
}

func (b *Breaker) record(t Token, o Outcome) bool {
	if t.lease < 0 { // a probe leased from the store
		return b.reportSharedProbe(t, o) // whatever the mode: the store's lease must be given back
	}
	switch Mode(b.mode.Load()) {
	case ModeDisabled:
		return false
	case ModeForcedClosed:
		if o == OutcomeFailure {
			b.totalFailures.Add(1)
		}
		return o != OutcomeIgnored
	}
	if t.lease != 0 {
		if b.link != nil && o != OutcomeIgnored {
			// A probe this instance runs alone (the store failed) counts like any call: its
			// success ends the shared run of failures that opened this instance.
			b.link.add(b, o, b.word.Load() == t.word)
		}
		return b.recordProbe(t, o)
	}
	if o == OutcomeIgnored {
		return false
	}
	current := b.word.Load() == t.word
	if b.link != nil {
		b.link.add(b, o, current)
	}
	if !current {
		return false
	}
	rate := b.cfg.FailureRate > 0
	if o == OutcomeSuccess {
		if b.failures.Load() != 0 { // read first: successes write nothing in the common case
			b.failures.Store(0)
		}
		switch {
		case b.calls != nil:
			b.calls.add(false)
		case rate:
			b.window.add(b.now(), b.cfg.Window, false)
		}
		return true
	}
	b.totalFailures.Add(1)
	trip := b.failures.Add(1) >= int64(b.cfg.Failures)
	if rate {
		var calls, failed int
		if b.calls != nil {
			b.calls.add(true)
			calls, failed = b.calls.sum()
		} else {
			now := b.now()
			b.window.add(now, b.cfg.Window, true)
			calls, failed = b.window.sum(now, b.cfg.Window)
		}
		if calls >= b.cfg.MinCalls && float64(failed) >= b.cfg.FailureRate*float64(calls) {
			trip = true
		}
	}
	if trip {
		b.open(t.ctx, t.word, StateClosed, false)
	}
	return true
}

// recordProbe counts the outcome of a half-open probe.
func (b *Breaker) recordProbe(t Token, o Outcome) bool {
	b.mu.Lock()
	if b.word.Load() != t.word || b.probeGen != t.word {
		b.mu.Unlock()
		return false
	}
	if b.leases[t.lease-1] == t.until {
		b.leases[t.lease-1] = 0 // unless it expired and another probe holds it now
	}
	switch o {
	case OutcomeIgnored:
		b.mu.Unlock()
		return false
	case OutcomeFailure:
		b.totalFailures.Add(1)
		b.mu.Unlock()
		b.open(t.ctx, t.word, StateHalfOpen, true)
		return true
	}
	b.successes++
	if b.successes < b.cfg.Successes {
		b.mu.Unlock()
		return true
	}
	b.reopens = 0
	b.failures.Store(0)
	b.resetWindow()
	closed := b.word.CompareAndSwap(t.word, pack(StateClosed, b.seq.Add(1)))
	b.mu.Unlock()
	if closed {
		b.changed(t.ctx, StateHalfOpen, StateClosed)
	}
	return true
}

// resetWindow forgets the outcomes FailureRate looks at.
func (b *Breaker) resetWindow() {
	b.window.reset()
	if b.calls != nil {
		b.calls.reset()
	}
}

// open moves the breaker from generation w (in state from) to open.
func (b *Breaker) open(ctx context.Context, w uint64, from State, reopen bool) {
	b.mu.Lock()
	if b.word.Load() != w {
		b.mu.Unlock()
		return // another outcome moved the breaker first
	}
	d := b.cfg.OpenDuration
	if reopen {
		b.reopens++
	} else {
		b.reopens = 0
	}
	if b.cfg.MaxOpenDuration > d && b.reopens > 0 {
		ceiling := d << min(b.reopens, 30)
		if ceiling <= 0 || ceiling > b.cfg.MaxOpenDuration {
			ceiling = b.cfg.MaxOpenDuration
		}
		d += rand.N(ceiling - d + 1) // full jitter above the base duration
	}
	until := b.now() + int64(d)
	// The error is in place before the state says open, so a refused call always has one.
	b.openErr.Store(&OpenError{Name: b.cfg.Name, until: until, b: b})
	ok := b.word.CompareAndSwap(w, pack(StateOpen, uint64(until)))
	b.mu.Unlock()
	if ok {
		b.failures.Store(0)
		b.opens.Add(1)
		if b.link != nil {
			b.link.batcher.flushSoon() // the other instances learn it from the flush's announcement
		}
		b.changed(ctx, from, StateOpen)
	}
}

type paddedCount struct {
	n atomic.Uint64
	_ [56]byte
}

// reject counts a refusal, reports it to Hooks.OnRejected and returns err.
func (b *Breaker) reject(ctx context.Context, err *OpenError) *OpenError {
	b.rejected[rand.Uint32()%8].n.Add(1)
	if h := b.cfg.Hooks.OnRejected; h != nil {
		h(ctx, b.cfg.Name, err)
	}
	return err
}

func (b *Breaker) rejectedTotal() uint64 {
	var n uint64
	for i := range b.rejected {
		n += b.rejected[i].n.Load()
	}
	return n
}

// changed logs and reports a transition, outside any lock.
func (b *Breaker) changed(ctx context.Context, from, to State) {
	level := slog.LevelInfo
	if to == StateOpen {
		level = slog.LevelWarn
	}
	logger := b.cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger.Log(ctx, level, "breaker "+to.String(), "breaker", b.cfg.Name, "from", from.String())
	if h := b.cfg.Hooks.OnStateChange; h != nil {
		h(ctx, b.cfg.Name, from, to, b.Stats())
	}
}

// State returns the current state. An open breaker whose open duration is over reports
// half-open, as the next call would find it.
func (b *Breaker) State() State {
	switch Mode(b.mode.Load()) {
	case ModeForcedOpen:
		return StateOpen
	case ModeForcedClosed, ModeDisabled:
		return StateClosed
	}
	w := b.word.Load()
	if stateOf(w) == StateOpen && b.now() >= int64(w&valueMask) {
		return StateHalfOpen
	}
	return stateOf(w)
}

// Stats returns a snapshot.
func (b *Breaker) Stats() Stats {
	return Stats{
		State:               b.State(),
		ConsecutiveFailures: int(b.failures.Load()),
		Failures:            b.totalFailures.Load(),
		Rejected:            b.rejectedTotal(),
		Opens:               b.opens.Load(),
		Mode:                Mode(b.mode.Load()),
	}
}

// Name returns the breaker's name, Config.Name.
func (b *Breaker) Name() string { return b.cfg.Name }

// SetMode overrides the state machine (ModeForcedOpen, ModeForcedClosed, ModeDisabled) or
// returns it to normal operation (ModeAuto), which resumes closed. A mode is this instance's
// own: it is not shared through a Store. Unknown modes are ignored.
func (b *Breaker) SetMode(m Mode) {
	if m > ModeDisabled {
		return
	}
	if m == ModeAuto && Mode(b.mode.Load()) != ModeAuto {
		b.failures.Store(0)
		b.word.Store(pack(StateClosed, b.seq.Add(1)))
	}
	b.mode.Store(uint32(m))
}

// Check is a health check for the health package: it fails while the breaker is open and passes
// otherwise. It reads in-process state and returns at once. Register it as non-critical, so that
// an open breaker shows as degraded without taking the instance out of the load balancer, and
// as local, so that every probe reads its current state: health.Check{Func: b.Check,
// NonCritical: true, Local: true}.
func (b *Breaker) Check(ctx context.Context) error {
	if s := b.State(); s == StateOpen {
		return fmt.Errorf("breaker %s: %s", b.cfg.Name, s)
	}
	return nil
}

// Do calls fn if the breaker allows it and reports its outcome. A panic in fn counts as a
// failure and is re-raised.
func (b *Breaker) Do(ctx context.Context, fn func(context.Context) error) error {
	tok, err := b.Allow(ctx)
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			tok.Done(errPanic)
		}
	}()
	err = fn(ctx)
	done = true
	tok.Done(err)
	return err
}

// Do calls fn through b and returns its result; see [Breaker.Do].
func Do[T any](ctx context.Context, b *Breaker, fn func(context.Context) (T, error)) (T, error) {
	tok, err := b.Allow(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	done := false
	defer func() {
		if !done {
			tok.Done(errPanic)
		}
	}()
	v, err := fn(ctx)
	done = true
	tok.Done(err)
	return v, err
}

// errPanic is the outcome reported for a call that panicked.
var errPanic = errors.New("breaker: call panicked")
