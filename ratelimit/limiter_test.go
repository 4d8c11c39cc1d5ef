package ratelimit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

func memStore(t *testing.T) *MemoryStore {
	t.Helper()
	s, err := NewMemoryStore(MemoryConfig{})
	require.NoError(t, err)
	return s
}

func newLimiter(t *testing.T, s Store, l Limit, cfg Config) *Limiter {
	t.Helper()
	lim, err := New(s, l, cfg)
	require.NoError(t, err)
	return lim
}

func TestNewValidates(t *testing.T) {
	s := memStore(t)
	for name, tc := range map[string]struct {
		store Store
		limit Limit
		cfg   Config
		field string
	}{
		"zero limit":          {s, Limit{}, Config{}, "Limit.Rate"},
		"negative burst":      {s, Limit{Rate: 1, Period: time.Second, Burst: -1}, Config{}, "Limit.Burst"},
		"too fast":            {s, Limit{Rate: 2_000_000, Period: time.Second}, Config{}, "Limit.Rate"},
		"sub-µs period":       {s, Limit{Rate: 1, Period: time.Nanosecond}, Config{}, "Limit.Period"},
		"strict with a burst": {s, Limit{Rate: 5, Period: time.Minute, Burst: 2, Strict: true}, Config{}, "Limit.Burst"},
		"strict too large":    {s, Limit{Rate: MaxStrictRate + 1, Period: time.Minute, Strict: true}, Config{}, "Limit.Rate"},
		"bad name":            {s, PerMinute(5), Config{Name: "log in"}, "Config.Name"},
		"quote in name":       {s, PerMinute(5), Config{Name: `a"b`}, "Config.Name"},
		"bad policy":          {s, PerMinute(5), Config{FailurePolicy: FailurePolicy(7)}, "Config.FailurePolicy"},
		"bad deny cache":      {s, PerMinute(5), Config{DenyCacheSize: -2}, "Config.DenyCacheSize"},
		"bad fallback":        {&RedisStore{local: s}, PerMinute(5), Config{FallbackLimit: Limit{Rate: -1}}, "Config.FallbackLimit.Rate"},
	} {
		_, err := New(tc.store, tc.limit, tc.cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, name)
		assert.ErrorContains(t, err, tc.field, name)
	}
	_, err := New(nil, PerMinute(5), Config{})
	assert.ErrorIs(t, err, ErrInvalidConfig, "a nil store is refused as in every package")
	strict := newLimiter(t, s, Limit{Rate: MaxStrictRate, Period: time.Minute, Burst: MaxStrictRate, Strict: true}, Config{})
	assert.Equal(t, "1000/1m0s (strict)", strict.Limit().String(), "Burst may repeat Rate")
	l := newLimiter(t, s, PerMinute(5), Config{})
	assert.Equal(t, "default", l.Name())
	assert.Equal(t, PerMinute(5), l.Limit())
	assert.Equal(t, "5/1m0s (burst 5)", l.Limit().String())
	assert.Equal(t, "closed", FailClosed.String())
}

func TestAllowN(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		l := newLimiter(t, memStore(t), PerMinute(5), Config{Name: "login"})
		r, err := l.AllowN(ctx, "ip", 3)
		require.NoError(t, err)
		assert.Equal(t, Result{Policy: "login", Allowed: true, Limit: PerMinute(5), Remaining: 2, ResetAfter: 36 * time.Second}, r)
		r, err = l.AllowN(ctx, "ip", 3)
		require.NoError(t, err)
		assert.False(t, r.Allowed)
		assert.Equal(t, 12*time.Second, r.RetryAfter)

		r, err = l.AllowN(ctx, "ip", 0)
		assert.ErrorIs(t, err, ErrInvalidRequest)
		assert.False(t, r.Allowed, "an error is never a grant")
		r, err = l.AllowN(ctx, "ip", 6)
		assert.ErrorIs(t, err, ErrExceedsBurst)
		assert.False(t, r.Allowed)
		r, err = l.Allow(ctx, "")
		assert.ErrorIs(t, err, ErrInvalidRequest)
		assert.False(t, r.Allowed, "an empty key is never let through")

		p, err := l.Peek(ctx, "ip")
		require.NoError(t, err)
		assert.Equal(t, 2, p.Remaining)
		require.NoError(t, l.Reset(ctx, "ip"))
		p, _ = l.Peek(ctx, "ip")
		assert.Equal(t, 5, p.Remaining)
		assert.Equal(t, Stats{Allowed: 1, Limited: 1}, l.Stats())
	})
}

func TestMemoryDecisionsDoNotAllocate(t *testing.T) {
	l := newLimiter(t, memStore(t), PerSecond(1_000_000), Config{})
	ctx := context.Background()
	_, _ = l.Allow(ctx, "k")
	allocs := testing.AllocsPerRun(1000, func() { _, _ = l.Allow(ctx, "k") })
	assert.Zero(t, allocs)
}

// TestMemoryStoreCap: a flood of distinct keys never holds more than MaxKeys, keys back to a full
// burst go first, and a throttled key survives a flood of fresh keys.
func TestMemoryStoreCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := NewMemoryStore(MemoryConfig{MaxKeys: 1024})
		require.NoError(t, err)
		ctx := context.Background()
		victim := newLimiter(t, s, PerHour(3), Config{Name: "login"})
		for range 3 {
			_, _ = victim.Allow(ctx, "attacker")
		}
		flood := newLimiter(t, s, Limit{Rate: 1, Period: time.Millisecond, Burst: 1}, Config{Name: "flood"})
		var key [8]byte
		for i := range 100_000 {
			key[0], key[1], key[2] = byte(i), byte(i>>8), byte(i>>16)
			_, _ = flood.Allow(ctx, string(key[:3]))
			if i%100 == 0 {
				time.Sleep(time.Millisecond) // the flood keys come back to a full burst
				require.LessOrEqual(t, s.Stats().Keys, 1024)
			}
		}
		r, _ := victim.Allow(ctx, "attacker")
		assert.False(t, r.Allowed, "the flood did not reset the throttled key")
		assert.Zero(t, s.Stats().Evicted, "only keys back to a full burst were dropped")

		// Now a flood of keys that stay throttled for an hour: the cap still holds, by evicting
		// live keys, and says so.
		hour := newLimiter(t, s, PerHour(1), Config{Name: "hour"})
		for i := range 5000 {
			key[0], key[1] = byte(i), byte(i>>8)
			_, _ = hour.Allow(ctx, string(key[:2]))
		}
		st := s.Stats()
		assert.LessOrEqual(t, st.Keys, 1024)
		assert.Positive(t, st.Evicted)
	})
}

// TestMemoryStoreReclaimsIdleKeys: keys back to a full burst are dropped as new keys arrive.
func TestMemoryStoreReclaimsIdleKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := memStore(t)
		l := newLimiter(t, s, PerSecond(10), Config{})
		ctx := context.Background()
		var key [2]byte
		for i := range 20_000 {
			key[0], key[1] = byte(i), byte(i>>8)
			_, _ = l.Allow(ctx, string(key[:]))
		}
		before := s.Stats().Keys
		assert.Greater(t, before, 10_000)
		time.Sleep(time.Second)
		for i := range 20_000 {
			key[0], key[1] = byte(i), byte(i>>8)+128
			_, _ = l.Allow(ctx, string(key[:]))
		}
		assert.Less(t, s.Stats().Keys, before+10_000, "idle keys were swept while new ones came")
	})
}

func TestAllowAllAcrossStores(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		a := newLimiter(t, memStore(t), PerMinute(5), Config{Name: "global"})
		b := newLimiter(t, memStore(t), PerMinute(2), Config{Name: "login"})
		for range 2 {
			d, err := AllowAll(ctx, Layer{Limiter: a, Key: "ip"}, Layer{Limiter: b, Key: "ip"})
			require.NoError(t, err)
			assert.True(t, d.Allowed)
		}
		d, err := AllowAll(ctx, Layer{Limiter: a, Key: "ip"}, Layer{Limiter: b, Key: "ip"})
		require.NoError(t, err)
		assert.False(t, d.Allowed)
		assert.Equal(t, []string{"login"}, d.Denied)
		assert.True(t, d.Results[0].Allowed)
		assert.Equal(t, 3, d.Results[0].Remaining, "global reports its units as given back")
		p, _ := a.Peek(ctx, "ip")
		assert.Equal(t, 3, p.Remaining, "the global store was given its unit back")
		assert.Equal(t, Stats{Allowed: 2}, a.Stats(), "a layer given back is not counted as allowed")
		assert.Equal(t, Stats{Allowed: 2, Limited: 1}, b.Stats())
		assert.Equal(t, 30*time.Second, d.RetryAfter(), "login gives a unit back every 30 s")

		d, err = AllowAll(ctx)
		assert.ErrorIs(t, err, ErrInvalidRequest)
		assert.False(t, d.Allowed, "no layer is no grant")
		_, err = AllowAll(ctx, Layer{Key: "x"})
		assert.ErrorIs(t, err, ErrInvalidRequest)
		_, err = AllowAll(ctx, Layer{Limiter: a, Key: "x", N: -1})
		assert.ErrorIs(t, err, ErrInvalidRequest)
	})
}

func miniStore(t *testing.T, cfg RedisConfig) (*miniredis.Miniredis, *RedisStore) {
	t.Helper()
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	s, err := NewRedisStore(c, cfg)
	require.NoError(t, err)
	return m, s
}

// TestDenyCache: once a key is denied, further requests are refused without calling Redis until
// its RetryAfter, then Redis decides again.
func TestDenyCache(t *testing.T) {
	m, s := miniStore(t, RedisConfig{})
	var hits atomic.Int64
	l := newLimiter(t, s, Limit{Rate: 1, Period: 300 * time.Millisecond, Burst: 1}, Config{
		Name:  "login",
		Hooks: Hooks{OnDenyCacheHit: func(context.Context, string, Result) { hits.Add(1) }},
	})
	ctx := context.Background()
	r, err := l.Allow(ctx, "ip")
	require.NoError(t, err)
	require.True(t, r.Allowed)
	r, _ = l.Allow(ctx, "ip")
	require.False(t, r.Allowed)
	calls := m.CommandCount()
	for range 100 {
		r, err = l.Allow(ctx, "ip")
		require.NoError(t, err)
		assert.False(t, r.Allowed)
		assert.Positive(t, r.RetryAfter)
	}
	assert.Equal(t, calls, m.CommandCount(), "no Redis command for a key known to be over its limit")
	assert.Equal(t, int64(100), hits.Load())
	assert.Equal(t, uint64(100), l.Stats().DenyCacheHits)
	assert.Equal(t, uint64(101), l.Stats().Limited)

	other, _ := l.Allow(ctx, "other-ip")
	assert.True(t, other.Allowed, "the cache is per key")

	time.Sleep(r.RetryAfter + 10*time.Millisecond)
	r, _ = l.Allow(ctx, "ip")
	assert.True(t, r.Allowed, "after RetryAfter the store decides again")

	require.NoError(t, l.Reset(ctx, "ip"))
	_, _ = l.Allow(ctx, "ip")
	r, _ = l.Allow(ctx, "ip")
	require.False(t, r.Allowed)
	require.NoError(t, l.Reset(ctx, "ip"))
	r, _ = l.Allow(ctx, "ip")
	assert.True(t, r.Allowed, "Reset clears this instance's deny cache")
}

// TestFailurePolicies: with Redis refusing every command, each policy decides as documented,
// fallback is entered once and left once Redis answers again.
func TestFailurePolicies(t *testing.T) {
	m, s := miniStore(t, RedisConfig{RetryInterval: 20 * time.Millisecond})
	var mu sync.Mutex
	var events []string
	hooks := func(name string) Hooks {
		return Hooks{OnFallback: func(_ context.Context, entered bool, err error) {
			mu.Lock()
			defer mu.Unlock()
			if entered {
				assert.ErrorIs(t, err, ErrUnavailable)
				events = append(events, name+" entered")
			} else {
				events = append(events, name+" left")
			}
		}}
	}
	open := newLimiter(t, s, PerMinute(1), Config{Name: "open", FailurePolicy: FailOpen, Hooks: hooks("open")})
	closed := newLimiter(t, s, PerMinute(1), Config{Name: "closed", FailurePolicy: FailClosed, Hooks: hooks("closed")})
	local := newLimiter(t, s, PerMinute(1), Config{Name: "local", FallbackLimit: PerMinute(2), Hooks: hooks("local")})
	ctx := context.Background()

	m.SetError("ERR simulated outage")
	for range 3 {
		r, err := open.Allow(ctx, "k")
		require.NoError(t, err)
		assert.True(t, r.Allowed)
		r, err = closed.Allow(ctx, "k")
		assert.ErrorIs(t, err, ErrUnavailable)
		assert.False(t, r.Allowed)
	}
	var granted int
	for range 4 {
		r, err := local.Allow(ctx, "k")
		require.NoError(t, err)
		if r.Allowed {
			granted++
		}
	}
	assert.Equal(t, 2, granted, "the local fallback applies FallbackLimit")
	assert.True(t, local.Stats().Degraded)
	assert.Equal(t, uint64(4), local.Stats().Fallback)
	assert.True(t, s.Stats().Down)
	assert.Positive(t, s.Stats().FastFails, "calls during the outage did not all reach Redis")

	m.SetError("")
	time.Sleep(30 * time.Millisecond)
	require.Eventually(t, func() bool {
		r, err := closed.Allow(ctx, "k2")
		return err == nil && r.Allowed
	}, time.Second, 5*time.Millisecond)
	_, _ = open.Allow(ctx, "k2")
	_, _ = local.Allow(ctx, "k2")
	assert.False(t, local.Stats().Degraded)
	mu.Lock()
	assert.ElementsMatch(t, []string{"open entered", "closed entered", "local entered", "open left", "closed left", "local left"}, events)
	mu.Unlock()
}

// TestLayersWithMixedFailurePolicies: when the store is down, a FailClosed layer denies and the
// FailLocal layer of the same request is not charged locally.
func TestLayersWithMixedFailurePolicies(t *testing.T) {
	m, s := miniStore(t, RedisConfig{})
	global := newLimiter(t, s, PerMinute(3), Config{Name: "global"})
	login := newLimiter(t, s, PerMinute(3), Config{Name: "login", FailurePolicy: FailClosed})
	ctx := context.Background()
	m.SetError("ERR down")
	d, err := AllowAll(ctx, Layer{Limiter: global, Key: "ip"}, Layer{Limiter: login, Key: "ip"})
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.False(t, d.Allowed)
	assert.Equal(t, []string{"login"}, d.Denied)
	assert.Equal(t, -1, d.Results[0].Remaining, "the FailLocal layer beside a FailClosed one is not evaluated")
	assert.Equal(t, 3, take(t, s.local, req("global", "ip", PerMinute(3), 0))[0].Remaining, "the local fallback was not charged")
}

// TestBlackholedRedis: a Redis that accepts connections and never answers costs one Timeout
// (with FailFastAfter 1), then decisions fail fast, and nothing leaks (goleak in TestMain).
func TestBlackholedRedis(t *testing.T) {
	c := blackholeClient(t)
	s, err := NewRedisStore(c, RedisConfig{Timeout: 50 * time.Millisecond, RetryInterval: time.Hour, FailFastAfter: 1})
	require.NoError(t, err)
	l := newLimiter(t, s, PerMinute(10), Config{Name: "global"})
	ctx := context.Background()

	start := time.Now()
	r, err := l.Allow(ctx, "ip")
	first := time.Since(start)
	require.NoError(t, err)
	assert.True(t, r.Allowed, "FailLocal grants on the fallback")
	assert.Less(t, first, 250*time.Millisecond, "the first decision waits about Timeout, not ReadTimeout")

	start = time.Now()
	for range 100 {
		_, _ = l.Allow(ctx, "ip")
	}
	assert.Less(t, time.Since(start), 50*time.Millisecond, "later decisions do not wait for Redis")
	assert.Equal(t, uint64(1), s.Stats().Failures)
}

// blackholeClient returns a client of a server that accepts connections and never answers.
func blackholeClient(t *testing.T) *redis.Client {
	t.Helper()
	p := redistest.StartProxy(t, miniredis.RunT(t).Addr())
	p.Blackhole(true)
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), ReadTimeout: 300 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() {
		_ = c.Close()
		time.Sleep(400 * time.Millisecond) // abandoned calls end at the client's ReadTimeout
	})
	return c
}

// TestShortCallerDeadline: a caller whose deadline is shorter than the store's Timeout gets its
// context's error when it passes, and Redis is not counted as failing: the caller ran out of
// its own time.
func TestShortCallerDeadline(t *testing.T) {
	s, err := NewRedisStore(blackholeClient(t), RedisConfig{Timeout: time.Second, RetryInterval: time.Hour, FailFastAfter: 1})
	require.NoError(t, err)
	l := newLimiter(t, s, PerMinute(10), Config{Name: "global"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	r, err := l.Allow(ctx, "ip")
	assert.Less(t, time.Since(start), 500*time.Millisecond, "the caller's deadline bounds the call")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.False(t, r.Allowed, "an error comes with a denial")
	assert.False(t, s.Stats().Down)
	assert.Zero(t, s.Stats().Failures)
	assert.Zero(t, l.Stats().Fallback, "no failure policy applied")
}

// TestErrorsNeverGrant: on Redis too, every error comes with a denial, and a request stopped
// halfway over two stores gives back what the first store charged.
func TestErrorsNeverGrant(t *testing.T) {
	_, s := miniStore(t, RedisConfig{})
	login := newLimiter(t, s, PerMinute(5), Config{Name: "login", FailurePolicy: FailClosed})
	global := newLimiter(t, memStore(t), PerMinute(5), Config{Name: "global"})
	r, err := login.Allow(context.Background(), "")
	assert.ErrorIs(t, err, ErrInvalidRequest)
	assert.False(t, r.Allowed)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r, err = login.Allow(ctx, "ip")
	assert.Error(t, err)
	assert.False(t, r.Allowed)
	for range 5 {
		d, err := AllowAll(ctx, Layer{Limiter: global, Key: "ip"}, Layer{Limiter: login, Key: "ip"})
		assert.ErrorIs(t, err, context.Canceled)
		assert.False(t, d.Allowed)
		assert.Empty(t, d.Denied)
	}
	p, _ := global.Peek(context.Background(), "ip")
	assert.Equal(t, 5, p.Remaining, "the memory store was given back what it charged")
}

// TestSmallMaxKeysDoesNotEvictThrottledKeys: a small cap is not split into shards too small to
// hold their share of throttled keys.
func TestSmallMaxKeysDoesNotEvictThrottledKeys(t *testing.T) {
	s, err := NewMemoryStore(MemoryConfig{MaxKeys: 1000})
	require.NoError(t, err)
	l := newLimiter(t, s, PerHour(1), Config{})
	ctx := context.Background()
	for i := range 100 {
		r, _ := l.Allow(ctx, string(rune('a'+i%26))+string(rune('a'+i/26)))
		require.True(t, r.Allowed)
	}
	for i := range 100 {
		r, _ := l.Allow(ctx, string(rune('a'+i%26))+string(rune('a'+i/26)))
		assert.False(t, r.Allowed)
	}
	assert.Zero(t, s.Stats().Evicted)
}

// TestFallbackWithSmallerBurst: a local fallback with a smaller burst caps the cost instead of
// failing the request.
func TestFallbackWithSmallerBurst(t *testing.T) {
	m, s := miniStore(t, RedisConfig{})
	l := newLimiter(t, s, PerMinute(10), Config{Name: "api", FallbackLimit: PerMinute(2)})
	m.SetError("ERR down")
	r, err := l.AllowN(context.Background(), "k", 5)
	require.NoError(t, err)
	assert.True(t, r.Allowed)
	assert.Equal(t, "api", r.Policy)
	r, err = l.AllowN(context.Background(), "k", 5)
	require.NoError(t, err)
	assert.False(t, r.Allowed, "the fallback's 2 units are spent")
}

// TestCallerCancellationIsNotAnOutage: a request whose context ends is not a Redis failure.
func TestCallerCancellationIsNotAnOutage(t *testing.T) {
	_, s := miniStore(t, RedisConfig{})
	l := newLimiter(t, s, PerMinute(10), Config{FailurePolicy: FailClosed})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := l.Allow(ctx, "ip")
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.Canceled))
	assert.False(t, s.Stats().Down)
	r, err := l.Allow(context.Background(), "ip")
	require.NoError(t, err)
	assert.True(t, r.Allowed)
}

func TestStoreConfig(t *testing.T) {
	_, err := NewRedisStore(nil, RedisConfig{})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	for field, cfg := range map[string]RedisConfig{
		"RedisConfig.Prefix":        {Prefix: "a{b"},
		"RedisConfig.Timeout":       {Timeout: -1},
		"RedisConfig.FailFastAfter": {FailFastAfter: -1},
		"RedisConfig.RetryInterval": {RetryInterval: -1},
	} {
		_, err = NewRedisStore(c, cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, field)
		assert.ErrorContains(t, err, field)
	}
	_, err = NewMemoryStore(MemoryConfig{MaxKeys: -1})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	assert.ErrorContains(t, err, "MemoryConfig.MaxKeys")
}

// TestScriptReloadAfterFlush: a server that lost its scripts (restart, failover) is sent the
// source again, and the decision is charged once.
func TestScriptReloadAfterFlush(t *testing.T) {
	_, s := miniStore(t, RedisConfig{})
	l := newLimiter(t, s, PerMinute(5), Config{})
	ctx := context.Background()
	r, err := l.Allow(ctx, "ip")
	require.NoError(t, err)
	assert.Equal(t, 4, r.Remaining)
	require.NoError(t, s.rc.Redis().ScriptFlush(ctx).Err())
	r, err = l.Allow(ctx, "ip")
	require.NoError(t, err)
	assert.Equal(t, 3, r.Remaining, "charged once")
	d, err := AllowAll(ctx, Layer{Limiter: l, Key: "ip"}, Layer{Limiter: l, Key: "other"})
	require.NoError(t, err)
	assert.True(t, d.Allowed)
	require.NoError(t, s.rc.Redis().ScriptFlush(ctx).Err())
	s.holds = true // two phases, each pipelined
	d, err = AllowAll(ctx, Layer{Limiter: l, Key: "ip"}, Layer{Limiter: l, Key: "other"})
	require.NoError(t, err)
	assert.Equal(t, []int{1, 3}, []int{d.Results[0].Remaining, d.Results[1].Remaining}, "a pipeline is charged once too")
}
