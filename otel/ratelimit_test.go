package otel_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
	"github.com/outgrow/outgrow/ratelimit"
)

// TestLimiter: decisions are counted by policy and decision, and each adds a span event to
// the request's span.
func TestLimiter(t *testing.T) {
	h := newHarness(t)
	store, err := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
	require.NoError(t, err)
	login, err := ratelimit.New(store, ratelimit.Limit{Rate: 3, Period: time.Minute, Strict: true},
		ratelimit.Config{Name: "login", Hooks: h.tel.LimiterHooks("login", ratelimit.Hooks{})})
	require.NoError(t, err)
	reg, err := h.tel.ObserveLimiters(login)
	require.NoError(t, err)
	defer func() { require.NoError(t, reg.Unregister()) }()

	ctx, span := h.request(context.Background())
	for range 5 {
		_, err := login.Allow(ctx, "203.0.113.7")
		require.NoError(t, err)
	}
	span.End()

	ms := h.collect(t)
	assert.Equal(t, 3.0, value(t, ms, "outgrow.ratelimit.decisions", "outgrow.ratelimit.policy", "login", "outgrow.ratelimit.decision", "allowed"))
	assert.Equal(t, 2.0, value(t, ms, "outgrow.ratelimit.decisions", "outgrow.ratelimit.policy", "login", "outgrow.ratelimit.decision", "limited"))
	assert.Equal(t, 0.0, value(t, ms, "outgrow.ratelimit.degraded", "outgrow.ratelimit.policy", "login"))
	assert.Equal(t, 0.0, value(t, ms, "outgrow.ratelimit.store.errors", "outgrow.ratelimit.policy", "login"))
	assert.Equal(t, "{decision}", ms["outgrow.ratelimit.decisions"].Unit)
	assert.Equal(t, "{state}", ms["outgrow.ratelimit.degraded"].Unit)

	evs := h.events(t, "request")
	require.Len(t, evs, 5)
	assert.Equal(t, map[string]string{"event": "outgrow.ratelimit.decision", "outgrow.ratelimit.policy": "login",
		"outgrow.ratelimit.decision": "allowed"}, evs[0].attrs)
	assert.Equal(t, "limited", evs[4].attrs["outgrow.ratelimit.decision"])
	assert.NotEmpty(t, evs[4].attrs["outgrow.ratelimit.retry_after"])
	for _, e := range evs {
		assert.NotContains(t, e.attrs, "203.0.113.7", "no key in attributes")
		for _, v := range e.attrs {
			assert.NotContains(t, v, "203.0.113")
		}
	}

	// Unregistered, the limiter is no longer observed.
	require.NoError(t, reg.Unregister())
	_, seen := h.collect(t)["outgrow.ratelimit.decisions"]
	assert.False(t, seen)
}

// redisTarget returns the address of the Redis a fault test puts a proxy in front of: the real
// server of OUTGROW_REDIS_URL when it is set (as in CI), under a key prefix of the test's, else
// a fresh miniredis.
func redisTarget(t *testing.T) (addr, prefix string) {
	if os.Getenv(redistest.EnvURL) == "" {
		return miniredis.RunT(t).Addr(), "ratelimit:"
	}
	b := redistest.Open(t, redistest.Redis)
	return b.Client.(*redis.Client).Options().Addr, b.Prefix
}

// TestLimiterRedisOutage: while Redis swallows every request, a Redis-backed limiter reports
// its store errors, its fallback decisions and the degraded gauge, and adds the fallback event
// to the span of the request that saw the outage start; when Redis answers again, the gauge
// falls back to 0 and the event says so.
func TestLimiterRedisOutage(t *testing.T) {
	h := newHarness(t)
	target, prefix := redisTarget(t)
	proxy := redistest.StartProxy(t, target)
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	store, err := ratelimit.NewRedisStore(rdb, ratelimit.RedisConfig{Prefix: prefix, Timeout: 50 * time.Millisecond,
		RetryInterval: 50 * time.Millisecond, Logger: quiet})
	require.NoError(t, err)
	api, err := ratelimit.New(store, ratelimit.Limit{Rate: 100, Period: time.Minute},
		ratelimit.Config{Name: "api", FailurePolicy: ratelimit.FailOpen, Hooks: h.tel.LimiterHooks("api", ratelimit.Hooks{}),
			Logger: quiet})
	require.NoError(t, err)
	reg, err := h.tel.ObserveLimiters(api)
	require.NoError(t, err)
	defer func() { require.NoError(t, reg.Unregister()) }()

	allow := func(name string) {
		ctx, span := h.tp.Tracer("test").Start(context.Background(), name)
		defer span.End()
		r, err := api.Allow(ctx, "key")
		require.NoError(t, err)
		require.True(t, r.Allowed)
	}
	allow("before")
	proxy.Blackhole(true) // the connection stays open; nothing comes back
	allow("outage")
	for range 4 {
		allow("during")
	}
	ms := h.collect(t)
	assert.Equal(t, 1.0, value(t, ms, "outgrow.ratelimit.degraded", "outgrow.ratelimit.policy", "api"))
	assert.GreaterOrEqual(t, value(t, ms, "outgrow.ratelimit.store.errors", "outgrow.ratelimit.policy", "api"), 5.0)
	assert.Equal(t, 5.0, value(t, ms, "outgrow.ratelimit.fallback.decisions", "outgrow.ratelimit.policy", "api"))
	assert.Equal(t, 6.0, value(t, ms, "outgrow.ratelimit.decisions", "outgrow.ratelimit.policy", "api", "outgrow.ratelimit.decision", "allowed"))
	evs := h.events(t, "outage")
	require.Len(t, evs, 2, "the fallback, then the decision")
	assert.Equal(t, map[string]string{"event": "outgrow.ratelimit.fallback", "outgrow.ratelimit.policy": "api",
		"outgrow.ratelimit.entered": "true", "error.type": "timeout"}, evs[0].attrs)

	proxy.Blackhole(false)
	proxy.Cut()
	require.Eventually(t, func() bool {
		allow("after")
		return !api.Stats().Degraded
	}, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, 0.0, value(t, h.collect(t), "outgrow.ratelimit.degraded", "outgrow.ratelimit.policy", "api"))
	var left bool
	for _, e := range h.events(t, "after") {
		if e.attrs["event"] == "outgrow.ratelimit.fallback" {
			left = true
			assert.Equal(t, map[string]string{"event": "outgrow.ratelimit.fallback", "outgrow.ratelimit.policy": "api",
				"outgrow.ratelimit.entered": "false"}, e.attrs)
		}
	}
	assert.True(t, left, "leaving the failure policy is an event too")
}
