package ratelimit

import (
	"fmt"
	"time"
)

// Limit is how many units a key may take: Rate units per Period.
//
// By default a Limit is enforced with GCRA (the generic cell rate algorithm, a token bucket kept
// as one timestamp per key): one unit comes back every Period/Rate, and up to Burst units can be
// taken at once after a quiet spell. Over any interval of length t a key is granted at most
// Burst + Rate*t/Period units, so with the default Burst (= Rate) a client that saved up its burst
// may take up to 2*Rate units within one Period. Set Burst to 1 for an even spread.
//
// A Strict limit grants at most Rate units in any window of length Period (a sliding log of the
// last Rate grants of each key): a client that took Rate units waits until the oldest of them is
// Period old. It is the limit to use where the number per window is the promise, such as login
// attempts; it keeps up to Rate timestamps per key, so Rate is at most [MaxStrictRate].
//
// The zero value is invalid: Rate and Period must be positive.
type Limit struct {
	// Rate is the number of units per Period; it must be positive.
	Rate int
	// Period must be positive.
	Period time.Duration
	// Burst is how many units GCRA grants at once; it must be 0 (or Rate) for a Strict limit.
	// Default: Rate.
	Burst int
	// Strict grants at most Rate units in any window of length Period, instead of GCRA.
	Strict bool
}

// MaxStrictRate is the largest Rate of a Strict limit.
const MaxStrictRate = 1000

// PerSecond returns a Limit of n units per second with bursts of n.
func PerSecond(n int) Limit { return Limit{Rate: n, Period: time.Second, Burst: n} }

// PerMinute returns a Limit of n units per minute with bursts of n.
func PerMinute(n int) Limit { return Limit{Rate: n, Period: time.Minute, Burst: n} }

// PerHour returns a Limit of n units per hour with bursts of n.
func PerHour(n int) Limit { return Limit{Rate: n, Period: time.Hour, Burst: n} }

// String formats the limit as "5/1m0s (burst 5)" or "5/1m0s (strict)".
func (l Limit) String() string {
	if l.Strict {
		return fmt.Sprintf("%d/%v (strict)", l.Rate, l.Period)
	}
	return fmt.Sprintf("%d/%v (burst %d)", l.Rate, l.Period, l.burst())
}

func (l Limit) burst() int {
	if l.Burst == 0 {
		return l.Rate
	}
	return l.Burst
}

// Result is the outcome of one decision for one key under one Limit.
//
// The zero value means "not allowed, nothing known".
type Result struct {
	// Policy is the name of the Limiter that decided.
	Policy string
	// Allowed reports whether the units were granted (for Peek: whether one unit would be).
	Allowed bool
	// Limit is the limit applied.
	Limit Limit
	// Remaining is how many units could be granted right now, after this decision. It is -1 when
	// the key was not evaluated (see [Decision]).
	Remaining int
	// RetryAfter is how long to wait before the same request can be granted; 0 when Allowed.
	RetryAfter time.Duration
	// ResetAfter is how long until the key is back to its full Limit.
	ResetAfter time.Duration
}

// rule is a Limit in the units the stores compute with, worked out once by New.
type rule struct {
	Limit
	interval int64   // GCRA: ns for one unit to come back, a whole number of microseconds
	tol      int64   // GCRA: Burst*interval
	inverse  float64 // GCRA: 1/interval
	period   int64   // strict: Period in ns, rounded up to a whole microsecond
	max      int     // the most units one request may take: Burst, or Rate when strict
	// redisArgs are the kind and parameters of the limit as ratelimit.lua takes them, boxed once.
	redisArgs [3]any
}

const us = int64(time.Microsecond)

// maxGCRARate bounds Rate/Period so that one unit takes at least a microsecond: the Redis store
// keeps time in integer microseconds.
const maxGCRARate = int64(time.Second) / us

// newRule validates l; its errors name the field as field.Rate, field.Period...
func newRule(l Limit, field string) (rule, error) {
	bad := func(format string, args ...any) (rule, error) {
		return rule{}, fmt.Errorf("%w: %s.%s", ErrInvalidConfig, field, fmt.Sprintf(format, args...))
	}
	switch {
	case l.Rate <= 0:
		return bad("Rate %d must be positive", l.Rate)
	case l.Period < time.Microsecond:
		return bad("Period %v must be at least 1µs", l.Period)
	case l.Burst < 0:
		return bad("Burst %d must not be negative", l.Burst)
	}
	r := rule{Limit: l, max: l.burst()}
	if l.Strict {
		switch {
		case l.Burst != 0 && l.Burst != l.Rate:
			return bad("Burst %d must be 0 (or Rate) for a strict limit", l.Burst)
		case l.Rate > MaxStrictRate:
			return bad("Rate %d of a strict limit is above MaxStrictRate (%d)", l.Rate, MaxStrictRate)
		}
		r.period = (int64(l.Period) + us - 1) / us * us
		r.redisArgs = [3]any{"s", r.period / us, int64(l.Rate)}
		return r, nil
	}
	step := int64(l.Period) / int64(l.Rate)
	switch {
	case step < us:
		return bad("Rate %d per %v is more than %d per second", l.Rate, l.Period, maxGCRARate)
	case int64(l.burst()) > int64(1<<53)/step:
		return bad("Burst %d times the interval overflows", l.burst())
	}
	// Rounded up to a whole microsecond: the Redis store counts microseconds, and rounding up
	// keeps both stores identical and never grants more than the limit.
	r.interval = (step + us - 1) / us * us
	r.tol = int64(l.burst()) * r.interval
	r.inverse = 1 / float64(r.interval)
	r.redisArgs = [3]any{"g", r.interval / us, r.tol / us}
	return r, nil
}
