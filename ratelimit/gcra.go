package ratelimit

import (
	"fmt"
	"time"
)

// gcra decides n units at time now for a key whose theoretical arrival time is tat, all in ns on
// one clock. A tat at or before now is a fresh key: a full burst is available. It returns the
// result and the key's new tat, which equals max(tat, now) when nothing was charged.
//
// This is the same arithmetic as gcra.lua, which the Redis store runs in microseconds.
func gcra(tat, now int64, l Limit, n int) (Result, int64) {
	t := l.interval()
	tol := int64(l.burst()) * t
	if tat < now {
		tat = now
	}
	r := Result{Limit: l}
	switch {
	case n < 0: // refund
		next := max(tat+int64(n)*t, now)
		r.Allowed = true
		r.Remaining = int(max(0, (now-next+tol)/t))
		r.ResetAfter = time.Duration(next - now)
		return r, next
	case n == 0: // peek: would one unit be granted?
		r.Remaining = int(max(0, (now-tat+tol)/t))
		r.Allowed = r.Remaining >= 1
		if !r.Allowed {
			r.RetryAfter = time.Duration(tat - tol + t - now)
		}
		r.ResetAfter = time.Duration(tat - now)
		return r, tat
	}
	next := tat + int64(n)*t
	if diff := now - (next - tol); diff >= 0 {
		r.Allowed = true
		r.Remaining = int(diff / t)
		r.ResetAfter = time.Duration(next - now)
		return r, next
	} else {
		r.Remaining = int(max(0, (now-tat+tol)/t)) // negative if the limit was lowered
		r.RetryAfter = time.Duration(-diff)
		r.ResetAfter = time.Duration(tat - now)
		return r, tat
	}
}

// check validates a request before it reaches a store.
func (q *Request) check() error {
	if q.Key == "" {
		return fmt.Errorf("%w: empty key (policy %q)", ErrInvalidKey, q.Policy)
	}
	if err := q.Limit.validate(); err != nil {
		return err
	}
	if q.N > q.Limit.burst() || -q.N > q.Limit.burst() {
		return fmt.Errorf("%w: %d units under %v (policy %q)", ErrExceedsBurst, q.N, q.Limit, q.Policy)
	}
	return nil
}
