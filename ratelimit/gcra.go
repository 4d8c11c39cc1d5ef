package ratelimit

import "time"

// judged is what the memory store works out for one request against one key's state. The Redis
// store works out the same in ratelimit.lua, with the same arithmetic, in microseconds.
type judged struct {
	granted      bool
	rem0, reset0 int64 // units left and ns to the full limit, before this request's own charge
	retry        int64 // denied: ns until the units are available
	rem1, reset1 int64 // granted: units left and ns to the full limit after the charge
}

// result writes j into r, the Result of q: after the charge when the request's units were
// taken, or as the state was before the request otherwise (denied, a peek, or granted within a
// batch that another request denied).
func (j *judged) result(q *request, charged bool, r *Result) {
	r.Policy, r.Allowed, r.Limit, r.RetryAfter = q.policy, j.granted, q.rule.Limit, 0
	if charged {
		r.Remaining, r.ResetAfter = int(j.rem1), time.Duration(j.reset1)
		return
	}
	r.Remaining, r.ResetAfter = int(j.rem0), time.Duration(j.reset0)
	if !j.granted {
		r.RetryAfter = time.Duration(j.retry)
	}
}

// judgeGCRA decides q at now for a key whose theoretical arrival time is tat, both in ns on one
// clock (a tat at or before now is a fresh key), into j. It returns the key's tat after the
// request: moved only by a grant or a give-back.
func judgeGCRA(tat, now int64, q *request, j *judged) int64 {
	r, n := q.rule, int64(q.n)
	tat = max(tat, now)
	*j = judged{rem0: units(now-tat+r.tol, r), reset0: tat - now}
	switch {
	case n < 0:
		next := max(tat+n*r.interval, now)
		j.granted, j.rem1, j.reset1 = true, units(now-next+r.tol, r), next-now
		return next
	case n == 0:
		j.granted = j.rem0 >= 1
		j.retry = tat - r.tol + r.interval - now
		return tat
	}
	next := tat + n*r.interval
	if j.rem0 < n {
		j.retry = next - r.tol - now
		return tat
	}
	j.granted, j.rem1, j.reset1 = true, j.rem0-n, next-now
	return next
}

// units returns how many whole intervals of r fit in d, and 0 when d is negative: the units a key
// has left. It divides with the reciprocal of the interval, worked out once, and corrects the
// rounding, which costs less than a 64-bit division on the hot path.
func units(d int64, r *rule) int64 {
	if d < r.interval {
		return 0
	}
	q := int64(float64(d) * r.inverse)
	if q*r.interval > d {
		q--
	} else if (q+1)*r.interval <= d {
		q++
	}
	return q
}
