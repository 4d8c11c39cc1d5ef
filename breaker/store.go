package breaker

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"github.com/outgrow/outgrow/internal/redisclient"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"weak"
)

// Store shares the state of breakers between instances: breakers with the same Name on stores
// over the same Redis (or on one [MemoryStore]) open, probe and close together. Set it in
// Config.Store. It is implemented by [*MemoryStore] and [*RedisStore] only.
//
// Admission never waits for the store: a breaker decides from its local state, which the store
// keeps in step. Each breaker's outcomes are added up locally and sent in batches (every
// FlushInterval, or at once after FlushOutcomes failures or when the breaker opens), all
// breakers of a store in one pipeline; the reply carries the shared state. A transition is
// announced to every instance, which then reads the new state: an instance that opened makes the
// others refuse calls within about a round trip. Half-open probes are leases taken from the
// store, so exactly Config.Probes probes run at a time across all instances.
//
// When the store fails, breakers go on alone (each instance trips on its own outcomes, as
// without a store) and rejoin when it answers again; a user call never fails because of the
// store. Outcomes whose batch failed are sent again later, counted in the totals but not in the
// policy, since their moment has passed. See the package documentation for the details.
type Store interface {
	hub() *hub
}

// StoreStats is a snapshot of a store's counters.
type StoreStats struct {
	Flushes       uint64 // batches sent (one round trip each, for every dirty breaker of the store)
	Calls         uint64 // probe leases and probe reports, one round trip each
	Errors        uint64 // failed round trips
	Notifications uint64 // announcements of another instance's transition received
	Down          bool   // the store failed recently, or was closed: breakers are deciding alone
}

// backend runs requests against the shared state: one round trip for all of them where it can,
// bounded by timeout. It sets res[i].err for a request that failed and returns the first error.
type backend interface {
	run(ctx context.Context, timeout time.Duration, reqs []request, res []reply) error
	// down reports that the backend fails fast after recent failures.
	down() bool
}

// policy is what the shared state machine needs of a Config, in milliseconds.
type policy struct {
	failures, minCalls, probes, successes int64
	rate                                  float64
	window, open, maxOpen, probeTimeout   int64
	windowCalls                           int64 // 0: the rate looks at a period (window)
}

func policyOf(c *Config) policy {
	ms := func(d time.Duration) int64 { return max(1, int64((d+time.Millisecond-1)/time.Millisecond)) }
	return policy{
		failures: int64(min(c.Failures, 1<<50)), minCalls: int64(c.MinCalls), probes: int64(c.Probes),
		successes: int64(c.Successes), rate: c.FailureRate, window: ms(c.Window), open: ms(c.OpenDuration),
		maxOpen: ms(max(c.MaxOpenDuration, c.OpenDuration)), probeTimeout: ms(c.ProbeTimeout),
		windowCalls: int64(c.WindowCalls),
	}
}

// The operations on the shared state.
const (
	opSync    = 's' // add outcomes, read the state
	opAcquire = 'a' // take a half-open probe lease
	opReport  = 'r' // report a probe's outcome
	opRelease = 'x' // give back a lease whose acquisition or report failed
)

type request struct {
	name   string
	op     byte
	pol    *policy
	jitter float64 // in [0, 1): where the reopening's open duration falls within its range
	gen    int64   // the generation the outcomes or the probe belong to; -1 unknown
	// opSync: outcomes of gen (succ, fail, the failures after the last success), and outcomes
	// to count in the totals only (late, lateFail). ended says that a success among the late
	// outcomes ended the run of consecutive failures.
	succ, fail, tail, late, lateFail int64
	ended                            bool
	hold                             int64 // ms the dependency asked to be left alone (Retry-After)
	// inst and seq number the batch, so that one sent again after a timeout is applied once;
	// seq is 0 for a batch with nothing to apply.
	inst string
	seq  int64
	// opReport: the lease and the outcome (0 success, 1 failure, 2 ignore).
	slot, deadline, outcome int64
	// opAcquire, opRelease: the lease's id, so that one whose acquisition timed out after Redis
	// granted it can be given back.
	leaseID string
}

type reply struct {
	gen      int64
	state    State
	wait     int64 // ms: until open ends, or until a busy probe lease expires
	slot     int64 // a granted probe lease (1-based), 0 when none
	deadline int64
	counted  bool
	err      error
}

// hub is the part of a store that talks to breakers: batching, announcements, health.
type hub struct {
	be       backend
	logger   *slog.Logger
	timeout  time.Duration
	retry    time.Duration
	every    time.Duration
	batch    int64
	loopDone chan struct{}

	mu     sync.Mutex
	dirty  []*Breaker
	byName map[string][]weak.Pointer[Breaker]
	closed bool
	kick   chan struct{}
	stop   chan struct{}

	gone atomic.Bool // closed: never asked again

	flushMu sync.Mutex // one flush at a time: batches of one breaker go out in order

	flushes, calls, errs, notes atomic.Uint64
	closeOnce                   sync.Once
	onClose                     func()
}

type hubConfig struct {
	timeout, retry, every time.Duration
	batch                 int
	logger                *slog.Logger
}

func (c *hubConfig) check(pkg string) error {
	if c.timeout < 0 || c.retry < 0 || c.every < 0 || c.batch < 0 {
		return fmt.Errorf("%w: negative %s setting", ErrInvalidConfig, pkg)
	}
	if c.timeout == 0 {
		c.timeout = 50 * time.Millisecond
	}
	if c.retry == 0 {
		c.retry = 500 * time.Millisecond
	}
	if c.every == 0 {
		c.every = 100 * time.Millisecond
	}
	if c.batch == 0 {
		c.batch = 64
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	return nil
}

func newHub(be backend, c hubConfig) *hub {
	h := &hub{
		be: be, logger: c.logger, timeout: c.timeout, retry: c.retry, every: c.every, batch: int64(c.batch),
		byName: make(map[string][]weak.Pointer[Breaker]),
		kick:   make(chan struct{}, 1), stop: make(chan struct{}), loopDone: make(chan struct{}),
	}
	go h.loop()
	return h
}

// register makes b reachable by announcements for its name, until b is garbage.
func (h *hub) register(b *Breaker) {
	name := b.cfg.Name
	h.mu.Lock()
	h.byName[name] = append(h.byName[name], weak.Make(b))
	h.mu.Unlock()
	runtime.AddCleanup(b, h.prune, name)
}

// prune forgets the collected breakers of name.
func (h *hub) prune(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ws := h.byName[name][:0]
	for _, w := range h.byName[name] {
		if w.Value() != nil {
			ws = append(ws, w)
		}
	}
	if len(ws) == 0 {
		delete(h.byName, name)
	} else {
		h.byName[name] = ws
	}
}

// notify is an announcement that name changed state: its local breakers read the new state.
func (h *hub) notify(name string) {
	h.notes.Add(1)
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	for _, w := range h.byName[name] {
		if b := w.Value(); b != nil && b.sh.dirty.CompareAndSwap(false, true) {
			h.dirty = append(h.dirty, b)
		}
	}
	h.mu.Unlock()
	h.flushSoon()
}

// markDirty queues b for the next flush.
func (h *hub) markDirty(b *Breaker) {
	h.mu.Lock()
	if !h.closed { // a closed store flushes no more: let b decide alone
		h.dirty = append(h.dirty, b)
	}
	h.mu.Unlock()
}

// flushSoon wakes the loop without waiting for the next tick.
func (h *hub) flushSoon() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

func (h *hub) loop() {
	defer close(h.loopDone)
	t := time.NewTicker(h.every)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			h.flush() // a batch sent again, if any
			h.flush() // then what is pending
			return
		case <-t.C:
		case <-h.kick:
		}
		h.flush()
	}
}

// up reports whether the store may be asked: it is not closed.
func (h *hub) up() bool { return !h.gone.Load() }

// result counts a failed round trip.
func (h *hub) result(err error) {
	if err != nil {
		h.errs.Add(1)
	}
}

// resync makes every breaker of the store read the shared state at the next flush: the
// announcements of their changes may have been lost.
func (h *hub) resync() {
	h.mu.Lock()
	for _, ws := range h.byName {
		for _, w := range ws {
			if b := w.Value(); b != nil && b.sh.dirty.CompareAndSwap(false, true) {
				h.dirty = append(h.dirty, b)
			}
		}
	}
	h.mu.Unlock()
	h.flushSoon()
}

// flush sends the outcomes of every dirty breaker in one round trip and applies the replies.
func (h *hub) flush() {
	h.flushMu.Lock()
	defer h.flushMu.Unlock()
	h.mu.Lock()
	bs := h.dirty
	h.dirty = nil
	h.mu.Unlock()
	if len(bs) == 0 {
		return
	}
	reqs := make([]request, len(bs), len(bs)+1)
	for i, b := range bs {
		b.sh.dirty.Store(false)
		if u := b.sh.unsent; u != nil {
			// First the batch whose fate is unknown, alone, with its number (its outcomes now
			// count as late ones); newer outcomes wait for the next flush, one round trip later.
			reqs[i] = *u
		} else {
			reqs[i] = b.sh.take(b)
		}
	}
	var released []*Breaker // leases to give back, after the batches
	for _, b := range bs {
		for _, id := range b.sh.takeLost() {
			released = append(released, b)
			reqs = append(reqs, request{name: b.cfg.Name, op: opRelease, pol: &b.sh.pol, leaseID: id})
		}
	}
	res := make([]reply, len(reqs))
	var err error
	if h.up() {
		h.flushes.Add(1)
		// No caller waits for a flush: it gets more time than a call, so that a busy CPU does
		// not pass for a Redis outage.
		err = h.be.run(context.Background(), 10*h.timeout, reqs, res)
		h.result(err)
	} else {
		err = errClosed
		for i := range res {
			res[i].err = err
		}
	}
	for j, b := range released {
		if res[len(bs)+j].err != nil {
			b.sh.addLost(b, reqs[len(bs)+j].leaseID) // next time
		}
	}
	for i, b := range bs {
		if res[i].err != nil {
			b.sh.keep(b, &reqs[i])
			b.sh.behind = true // what is counted until the next batch is of the outage too
			continue
		}
		if b.sh.unsent != nil {
			b.sh.unsent = nil
			if b.sh.pending() {
				b.sh.touch(b)
				h.flushSoon()
			}
		}
		b.adopt(res[i], false)
	}
}

var (
	errStoreDown = errors.New("breaker: store unavailable")
	// errClosed: the store is closed, and nothing was sent.
	errClosed = fmt.Errorf("%w: closed: %w", errStoreDown, redisclient.ErrNotSent)
)

// call runs one request (a probe lease or report) on the caller's goroutine.
func (h *hub) call(ctx context.Context, req request) (reply, error) {
	if !h.up() {
		return reply{}, errClosed
	}
	h.calls.Add(1)
	res := make([]reply, 1)
	err := h.be.run(context.WithoutCancel(ctx), h.timeout, []request{req}, res)
	h.result(err)
	return res[0], err
}

func (h *hub) stats() StoreStats {
	if h == nil {
		return StoreStats{}
	}
	return StoreStats{
		Flushes: h.flushes.Load(), Calls: h.calls.Load(), Errors: h.errs.Load(),
		Notifications: h.notes.Load(), Down: h.be.down() || h.gone.Load(),
	}
}

// close sends what is pending and stops the loop; breakers then decide alone.
func (h *hub) close() {
	if h == nil {
		return
	}
	h.closeOnce.Do(func() {
		close(h.stop)
		<-h.loopDone // its last flushes may queue breakers again: closed comes after
		h.mu.Lock()
		h.closed = true
		h.mu.Unlock()
		h.gone.Store(true)
		if h.onClose != nil {
			h.onClose()
		}
	})
}

// sharing is a breaker's link to its store.
type sharing struct {
	h         *hub
	pol       policy
	gen       atomic.Int64 // the newest shared generation seen; -1 before the first reply
	dirty     atomic.Bool  // queued for the next flush; read by every call
	acquiring atomic.Bool  // a probe lease request is in flight
	_         [64]byte
	// Outcomes not yet sent. Each is swapped out whole at a flush, so every outcome is sent
	// once; a success and a failure racing with a flush may go in different batches. Successes,
	// the common case, are striped over cache lines of their own.
	succ                       [4]paddedCount
	fail, tail, late, lateFail atomic.Int64
	hold                       atomic.Int64 // the longest Retry-After (ms) not yet sent

	leaseMu  sync.Mutex
	leaseIDs map[int64]string // the ids of this breaker's shared leases, by deadline
	lostIDs  []string         // leases to give back: their acquisition or report failed

	// Owned by the flush: the last batch number, and a batch that failed, to send again as is.
	inst   string // this breaker's name in batch numbers: random, unique to this Breaker
	seq    int64
	unsent *request
	behind bool // a batch failed since the last one taken: the outcomes waiting are of an outage
}

func newSharing(h *hub, c *Config) *sharing {
	sh := &sharing{h: h, pol: policyOf(c), inst: crand.Text()}
	sh.gen.Store(-1)
	return sh
}

// touch queues b for the next flush, once.
func (sh *sharing) touch(b *Breaker) {
	if !sh.dirty.Load() && sh.dirty.CompareAndSwap(false, true) {
		sh.h.markDirty(b)
	}
}

// add counts an outcome for the next flush; current says it belongs to the present generation.
func (sh *sharing) add(b *Breaker, o Outcome, current bool) {
	switch {
	case !current:
		sh.late.Add(1)
		if o == Failure {
			sh.lateFail.Add(1)
		}
	case o == Success:
		// Successes wait for the next tick: sending them early tells the others nothing urgent.
		sh.succ[rand.Uint32()%uint32(len(sh.succ))].n.Add(1)
		if sh.tail.Load() != 0 {
			sh.tail.Store(0)
		}
	default:
		if sh.fail.Add(1)%sh.h.batch == 0 {
			sh.h.flushSoon()
		}
		sh.tail.Add(1)
	}
	sh.touch(b)
}

// take empties the counters into a sync request.
func (sh *sharing) take(b *Breaker) request {
	r := request{
		name: b.cfg.Name, op: opSync, pol: &sh.pol, gen: sh.gen.Load(),
		succ: sh.takeSuccesses(), fail: sh.fail.Swap(0), tail: sh.tail.Swap(0),
		late: sh.late.Swap(0), lateFail: sh.lateFail.Swap(0), jitter: jitter(),
		hold: sh.hold.Swap(0), inst: sh.inst,
	}
	if sh.behind {
		// Counted while the store failed: their moment has passed, they count in the totals
		// only, but a success among them still ended the run of failures before it.
		sh.behind = false
		r.ended = r.succ > 0
		r.late, r.lateFail = r.late+r.succ+r.fail, r.lateFail+r.fail
		r.succ, r.fail, r.tail, r.hold = 0, 0, 0, 0
	}
	if r.succ+r.fail+r.late > 0 || r.hold > 0 {
		sh.seq++
		r.seq = sh.seq
	}
	return r
}

// addLost queues a lease to give back at the next flush that reaches the store.
func (sh *sharing) addLost(b *Breaker, id string) {
	sh.leaseMu.Lock()
	sh.lostIDs = append(sh.lostIDs, id)
	sh.leaseMu.Unlock()
	sh.touch(b)
}

func (sh *sharing) takeLost() []string {
	sh.leaseMu.Lock()
	defer sh.leaseMu.Unlock()
	ids := sh.lostIDs
	sh.lostIDs = nil
	return ids
}

// leased remembers the id of a lease this breaker holds; unlease forgets and returns it.
func (sh *sharing) leased(deadline int64, id string) {
	sh.leaseMu.Lock()
	if sh.leaseIDs == nil {
		sh.leaseIDs = make(map[int64]string)
	}
	sh.leaseIDs[deadline] = id
	sh.leaseMu.Unlock()
}

func (sh *sharing) unlease(deadline int64) string {
	sh.leaseMu.Lock()
	defer sh.leaseMu.Unlock()
	id := sh.leaseIDs[deadline]
	delete(sh.leaseIDs, deadline)
	return id
}

// pending reports whether outcomes wait to be sent.
func (sh *sharing) pending() bool {
	for i := range sh.succ {
		if sh.succ[i].n.Load() != 0 {
			return true
		}
	}
	return sh.fail.Load() != 0 || sh.late.Load() != 0 || sh.hold.Load() != 0
}

func (sh *sharing) takeSuccesses() int64 {
	var n uint64
	for i := range sh.succ {
		n += sh.succ[i].n.Swap(0)
	}
	return int64(n)
}

// holdFor asks every instance to stay open for d (a Retry-After), at the next flush, now.
func (sh *sharing) holdFor(b *Breaker, d time.Duration) {
	ms := int64((d + time.Millisecond - 1) / time.Millisecond)
	for old := sh.hold.Load(); ms > old && !sh.hold.CompareAndSwap(old, ms); old = sh.hold.Load() {
	}
	sh.touch(b)
	sh.h.flushSoon()
}

// keep holds a batch that failed, to send it again unchanged but for its outcomes' moment,
// which has passed: they count in the totals only, and its Retry-After is dropped. Redis may have
// applied it before the failure; its number makes sure it is applied once.
func (sh *sharing) keep(b *Breaker, r *request) {
	if r.seq == 0 {
		return
	}
	u := *r
	u.ended = r.ended || r.succ > 0
	u.late, u.lateFail = r.late+r.succ+r.fail, r.lateFail+r.fail
	u.succ, u.fail, u.tail, u.hold = 0, 0, 0, 0
	sh.unsent = &u
	sh.touch(b)
}
