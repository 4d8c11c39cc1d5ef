package ratelimit

// slidingLog is the state of a key under a Strict limit in the memory store: the times of its
// last grants (ns on the store's clock), oldest first, in a ring. A grant of n units adds n
// times, so at most Rate of them fall within any period.
type slidingLog struct {
	ts   []int64 // the ring; its length is the most grants it can hold
	head int     // index of the oldest
	n    int     // grants held
}

func (g *slidingLog) at(i int) int64 { return g.ts[(g.head+i)%len(g.ts)] }

func (g *slidingLog) newest() int64 { return g.at(g.n - 1) }

// trim forgets the grants that left the window: those at or before now-period.
func (g *slidingLog) trim(now, period int64) {
	for g.n > 0 && g.ts[g.head] <= now-period {
		g.head = (g.head + 1) % len(g.ts)
		g.n--
	}
}

// push records n grants at t, which is never before the newest (the clock is monotonic; the
// max keeps the log sorted all the same).
func (g *slidingLog) push(t int64, n int) {
	if g.n > 0 {
		t = max(t, g.newest())
	}
	if g.n+n > len(g.ts) {
		// Only a Limiter with a higher Rate than the one that made the log (sharing its name)
		// needs more room.
		ts := make([]int64, g.n+n)
		for i := range g.n {
			ts[i] = g.at(i)
		}
		g.ts, g.head = ts, 0
	}
	for range n {
		g.ts[(g.head+g.n)%len(g.ts)] = t
		g.n++
	}
}

// pop forgets the n newest grants (a give-back).
func (g *slidingLog) pop(n int) { g.n -= min(n, g.n) }

// resetAfter is how long until no grant is left in the window.
func (g *slidingLog) resetAfter(now, period int64) int64 {
	if g.n == 0 {
		return 0
	}
	return g.newest() + period - now
}

// wait is how long until n more units fit (n <= Rate), knowing they do not fit now: until the
// log holds at most Rate-n grants within the window, that is until the (held+n-Rate)th oldest
// grant is period old.
func (g *slidingLog) wait(now int64, r *rule, n int) int64 {
	return g.at(g.n+n-r.Rate-1) + r.period - now
}

// judge decides q at now into j, as judgeGCRA does for GCRA, recording the grant (or the
// give-back) in g.
func (g *slidingLog) judge(now int64, q *request, j *judged) {
	period, rate, n := q.rule.period, q.rule.Rate, q.n
	g.trim(now, period)
	*j = judged{rem0: int64(max(0, rate-g.n)), reset0: g.resetAfter(now, period)}
	switch {
	case n < 0:
		g.pop(-n)
	case n == 0:
		j.granted = j.rem0 >= 1
		if !j.granted {
			j.retry = g.wait(now, q.rule, 1)
		}
		return
	case rate-g.n < n:
		j.retry = g.wait(now, q.rule, n)
		return
	default:
		g.push(now, n)
	}
	j.granted, j.rem1, j.reset1 = true, int64(max(0, rate-g.n)), g.resetAfter(now, period)
}
