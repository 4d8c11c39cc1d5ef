package breaker

import (
	"context"
	crand "crypto/rand"
	"errors"
	"github.com/outgrow/outgrow/internal/redisclient"
	"math/rand/v2"
	"time"
)

// jitter returns where a reopening's open duration falls within its range, in millionths, so
// that Redis (which gets it as text) and the MemoryStore use the same value.
func jitter() float64 { return float64(rand.IntN(1_000_000)) / 1e6 }

// allowShared asks the store for a half-open probe lease once the local open period is over.
// ok is false when the store failed: the caller then probes alone.
func (b *Breaker) allowShared(ctx context.Context) (tok Token, err error, ok bool) {
	sh := b.sh
	if !sh.acquiring.CompareAndSwap(false, true) {
		b.reject()
		return Token{}, b.busyErr, true
	}
	defer sh.acquiring.Store(false)
	id := crand.Text()
	r, err := sh.h.call(ctx, request{name: b.cfg.Name, op: opAcquire, pol: &sh.pol, gen: sh.gen.Load(), jitter: jitter(), leaseID: id})
	if err != nil {
		// Redis may have granted the lease before the failure: give it back when it answers
		// again, rather than keep every instance waiting ProbeTimeout for a probe nobody runs.
		if !errors.Is(err, redisclient.ErrNotSent) {
			sh.addLost(b, id)
		}
		return Token{}, nil, false
	}
	b.adopt(r, true)
	w := b.word.Load()
	switch {
	case r.slot > 0:
		sh.leased(r.deadline, id)
		return Token{
			b: b, ctx: ctx, word: w, start: b.now(),
			lease: -int(r.slot), until: r.deadline, sgen: r.gen,
		}, nil, true
	case r.state == StateClosed && stateOf(w) == StateClosed:
		sh.touch(b)
		return Token{b: b, ctx: ctx, word: w, start: b.start()}, nil, true
	}
	b.reject()
	if oe := b.openErr.Load(); stateOf(w) == StateOpen && oe != nil && r.state == StateOpen {
		return Token{}, oe, true
	}
	return Token{}, b.busyErr, true
}

// reportShared reports the outcome of a probe leased from the store.
func (b *Breaker) reportShared(t Token, o Outcome) bool {
	sh := b.sh
	code := int64(2)
	switch o {
	case Success:
		code = 0
	case Failure:
		code = 1
		b.totalFailures.Add(1)
	}
	id := sh.unlease(t.until)
	r, err := sh.h.call(t.ctx, request{
		name: b.cfg.Name, op: opReport, pol: &sh.pol, gen: t.sgen,
		slot: int64(-t.lease), deadline: t.until, outcome: code, jitter: jitter(),
	})
	if err == nil {
		b.adopt(r, true)
		return r.counted
	}
	// The store failed: the lease is given back when it answers again (the report may have run:
	// its outcome is not counted again, so the totals may miss it), and the probe decides for
	// this instance alone, unless this instance has moved on since.
	if id != "" {
		sh.addLost(b, id)
	}
	if o == Ignore {
		return false
	}
	if b.word.Load() != t.word || Mode(b.mode.Load()) != Auto {
		return false
	}
	if o == Failure {
		b.open(t.word, StateHalfOpen, true)
	} else {
		b.setStateFrom(t.word, StateClosed, 0)
	}
	return true
}

// adopt brings the local state in line with a reply of the store. A reply of an older generation
// than one already seen is ignored. A newer generation always replaces the local state (a new
// local generation even when closed stays closed, so that outcomes of the former one are late).
// In the generation already seen, a shared open state wins, while a shared closed state leaves
// alone an instance that opened on its own outcomes (it asks the store again when its open period
// ends); force (the reply to this instance's own probe request) adopts the shared state as is.
func (b *Breaker) adopt(r reply, force bool) {
	sh := b.sh
	b.mu.Lock()
	prev := sh.gen.Load()
	if r.gen < prev {
		b.mu.Unlock()
		return
	}
	// The first reply is the generation this breaker's outcomes so far were counted in, not a
	// newer one: they stay current.
	newer := r.gen > prev && prev >= 0
	sh.gen.Store(r.gen)
	w := b.word.Load()
	local := stateOf(w)
	to, d, set := StateClosed, time.Duration(0), false
	switch r.state {
	case StateClosed:
		set = newer || force && local != StateClosed
	case StateOpen:
		to, d = StateOpen, time.Duration(r.wait)*time.Millisecond
		set = local != StateOpen || newer || force
	case StateHalfOpen:
		// Probes are running somewhere (or may start): refuse calls, and ask again when the
		// earliest lease ends or after RetryInterval, whichever comes first, in case the
		// announcement of the probes' end is lost.
		to, d = StateOpen, min(time.Duration(r.wait)*time.Millisecond, sh.h.retry)
		set = local != StateOpen || newer || force
	}
	if !set {
		b.mu.Unlock()
		return
	}
	b.transitionLocked(w, to, d)
	b.mu.Unlock()
	b.transitioned(local, to)
}

// setStateFrom moves the breaker from generation w to closed, or to open for d; nothing if it has
// moved on from w.
func (b *Breaker) setStateFrom(w uint64, to State, d time.Duration) {
	b.mu.Lock()
	if b.word.Load() != w {
		b.mu.Unlock()
		return
	}
	b.transitionLocked(w, to, d)
	b.mu.Unlock()
	b.transitioned(stateOf(w), to)
}

// transitionLocked replaces generation w. b.mu is held.
func (b *Breaker) transitionLocked(w uint64, to State, d time.Duration) {
	if to == StateOpen {
		until := b.now() + int64(d)
		b.openErr.Store(&OpenError{Name: b.cfg.Name, until: until, b: b})
		b.word.Store(pack(StateOpen, uint64(until)))
		return
	}
	b.failures.Store(0)
	b.resetWindow()
	b.reopens = 0
	b.word.Store(pack(StateClosed, b.seq.Add(1)))
}

// transitioned counts and reports a transition, outside b.mu.
func (b *Breaker) transitioned(from, to State) {
	if from == to {
		return
	}
	if to == StateOpen {
		b.opens.Add(1)
	}
	b.changed(from, to)
}
