package breaker

import (
	"context"
	"time"
)

// adopt brings the local state in line with a reply of the store. A reply of an older generation
// than one already seen is ignored. A newer generation replaces the local state (a new local
// generation even when closed stays closed, so that outcomes of the former one are late), except
// that a closed instance stays in its generation when the shared state was created again (it
// expired) and is still in its first one: nothing happened, and the outcomes of its calls in
// flight count. In the generation already seen, a shared open state wins, while a shared closed
// state leaves alone an instance that opened on its own outcomes (it asks the store again when
// its open period ends); force (the reply to this instance's own probe request) adopts the shared
// state as is.
func (b *Breaker) adopt(ctx context.Context, r reply, force bool) {
	l := b.link
	b.mu.Lock()
	prev := l.gen.Load()
	if r.gen < prev {
		b.mu.Unlock()
		return
	}
	// The first reply is the generation this breaker's outcomes so far were counted in, not a
	// newer one: they stay current.
	newer := r.gen > prev && prev >= 0
	l.gen.Store(r.gen)
	w := b.word.Load()
	local := stateOf(w)
	to, d, set := StateClosed, time.Duration(0), false
	switch r.state {
	case StateClosed:
		set = newer && !(r.first && local == StateClosed) || force && local != StateClosed
	case StateOpen:
		to, d = StateOpen, time.Duration(r.waitMs)*time.Millisecond
		set = local != StateOpen || newer || force
	case StateHalfOpen:
		// Probes are running somewhere (or may start): refuse calls, and ask again when the
		// earliest lease ends or after RetryInterval, whichever comes first, in case the
		// announcement of the probes' end is lost.
		to, d = StateOpen, min(time.Duration(r.waitMs)*time.Millisecond, l.batcher.retry)
		set = local != StateOpen || newer || force
	}
	if !set {
		b.mu.Unlock()
		return
	}
	b.transitionLocked(w, to, d)
	b.mu.Unlock()
	b.transitioned(ctx, local, to)
}

// setStateFrom moves the breaker from generation w to closed, or to open for d; nothing if it has
// moved on from w.
func (b *Breaker) setStateFrom(ctx context.Context, w uint64, to State, d time.Duration) {
	b.mu.Lock()
	if b.word.Load() != w {
		b.mu.Unlock()
		return
	}
	b.transitionLocked(w, to, d)
	b.mu.Unlock()
	b.transitioned(ctx, stateOf(w), to)
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
func (b *Breaker) transitioned(ctx context.Context, from, to State) {
	if from == to {
		return
	}
	if to == StateOpen {
		b.opens.Add(1)
	}
	b.changed(ctx, from, to)
}
