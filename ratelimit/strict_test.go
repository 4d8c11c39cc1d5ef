package ratelimit

import (
	"context"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStrictAtMostNInAnyWindow: under a strict limit of N per period, random requests of 1 or 2
// units never get more than N units within any window of one period, and a denial's RetryAfter is
// exact: the time until the oldest grant that must leave the window is a period old. On fake
// clocks (memory in synctest, miniredis) the check is exact; on real servers every grant happened
// between sending and receiving its request, and the bound is checked on those spans.
func TestStrictAtMostNInAnyWindow(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		const n = 3
		period := 2 * e.unit
		if e.slack > 0 {
			period = e.unit // a real clock: keep the test short
		}
		limit := Limit{Rate: n, Period: period, Strict: true}
		var elapsed time.Duration // on fake clocks
		start := time.Now()
		clock := func() time.Duration {
			if e.slack == 0 {
				return elapsed
			}
			return time.Since(start)
		}
		type span struct{ sent, received time.Duration }
		var grants []span
		rng := rand.New(rand.NewPCG(3, 5))
		denials := 0
		for clock() < 3*period {
			cost := 1 + rng.IntN(2)
			sent := clock()
			r := take(t, e.store, req("login", "ip", limit, cost))[0]
			received := clock()
			if r.Allowed {
				for range cost {
					grants = append(grants, span{sent, received})
				}
			} else {
				denials++
				// The grants still in the window; the (held+cost-N)th oldest must leave it.
				var in []span
				for _, g := range grants {
					if g.received > sent-period {
						in = append(in, g)
					}
				}
				k := len(in) + cost - n
				require.Positive(t, k, "denied with room for %d units", cost)
				oldest := in[k-1]
				assert.LessOrEqual(t, r.RetryAfter, oldest.received+period-sent, "RetryAfter %v", r.RetryAfter)
				assert.GreaterOrEqual(t, r.RetryAfter, oldest.sent+period-received, "RetryAfter %v", r.RetryAfter)
			}
			d := time.Duration(rng.IntN(10)) * period / 40
			elapsed += d
			e.sleep(d)
		}
		for i := 0; i+n < len(grants); i++ {
			assert.GreaterOrEqual(t, grants[i+n].received-grants[i].sent, period,
				"grants %d and %d are %d units within one period", i, i+n, n+1)
		}
		assert.Greater(t, len(grants), 2*n, "the window slid")
		assert.Positive(t, denials)
	})
}

// TestStrictLoginLimit: the article's "5 login attempts per minute" as a strict limit admits at
// most 5 attempts in any minute to a client retrying every second, where GCRA with a burst of 5
// admits 9 in the first minute (5 at once, then one every 12 s).
func TestStrictLoginLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := memStore(t)
		strict := newLimiter(t, s, Limit{Rate: 5, Period: time.Minute, Strict: true}, Config{Name: "login"})
		gcra := newLimiter(t, s, PerMinute(5), Config{Name: "gcra"})
		var strictAt []time.Duration
		gcraFirstMinute := 0
		for sec := range 180 {
			if r, _ := strict.Allow(ctx, "ip"); r.Allowed {
				strictAt = append(strictAt, time.Duration(sec)*time.Second)
			} else if sec < 60 {
				assert.Equal(t, time.Minute-time.Duration(sec)*time.Second, r.RetryAfter,
					"second %d: the first attempt, at 0 s, leaves the window at 60 s", sec)
			}
			if r, _ := gcra.Allow(ctx, "ip"); r.Allowed && sec < 60 {
				gcraFirstMinute++
			}
			time.Sleep(time.Second)
		}
		sec := func(s ...int) (d []time.Duration) {
			for _, x := range s {
				d = append(d, time.Duration(x)*time.Second)
			}
			return d
		}
		assert.Equal(t, sec(0, 1, 2, 3, 4, 60, 61, 62, 63, 64, 120, 121, 122, 123, 124), strictAt,
			"five, then five more as each of the first five is a minute old")
		assert.Equal(t, 9, gcraFirstMinute, "GCRA lets a burst of 5 plus one every 12 s")
	})
}

// TestStrictWithGCRAInOneCall: a strict login limit and a GCRA global limit on one key are one
// script call on Redis, all or nothing; the deny cache refuses a strict key with the exact
// RetryAfter, without calling Redis.
func TestStrictWithGCRAInOneCall(t *testing.T) {
	m, s := miniStore(t, RedisConfig{})
	m.SetTime(miniStart)
	global := newLimiter(t, s, PerHour(100), Config{Name: "global"})
	login := newLimiter(t, s, Limit{Rate: 2, Period: time.Minute, Strict: true}, Config{Name: "login"})
	ctx := context.Background()
	_, _ = global.Peek(ctx, "warm")
	for i := range 3 {
		before := s.Stats().Calls
		d, err := AllowAll(ctx, Layer{Limiter: global, Key: "ip"}, Layer{Limiter: login, Key: "ip"})
		require.NoError(t, err)
		assert.Equal(t, uint64(1), s.Stats().Calls-before, "one call")
		assert.Equal(t, i < 2, d.Allowed, "attempt %d", i)
		m.SetTime(miniStart.Add(time.Duration(i+1) * 10 * time.Second))
	}
	p, _ := global.Peek(ctx, "ip")
	assert.Equal(t, 98, p.Remaining, "the denied attempt did not charge global")

	before := m.CommandCount()
	r, err := login.Allow(ctx, "ip")
	require.NoError(t, err)
	assert.False(t, r.Allowed)
	assert.InDelta(t, 40*time.Second, r.RetryAfter, float64(time.Second), "denied at 20 s: the attempt at 0 s leaves the window at 60 s")
	assert.Equal(t, before, m.CommandCount(), "refused by the deny cache")
}
