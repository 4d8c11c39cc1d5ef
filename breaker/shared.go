package breaker

import (
	"context"
	"math/rand/v2"
	"time"
)

// allowShared asks the store for a half-open probe lease once the local open period is over.
// ok is false when the store failed: the caller then probes alone.
func (b *Breaker) allowShared(ctx context.Context) (tok Token, err error, ok bool) {
	sh := b.sh
	if !sh.acquiring.CompareAndSwap(false, true) {
		b.reject()
		return Token{}, b.busyErr, true
	}
	defer sh.acquiring.Store(false)
	r, err := sh.h.call(ctx, request{name: b.cfg.Name, op: opAcquire, pol: &sh.pol, gen: sh.gen.Load()})
	if err != nil {
		return Token{}, nil, false
	}
	b.adopt(r, true)
	switch {
	case r.slot > 0:
		return Token{
			b: b, ctx: ctx, word: b.word.Load(), start: b.now(),
			lease: -int(r.slot), until: r.deadline, sgen: r.gen,
		}, nil, true
	case r.state == StateClosed:
		w := b.word.Load()
		sh.touch(b)
		return Token{b: b, ctx: ctx, word: w, start: b.start()}, nil, true
	}
	b.reject()
	if r.state == StateHalfOpen {
		return Token{}, b.busyErr, true
	}
	return Token{}, b.openErr.Load(), true
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
	r, err := sh.h.call(t.ctx, request{
		name: b.cfg.Name, op: opReport, pol: &sh.pol, gen: t.sgen,
		slot: int64(-t.lease), deadline: t.until, outcome: code, jitter: rand.Float64(),
	})
	if err == nil {
		b.adopt(r, true)
		return r.counted
	}
	// The store failed: the probe decides for this instance alone, and its outcome waits in the
	// totals for the store to come back.
	switch o {
	case Ignore:
		return false
	case Failure:
		sh.add(b, o, false)
		b.open(b.word.Load(), StateHalfOpen, true)
	default:
		sh.add(b, o, false)
		b.setState(StateClosed, 0)
	}
	return true
}

// adopt brings the local state in line with a reply of the store. A reply of an older generation
// than one already seen is ignored. In the generation already seen, a shared open state always
// wins, while a shared closed state leaves alone an instance that opened on its own outcomes
// (it asks the store again when its open period ends); force (a reply to this instance's own
// probe request) adopts the shared state whatever it is.
func (b *Breaker) adopt(r reply, force bool) {
	sh := b.sh
	prev := sh.gen.Load()
	for r.gen > prev && !sh.gen.CompareAndSwap(prev, r.gen) {
		prev = sh.gen.Load()
	}
	if r.gen < prev {
		return
	}
	newer := r.gen > prev
	local := stateOf(b.word.Load())
	switch r.state {
	case StateClosed:
		if local != StateClosed && (newer || force) {
			b.setState(StateClosed, 0)
		}
	case StateOpen:
		if local != StateOpen || newer || force {
			b.setState(StateOpen, time.Duration(r.wait)*time.Millisecond)
		}
	case StateHalfOpen:
		// Probes are running somewhere (or may start): refuse calls, and ask again when the
		// earliest lease ends or after RetryInterval, whichever comes first, in case the
		// announcement of the probes' end is lost.
		if local != StateOpen || newer || force {
			b.setState(StateOpen, min(time.Duration(r.wait)*time.Millisecond, sh.h.retry))
		}
	}
}

// setState moves the breaker to closed, or to open for d, whatever its generation.
func (b *Breaker) setState(to State, d time.Duration) {
	b.mu.Lock()
	w := b.word.Load()
	var nw uint64
	if to == StateOpen {
		until := b.now() + int64(d)
		b.openErr.Store(&OpenError{Name: b.cfg.Name, until: until, b: b})
		nw = pack(StateOpen, uint64(until))
	} else {
		b.failures.Store(0)
		b.window.reset()
		b.reopens = 0
		nw = pack(StateClosed, b.seq.Add(1))
	}
	b.word.Store(nw)
	b.mu.Unlock()
	from := stateOf(w)
	if from == to {
		return
	}
	if to == StateOpen {
		b.opens.Add(1)
	}
	b.changed(from, to)
}
