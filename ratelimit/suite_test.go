package ratelimit

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

// env is one backend of the contract suite.
type env struct {
	name  string
	store Store
	// unit is the interval of the suite's limit: 12 s on fake clocks, short on a real server,
	// whose clock the test cannot move.
	unit time.Duration
	// sleep moves the store's clock forward by d.
	sleep func(d time.Duration)
	// slack is how far a real server's clock may move during a check.
	slack time.Duration
	// instance returns the store of another instance: the same MemoryStore, or a RedisStore
	// over a client of its own, configured as this one.
	instance func() Store
}

// limit is the suite's limit: 5 units per 5 intervals, bursts of 5 (5/min on fake clocks).
func (e *env) limit() Limit { return Limit{Rate: 5, Period: 5 * e.unit, Burst: 5} }

// eachStore runs fn against every backend: the memory store inside a synctest bubble, miniredis
// with its clock set by the test, and the real servers the environment names. Every single-node
// Redis runs twice: as configured (one script call per decision), and with the holds of the
// Cluster protocol forced on ("holds"), each entity as if in a slot of its own.
func eachStore(t *testing.T, fn func(t *testing.T, e *env)) {
	redistest.Each(t, func(t *testing.T, b redistest.Backend) {
		if !b.IsRedis() {
			synctest.Test(t, func(t *testing.T) {
				st, err := NewMemoryStore(MemoryConfig{})
				require.NoError(t, err)
				fn(t, &env{name: "memory", store: st, unit: 12 * time.Second, sleep: time.Sleep,
					instance: func() Store { return st }})
			})
			return
		}
		run := func(t *testing.T, holds bool) {
			prefix := b.Prefix
			if holds {
				prefix += "holds:"
			}
			open := func(c redis.UniversalClient) Store {
				st, err := NewRedisStore(c, RedisConfig{Prefix: prefix, Timeout: 5 * time.Second})
				require.NoError(t, err)
				if holds {
					st.holds = true
				}
				return st
			}
			e := &env{name: string(b.Kind), store: open(b.Client), instance: func() Store { return open(b.NewClient(t)) }}
			if b.Mini != nil {
				now := time.Now().Truncate(time.Second)
				b.Mini.SetTime(now)
				e.unit = 12 * time.Second
				e.sleep = func(d time.Duration) {
					now = now.Add(d)
					b.Mini.SetTime(now)
					b.Mini.FastForward(d)
				}
			} else {
				// A loaded machine (-race, a Cluster client bounding calls on goroutines) can take
				// a hundred milliseconds between two calls.
				e.unit, e.sleep, e.slack = 400*time.Millisecond, time.Sleep, 150*time.Millisecond
			}
			fn(t, e)
		}
		if _, cluster := b.Client.(*redis.ClusterClient); cluster {
			run(t, false)
			return
		}
		t.Run("one-call", func(t *testing.T) { run(t, false) })
		t.Run("holds", func(t *testing.T) { run(t, true) })
	})
}

// req is a request for n units of key under l for policy.
func req(policy, key string, l Limit, n int) request {
	r, err := newRule(l, "Limit")
	if err != nil {
		panic(err)
	}
	return request{policy: policy, key: key, rule: &r, n: n}
}

func take(t *testing.T, s Store, reqs ...request) []Result {
	t.Helper()
	out := make([]outcome, len(reqs))
	require.NoError(t, s.take(context.Background(), reqs, out))
	res := make([]Result, len(out))
	for i := range out {
		res[i] = out[i].Result
	}
	return res
}

func assertDuration(t *testing.T, e *env, want, got time.Duration, what string) {
	t.Helper()
	assert.LessOrEqual(t, got, want, what)
	assert.GreaterOrEqual(t, got, want-e.slack-time.Microsecond, what)
}

func TestSuiteBurstThenSteadyRate(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		q := req("login", "1.2.3.4", e.limit(), 1)
		for i := range 5 {
			r := take(t, e.store, q)[0]
			require.True(t, r.Allowed, "request %d", i)
			assert.Equal(t, 4-i, r.Remaining)
			assert.Zero(t, r.RetryAfter)
			assert.Equal(t, "login", r.Policy)
			assertDuration(t, e, time.Duration(i+1)*e.unit, r.ResetAfter, "reset after")
		}
		r := take(t, e.store, q)[0]
		assert.False(t, r.Allowed, "the sixth request within the burst is denied")
		assert.Equal(t, 0, r.Remaining)
		assertDuration(t, e, e.unit, r.RetryAfter, "one unit comes back after one interval")
		assertDuration(t, e, 5*e.unit, r.ResetAfter, "a denial does not move the reset")

		e.sleep(e.unit)
		assert.True(t, take(t, e.store, q)[0].Allowed, "one unit is back after one interval")
		assert.False(t, take(t, e.store, q)[0].Allowed, "and only one")
	})
}

func TestSuiteDenialChargesNothing(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		q := req("p", "k", e.limit(), 3)
		require.True(t, take(t, e.store, q)[0].Allowed)
		r := take(t, e.store, q)[0]
		require.False(t, r.Allowed, "3 more do not fit in the 2 left")
		assert.Equal(t, 2, r.Remaining)
		assertDuration(t, e, e.unit, r.RetryAfter, "three units fit again after one interval")
		q.n = 2
		assert.True(t, take(t, e.store, q)[0].Allowed, "the denial of 3 charged nothing: 2 still fit")
	})
}

func TestSuitePeekResetGiveBack(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		for _, l := range []Limit{e.limit(), {Rate: 5, Period: 5 * e.unit, Strict: true}} {
			take(t, e.store, req("p", "k", l, 4))
			peek := req("p", "k", l, 0)
			for range 3 {
				r := take(t, e.store, peek)[0]
				assert.True(t, r.Allowed)
				assert.Equal(t, 1, r.Remaining, "peeking consumes nothing (%v)", l)
			}
			r := take(t, e.store, req("p", "k", l, -2))[0]
			assert.True(t, r.Allowed)
			assert.Equal(t, 3, r.Remaining, "%v", l)
			assert.Equal(t, 5, take(t, e.store, req("p", "k", l, -5))[0].Remaining, "a give-back never goes beyond the full limit (%v)", l)

			take(t, e.store, req("p", "k", l, 5))
			r = take(t, e.store, peek)[0]
			assert.False(t, r.Allowed)
			assertDuration(t, e, e.unit*map[bool]time.Duration{false: 1, true: 5}[l.Strict], r.RetryAfter,
				"a denied peek says when one unit is back")
			require.NoError(t, e.store.reset(context.Background(), peek))
			assert.Equal(t, 5, take(t, e.store, peek)[0].Remaining, "reset gives the full limit (%v)", l)
		}
	})
}

func TestSuitePoliciesAndKeysAreIndependent(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		l := e.limit()
		take(t, e.store, req("login", "a", l, 5))
		assert.Equal(t, 4, take(t, e.store, req("global", "a", l, 1))[0].Remaining)
		assert.Equal(t, 4, take(t, e.store, req("login", "b", l, 1))[0].Remaining)
		strict := Limit{Rate: 5, Period: 5 * e.unit, Strict: true}
		assert.Equal(t, 4, take(t, e.store, req("login", "a", strict, 1))[0].Remaining,
			"a strict limit of the same name keeps a state of its own")
		for _, k := range []string{"{", "}", "%7D", "{}", "a}b"} {
			assert.Equal(t, 4, take(t, e.store, req("login", k, l, 1))[0].Remaining, "key %q", k)
		}
	})
}

// TestSuiteLoweredLimit: state saved under a larger limit never reports negative units.
func TestSuiteLoweredLimit(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		take(t, e.store, req("p", "k", e.limit(), 5))
		lower := Limit{Rate: 1, Period: e.unit, Burst: 1}
		r := take(t, e.store, req("p", "k", lower, 1))[0]
		assert.False(t, r.Allowed)
		assert.Equal(t, 0, r.Remaining)
		r = take(t, e.store, req("p", "k", lower, 0))[0]
		assert.Equal(t, 0, r.Remaining)

		take(t, e.store, req("s", "k", Limit{Rate: 5, Period: 5 * e.unit, Strict: true}, 5))
		r = take(t, e.store, req("s", "k", Limit{Rate: 2, Period: 5 * e.unit, Strict: true}, 1))[0]
		assert.False(t, r.Allowed)
		assert.Equal(t, 0, r.Remaining)
		assertDuration(t, e, 5*e.unit, r.RetryAfter, "4 of the 5 grants must leave the window: they all do at once")
	})
}

// TestSuiteBatchIsAllOrNothing: a batch with one denied request charges none, whether the
// requests share a key or not, and GCRA and strict limits compose in one batch.
func TestSuiteBatchIsAllOrNothing(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		l := e.limit()
		strict := Limit{Rate: 5, Period: 5 * e.unit, Strict: true}
		take(t, e.store, req("login", "ip", strict, 5))
		res := take(t, e.store,
			req("global", "ip", l, 1),
			req("apikey", "key-1", l, 2),
			req("login", "ip", strict, 1),
		)
		assert.True(t, res[0].Allowed, "global alone would grant")
		assert.Equal(t, 5, res[0].Remaining, "and reports what is left, uncharged")
		assert.Zero(t, res[0].ResetAfter, "uncharged: still a fresh key")
		assert.True(t, res[1].Allowed)
		assert.Equal(t, 5, res[1].Remaining)
		assert.False(t, res[2].Allowed)
		assertDuration(t, e, 5*e.unit, res[2].RetryAfter, "the oldest login attempt leaves the window after a period")
		peek := take(t, e.store, req("global", "ip", l, 0), req("apikey", "key-1", l, 0))
		assert.Equal(t, 5, peek[0].Remaining, "global was not charged")
		assert.Equal(t, 5, peek[1].Remaining, "apikey was not charged")

		res = take(t, e.store, req("global", "ip", l, 1), req("apikey", "key-1", l, 2))
		assert.True(t, res[0].Allowed && res[1].Allowed)
		assert.Equal(t, []int{4, 3}, []int{res[0].Remaining, res[1].Remaining})
		assertDuration(t, e, 2*e.unit, res[1].ResetAfter, "charged: two intervals to the full burst")
	})
}

// TestSuiteBatchProperty: random batches over a few keys and policies, GCRA and strict: each
// batch either grants every request or leaves every key exactly as it was.
func TestSuiteBatchProperty(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		limits := map[string]Limit{
			"p": {Rate: 4, Period: 4000 * e.unit, Burst: 4}, // nothing comes back during the test
			"q": {Rate: 4, Period: 4000 * e.unit, Strict: true},
		}
		rng := rand.New(rand.NewPCG(1, 2))
		keys, policies := []string{"a", "b", "c"}, []string{"p", "q"}
		state := func() []int {
			var reqs []request
			for _, k := range keys {
				for _, p := range policies {
					reqs = append(reqs, req(p, k, limits[p], 0))
				}
			}
			var rem []int
			for _, r := range take(t, e.store, reqs...) {
				rem = append(rem, r.Remaining)
			}
			return rem
		}
		granted, denied := 0, 0
		for range 60 {
			reqs := make([]request, 1+rng.IntN(3))
			for i := range reqs {
				p := policies[rng.IntN(2)]
				reqs[i] = req(p, keys[rng.IntN(3)], limits[p], 1+rng.IntN(2))
			}
			before := state()
			res := take(t, e.store, reqs...)
			after := state()
			all := true
			for _, r := range res {
				all = all && r.Allowed
			}
			if !all {
				denied++
				require.Equal(t, before, after, "a denied batch changed the state")
				continue
			}
			granted++
			want := append([]int(nil), before...)
			for _, q := range reqs {
				for ki, k := range keys {
					for pi, p := range policies {
						if q.key == k && q.policy == p {
							want[ki*len(policies)+pi] -= q.n
						}
					}
				}
			}
			require.Equal(t, want, after, "a granted batch charged exactly its units")
			if rng.IntN(4) == 0 {
				for _, k := range keys {
					for _, p := range policies {
						require.NoError(t, e.store.reset(context.Background(), req(p, k, limits[p], 0)))
					}
				}
			}
		}
		assert.Positive(t, granted)
		assert.Positive(t, denied)
	})
}

// TestSuiteExactUnderContention: 4 instances, each with its own client for a Redis store, and 8
// goroutines each hammer one key of 5 per minute, under GCRA and under a strict limit: exactly
// 5 are granted.
func TestSuiteExactUnderContention(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		for _, limit := range []Limit{PerMinute(5), {Rate: 5, Period: time.Minute, Strict: true}} {
			var limiters []*Limiter
			for range 4 {
				l, err := New(e.instance(), limit, Config{Name: "login", DisableDenyCache: true})
				require.NoError(t, err)
				limiters = append(limiters, l)
			}
			var granted, errs atomic.Int64
			var wg sync.WaitGroup
			for _, l := range limiters {
				for range 8 {
					wg.Go(func() {
						for range 25 {
							r, err := l.Allow(context.Background(), "victim")
							if err != nil {
								errs.Add(1)
							}
							if r.Allowed {
								granted.Add(1)
							}
						}
					})
				}
			}
			wg.Wait()
			assert.Zero(t, errs.Load())
			assert.Equal(t, int64(5), granted.Load(), "800 attempts within a minute on %v", limit)
		}
	})
}
