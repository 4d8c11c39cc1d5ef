package breaker

import (
	"context"
	crand "crypto/rand"
	"errors"

	"github.com/outgrow/outgrow/internal/redisclient"
)

// acquireSharedProbe asks the store for a half-open probe lease once the local open period is
// over. ok is false when the store failed: the caller then probes alone.
func (b *Breaker) acquireSharedProbe(ctx context.Context) (tok Token, err error, ok bool) {
	l := b.link
	if !l.acquiring.CompareAndSwap(false, true) {
		return Token{}, b.reject(ctx, b.busyErr), true
	}
	defer l.acquiring.Store(false)
	id := crand.Text()
	r, err := l.batcher.call(ctx, request{name: b.cfg.Name, op: opAcquire, policy: &l.policy, leaseID: id})
	if err != nil {
		// The store may have granted the lease before the failure: give it back when it answers
		// again, rather than keep every instance waiting ProbeTimeout for a probe nobody runs.
		if !errors.Is(err, redisclient.ErrNotSent) {
			l.loseLease(b, id)
		}
		return Token{}, nil, false
	}
	b.adopt(ctx, r, true)
	w := b.word.Load()
	switch {
	case r.slot > 0:
		l.leased(r.deadline, id)
		return Token{
			b: b, ctx: ctx, word: w, start: b.now(),
			lease: -int(r.slot), until: r.deadline, sgen: r.gen,
		}, nil, true
	case r.state == StateClosed && stateOf(w) == StateClosed:
		l.queue(b)
		return Token{b: b, ctx: ctx, word: w, start: b.start()}, nil, true
	}
	if oe := b.openErr.Load(); stateOf(w) == StateOpen && oe != nil && r.state == StateOpen {
		return Token{}, b.reject(ctx, oe), true
	}
	return Token{}, b.reject(ctx, b.busyErr), true
}

// reportSharedProbe reports the outcome of a probe leased from the store.
func (b *Breaker) reportSharedProbe(t Token, o Outcome) bool {
	l := b.link
	if o == OutcomeFailure {
		b.totalFailures.Add(1)
	}
	id := l.unlease(t.until)
	r, err := l.batcher.call(t.ctx, request{
		name: b.cfg.Name, op: opReport, policy: &l.policy, gen: t.sgen,
		slot: int64(-t.lease), deadline: t.until, outcome: o, jitter: jitter(),
	})
	if err == nil {
		b.adopt(t.ctx, r, true)
		return r.counted
	}
	// The store failed: the lease is given back when it answers again (the report may have run:
	// its outcome is not counted again, so the totals may miss it), and the probe decides for
	// this instance alone, unless this instance has moved on since.
	if id != "" {
		l.loseLease(b, id)
	}
	if o == OutcomeIgnored || b.word.Load() != t.word || Mode(b.mode.Load()) != ModeAuto {
		return false
	}
	if o == OutcomeFailure {
		b.open(t.ctx, t.word, StateHalfOpen, true)
	} else {
		b.setStateFrom(t.ctx, t.word, StateClosed, 0)
	}
	return true
}
