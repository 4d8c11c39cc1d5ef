package ratelimit

import (
	"errors"
	"fmt"
	"time"
)

// Limit is a rate: Rate units per Period, with bursts of up to Burst units at once.
//
// Under GCRA, the algorithm of every store, units are spread evenly: one unit every Period/Rate,
// with up to Burst units available at once after a quiet spell. Over any interval of length t a
// key is granted at most Burst + Rate*t/Period units. With the default Burst (= Rate), a client
// that waited may spend a full Period's worth at once and then keep the steady rate, so any one
// window of length Period can see up to 2*Rate. Set Burst to 1 for an even spread (at most
// 1 + Rate units in any Period), or lower Rate, when a hard ceiling per window matters.
//
// The zero value is invalid: Rate and Period must be positive.
type Limit struct {
	Rate   int           // units per Period; must be positive
	Period time.Duration // must be positive
	Burst  int           // units available at once; 0 means Rate
}

// PerSecond returns a Limit of n units per second with bursts of n.
func PerSecond(n int) Limit { return Limit{Rate: n, Period: time.Second, Burst: n} }

// PerMinute returns a Limit of n units per minute with bursts of n.
func PerMinute(n int) Limit { return Limit{Rate: n, Period: time.Minute, Burst: n} }

// PerHour returns a Limit of n units per hour with bursts of n.
func PerHour(n int) Limit { return Limit{Rate: n, Period: time.Hour, Burst: n} }

// String formats the limit as "5/1m0s (burst 5)".
func (l Limit) String() string {
	return fmt.Sprintf("%d/%v (burst %d)", l.Rate, l.Period, l.burst())
}

func (l Limit) burst() int {
	if l.Burst == 0 {
		return l.Rate
	}
	return l.Burst
}

// interval is the time one unit takes to come back, in ns, rounded up to a whole microsecond:
// the Redis store counts microseconds, and rounding up keeps both stores identical and never
// grants more than the limit.
func (l Limit) interval() int64 {
	const us = int64(time.Microsecond)
	return (int64(l.Period)/int64(l.Rate) + us - 1) / us * us
}

// maxRate bounds Rate/Period so that one unit takes at least a microsecond: the Redis store
// keeps time in integer microseconds.
const maxRate = int64(time.Second / time.Microsecond)

func (l Limit) validate() error {
	switch {
	case l.Rate <= 0:
		return fmt.Errorf("%w: Rate %d must be positive", ErrInvalidLimit, l.Rate)
	case l.Period <= 0:
		return fmt.Errorf("%w: Period %v must be positive", ErrInvalidLimit, l.Period)
	case l.Burst < 0:
		return fmt.Errorf("%w: Burst %d must not be negative", ErrInvalidLimit, l.Burst)
	case int64(l.Period)/int64(l.Rate) < int64(time.Microsecond):
		return fmt.Errorf("%w: %d per %v is more than %d per second", ErrInvalidLimit, l.Rate, l.Period, maxRate)
	case int64(l.burst()) > int64(1<<53)/(int64(l.Period)/int64(l.Rate)):
		return fmt.Errorf("%w: Burst %d times the interval overflows", ErrInvalidLimit, l.burst())
	}
	return nil
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
	// ResetAfter is how long until the key is back to a full burst.
	ResetAfter time.Duration
}

// Errors returned by the package. Match them with [errors.Is].
var (
	// ErrInvalidLimit reports a Limit that cannot be applied.
	ErrInvalidLimit = errors.New("ratelimit: invalid limit")
	// ErrInvalidKey reports an empty key or a negative cost.
	ErrInvalidKey = errors.New("ratelimit: invalid key")
	// ErrExceedsBurst reports a request for more units than the burst: it can never be granted.
	ErrExceedsBurst = errors.New("ratelimit: cost exceeds burst")
	// ErrUnavailable reports that the store could not decide (Redis down, slow or refusing) and
	// the limiter's failure policy is FailClosed. The Result is a denial.
	ErrUnavailable = errors.New("ratelimit: store unavailable")
)
