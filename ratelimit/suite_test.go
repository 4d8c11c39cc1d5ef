package ratelimit

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/outgrow/outgrow/internal/redistest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// env is one backend of the contract suite.
type env struct {
	kind  redistest.Kind
	store Store
	// unit is the interval of the suite's limit: 12 s on fake clocks, short on a real server,
	// whose clock the test cannot move.
	unit time.Duration
	// sleep moves the store's clock forward by d.
	sleep func(d time.Duration)
	// slack is how far a real server's clock may move during a check.
	slack time.Duration
	// client builds one more client to the same server, nil for memory.
	client func() redis.UniversalClient
	prefix string
}

// limit is the suite's limit: 5 units per 5 intervals, bursts of 5 (5/min on fake clocks).
func (e *env) limit() Limit { return Limit{Rate: 5, Period: 5 * e.unit, Burst: 5} }

// eachStore runs fn against every backend: the memory store inside a synctest bubble, miniredis
// with its clock set by the test, and the real servers the environment names.
func eachStore(t *testing.T, fn func(t *testing.T, e *env)) {
	redistest.Each(t, func(t *testing.T, b redistest.Backend) {
		if !b.IsRedis() {
			synctest.Test(t, func(t *testing.T) {
				st, err := NewMemoryStore(MemoryConfig{})
				require.NoError(t, err)
				fn(t, &env{kind: b.Kind, store: st, unit: 12 * time.Second, sleep: time.Sleep})
			})
			return
		}
		st, err := NewRedisStore(b.Client, RedisConfig{Prefix: b.Prefix, Timeout: 5 * time.Second})
		require.NoError(t, err)
		e := &env{kind: b.Kind, store: st, prefix: b.Prefix}
		e.client = func() redis.UniversalClient { return redistest.Open(t, b.Kind).Client }
		if b.Mini != nil {
			now := time.Now()
			b.Mini.SetTime(now)
			e.unit = 12 * time.Second
			e.sleep = func(d time.Duration) {
				now = now.Add(d)
				b.Mini.SetTime(now)
				b.Mini.FastForward(d)
			}
			e.client = func() redis.UniversalClient { return redis.NewClient(&redis.Options{Addr: b.Mini.Addr()}) }
		} else {
			e.unit, e.sleep, e.slack = 200*time.Millisecond, time.Sleep, 50*time.Millisecond
		}
		fn(t, e)
	})
}

func take(t *testing.T, s Store, reqs ...Request) []Result {
	t.Helper()
	res := make([]Result, len(reqs))
	require.NoError(t, s.Take(context.Background(), reqs, res))
	return res
}

func assertDuration(t *testing.T, e *env, want, got time.Duration, what string) {
	t.Helper()
	assert.LessOrEqual(t, got, want, what)
	assert.GreaterOrEqual(t, got, want-e.slack-time.Microsecond, what)
}

func TestSuiteBurstThenSteadyRate(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		q := Request{Policy: "login", Key: "1.2.3.4", Limit: e.limit(), N: 1}
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
		q := Request{Policy: "p", Key: "k", Limit: e.limit(), N: 3}
		require.True(t, take(t, e.store, q)[0].Allowed)
		r := take(t, e.store, q)[0]
		require.False(t, r.Allowed, "3 more do not fit in the 2 left")
		assert.Equal(t, 2, r.Remaining)
		assertDuration(t, e, e.unit, r.RetryAfter, "three units fit again after one interval")
		q.N = 2
		assert.True(t, take(t, e.store, q)[0].Allowed, "the denial of 3 charged nothing: 2 still fit")
	})
}

func TestSuitePeekResetRefund(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		q := Request{Policy: "p", Key: "k", Limit: e.limit(), N: 4}
		take(t, e.store, q)
		peek := Request{Policy: "p", Key: "k", Limit: e.limit()}
		for range 3 {
			r := take(t, e.store, peek)[0]
			assert.True(t, r.Allowed)
			assert.Equal(t, 1, r.Remaining, "peeking consumes nothing")
		}
		refund := Request{Policy: "p", Key: "k", Limit: e.limit(), N: -2}
		r := take(t, e.store, refund)[0]
		assert.True(t, r.Allowed)
		assert.Equal(t, 3, r.Remaining)
		refund.N = -5
		assert.Equal(t, 5, take(t, e.store, refund)[0].Remaining, "a refund never goes beyond a full burst")

		take(t, e.store, Request{Policy: "p", Key: "k", Limit: e.limit(), N: 5})
		r = take(t, e.store, peek)[0]
		assert.False(t, r.Allowed)
		assertDuration(t, e, e.unit, r.RetryAfter, "a denied peek says when one unit is back")
		require.NoError(t, e.store.Reset(context.Background(), peek))
		assert.Equal(t, 5, take(t, e.store, peek)[0].Remaining, "Reset gives a full burst")
	})
}

func TestSuitePoliciesAndKeysAreIndependent(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		l := e.limit()
		take(t, e.store, Request{Policy: "login", Key: "a", Limit: l, N: 5})
		assert.Equal(t, 4, take(t, e.store, Request{Policy: "global", Key: "a", Limit: l, N: 1})[0].Remaining)
		assert.Equal(t, 4, take(t, e.store, Request{Policy: "login", Key: "b", Limit: l, N: 1})[0].Remaining)
		for _, k := range []string{"{", "}", "%7D", "{}", "a}b"} {
			assert.Equal(t, 4, take(t, e.store, Request{Policy: "login", Key: k, Limit: l, N: 1})[0].Remaining, "key %q", k)
		}
	})
}

// TestSuiteLoweredLimit: state saved under a larger burst never reports negative units.
func TestSuiteLoweredLimit(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		take(t, e.store, Request{Policy: "p", Key: "k", Limit: e.limit(), N: 5})
		lower := Limit{Rate: 1, Period: e.unit, Burst: 1}
		r := take(t, e.store, Request{Policy: "p", Key: "k", Limit: lower, N: 1})[0]
		assert.False(t, r.Allowed)
		assert.Equal(t, 0, r.Remaining)
		r = take(t, e.store, Request{Policy: "p", Key: "k", Limit: lower})[0]
		assert.Equal(t, 0, r.Remaining)
	})
}

func TestSuiteInvalidRequests(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		l := e.limit()
		res := make([]Result, 1)
		ctx := context.Background()
		assert.ErrorIs(t, e.store.Take(ctx, []Request{{Policy: "p", Key: "", Limit: l, N: 1}}, res), ErrInvalidKey)
		assert.ErrorIs(t, e.store.Take(ctx, []Request{{Policy: "p", Key: "k", Limit: l, N: 6}}, res), ErrExceedsBurst)
		assert.ErrorIs(t, e.store.Take(ctx, []Request{{Policy: "p", Key: "k", Limit: Limit{Rate: 1}, N: 1}}, res), ErrInvalidLimit)
		assert.ErrorIs(t, e.store.Take(ctx, []Request{{Policy: "p", Key: "k", Limit: l, N: 1}, {Policy: "q", Key: "k", Limit: l, N: -1}}, make([]Result, 2)), ErrInvalidKey)
		assert.Error(t, e.store.Take(ctx, []Request{{Policy: "p", Key: "k", Limit: l, N: 1}}, nil))
	})
}

// TestSuiteBatchIsAllOrNothing: a batch with one denied request charges none, whether the
// requests share a key (one script) or not (a pipeline and a give-back).
func TestSuiteBatchIsAllOrNothing(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		l := e.limit()
		take(t, e.store, Request{Policy: "login", Key: "ip", Limit: l, N: 5})
		res := take(t, e.store,
			Request{Policy: "global", Key: "ip", Limit: l, N: 1},
			Request{Policy: "apikey", Key: "key-1", Limit: l, N: 2},
			Request{Policy: "login", Key: "ip", Limit: l, N: 1},
		)
		assert.True(t, res[0].Allowed, "global alone would grant")
		assert.Equal(t, 5, res[0].Remaining, "and reports what is left once given back")
		assert.True(t, res[1].Allowed)
		assert.Equal(t, 5, res[1].Remaining)
		assert.False(t, res[2].Allowed)
		peek := take(t, e.store, Request{Policy: "global", Key: "ip", Limit: l}, Request{Policy: "apikey", Key: "key-1", Limit: l})
		assert.Equal(t, 5, peek[0].Remaining, "global was not charged")
		assert.Equal(t, 5, peek[1].Remaining, "apikey was not charged")

		res = take(t, e.store, Request{Policy: "global", Key: "ip", Limit: l, N: 1}, Request{Policy: "apikey", Key: "key-1", Limit: l, N: 2})
		assert.True(t, res[0].Allowed && res[1].Allowed)
		assert.Equal(t, []int{4, 3}, []int{res[0].Remaining, res[1].Remaining})
	})
}

// TestSuiteBatchProperty: random batches over a few keys and policies: each batch either grants
// every request or leaves every key exactly as it was.
func TestSuiteBatchProperty(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		l := Limit{Rate: 4, Period: 4000 * e.unit, Burst: 4} // nothing comes back during the test
		rng := rand.New(rand.NewPCG(1, 2))
		keys, policies := []string{"a", "b", "c"}, []string{"p", "q"}
		state := func() []int {
			var reqs []Request
			for _, k := range keys {
				for _, p := range policies {
					reqs = append(reqs, Request{Policy: p, Key: k, Limit: l})
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
			n := 1 + rng.IntN(3)
			reqs := make([]Request, n)
			for i := range reqs {
				reqs[i] = Request{Policy: policies[rng.IntN(2)], Key: keys[rng.IntN(3)], Limit: l, N: 1 + rng.IntN(2)}
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
				require.Equal(t, before, after, "a denied batch %v changed the state", reqs)
				continue
			}
			granted++
			want := append([]int(nil), before...)
			for _, q := range reqs {
				i := 0
				for ki, k := range keys {
					for pi, p := range policies {
						if q.Key == k && q.Policy == p {
							i = ki*len(policies) + pi
						}
					}
				}
				want[i] -= q.N
			}
			require.Equal(t, want, after, "a granted batch %v charged exactly its units", reqs)
			if rng.IntN(4) == 0 {
				for _, k := range keys {
					for _, p := range policies {
						require.NoError(t, e.store.Reset(context.Background(), Request{Policy: p, Key: k}))
					}
				}
			}
		}
		assert.Positive(t, granted)
		assert.Positive(t, denied)
	})
}

// TestSuiteExactUnderContention: 4 limiters, each with its own client for a Redis store, and 8
// goroutines each hammer one key of 5 per minute: exactly 5 are granted.
func TestSuiteExactUnderContention(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		limit := PerMinute(5)
		var limiters []*Limiter
		for range 4 {
			st := e.store
			if e.client != nil {
				c := e.client()
				if e.kind == redistest.Miniredis {
					t.Cleanup(func() { _ = c.Close() })
				}
				var err error
				st, err = NewRedisStore(c, RedisConfig{Prefix: e.prefix, Timeout: 5 * time.Second})
				require.NoError(t, err)
			}
			l, err := New(st, limit, Config{Name: "login", DenyCacheSize: -1})
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
		assert.Equal(t, int64(5), granted.Load(), "800 attempts within a minute on a 5/min key")
	})
}
