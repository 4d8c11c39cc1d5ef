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

// result turns j into the Result of q: after the charge when the request's units were taken, or
// as the state was before the request otherwise (denied, a peek, or granted within a batch that
// another request denied).
func (j *judged) result(q *request, charged bool) Result {
	r := Result{Policy: q.policy, Allowed: j.granted, Limit: q.rule.Limit}
	if charged {
		r.Remaining, r.ResetAfter = int(j.rem1), time.Duration(j.reset1)
		return r
	}
	r.Remaining, r.ResetAfter = int(j.rem0), time.Duration(j.reset0)
	if !j.granted {
		r.RetryAfter = time.Duration(j.retry)
	}
	return r
}

// judgeGCRA decides q at now for a key whose theoretical arrival time is tat, both in ns on one
// clock; a tat at or before now is a fresh key. It returns the key's tat after the request:
// moved only by a grant or a give-back.
func judgeGCRA(tat, now int64, q *request) (judged, int64) {
	iv, tol := q.rule.interval, q.rule.tol
	tat = max(tat, now)
	j := judged{rem0: units(now-tat+tol, q.rule), reset0: tat - now}
	n := int64(q.n)
	switch {
	case n < 0:
		next := max(tat+n*iv, now)
		j.granted, j.rem1, j.reset1 = true, units(now-next+tol, q.rule), next-now
		return j, next
	case n == 0:
		j.granted = j.rem0 >= 1
		j.retry = tat - tol + iv - now
		return j, tat
	}
	next := tat + n*iv
	if j.rem0 < n {
		j.retry = next - tol - now
		return j, tat
	}
	j.granted, j.rem1, j.reset1 = true, j.rem0-n, next-now
	return j, next
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
