package otel_test

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/breaker"
	"github.com/outgrow/outgrow/cache"
	"github.com/outgrow/outgrow/queue"
	"github.com/outgrow/outgrow/ratelimit"
)

// TestHotPathsAllocateNothing: with metrics on, a successful call through a closed breaker, a
// memory limiter decision and a local cache hit (over a MemoryStore or in front of a
// RedisStore) allocate nothing in a request without a recording span
// (benchmarks/otel_test.go measures what they cost in time).
func TestHotPathsAllocateNothing(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()

	b, err := breaker.New(breaker.Config{Name: "db", Logger: quiet, Hooks: h.tel.BreakerHooks(breaker.Hooks{})})
	require.NoError(t, err)
	_, err = h.tel.ObserveBreakers(b)
	require.NoError(t, err)
	call := func() {
		tok, err := b.Allow(ctx)
		if err == nil {
			tok.Done(nil)
		}
	}
	call() // the first call of a name builds its attribute sets
	assert.Zero(t, testing.AllocsPerRun(100, call), "breaker")

	store, err := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
	require.NoError(t, err)
	l, err := ratelimit.New(store, ratelimit.PerSecond(1e6), ratelimit.Config{Name: "api", Hooks: h.tel.LimiterHooks("api", ratelimit.Hooks{})})
	require.NoError(t, err)
	_, err = h.tel.ObserveLimiters(l)
	require.NoError(t, err)
	_, _ = l.Allow(ctx, "k")
	assert.Zero(t, testing.AllocsPerRun(100, func() { _, _ = l.Allow(ctx, "k") }), "limiter")
	secret, err := ratelimit.New(store, ratelimit.PerSecond(1e6), ratelimit.Config{Name: "apikey", SecretKeys: true,
		Hooks: h.tel.LimiterHooks("apikey", ratelimit.Hooks{})})
	require.NoError(t, err)
	_, _ = secret.Allow(ctx, "sk_live_1")
	assert.Zero(t, testing.AllocsPerRun(100, func() { _, _ = secret.Allow(ctx, "sk_live_1") }), "limiter with SecretKeys: no digest")

	cstore, err := cache.NewMemoryStore(cache.MemoryConfig{})
	require.NoError(t, err)
	c, err := cache.New[string](cstore, cache.Config{Policy: cache.Policy{TTL: time.Hour}, Hooks: h.tel.CacheHooks("c", cache.Hooks{})})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = h.tel.ObserveCache("c", c)
	require.NoError(t, err)
	require.NoError(t, c.Set(ctx, "k", "v"))
	assert.Zero(t, testing.AllocsPerRun(100, func() { _, _ = c.Get(ctx, "k") }), "cache hit")

	// The local layer in front of a RedisStore: the L1 hit of a shared cache.
	rdb := redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	rstore, err := cache.NewRedisStore(rdb, cache.RedisConfig{Logger: quiet})
	require.NoError(t, err)
	rc, err := cache.New[string](rstore, cache.Config{Policy: cache.Policy{TTL: time.Hour}, Logger: quiet,
		Hooks: h.tel.CacheHooks("shared", cache.Hooks{})})
	require.NoError(t, err)
	t.Cleanup(func() { _ = rc.Close(); _ = rstore.Close() })
	_, err = h.tel.ObserveCache("shared", rc)
	require.NoError(t, err)
	_, err = h.tel.ObserveCacheStore("redis", rstore)
	require.NoError(t, err)
	require.NoError(t, rc.Set(ctx, "k", "v"))
	_, err = rc.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, uint64(1), rc.Stats().LocalHits)
	assert.Zero(t, testing.AllocsPerRun(100, func() { _, _ = rc.Get(ctx, "k") }), "L1 hit over Redis")
	assert.Equal(t, uint64(102), rc.Stats().LocalHits, "every Get was an L1 hit")
}

// TestQueueHooksAllocateNothing: the queue hooks measure with attribute sets built once per
// queue, not per call.
func TestQueueHooksAllocateNothing(t *testing.T) {
	h := newHarness(t)
	hooks := h.tel.QueueHooks(queue.Hooks{})
	ctx := context.Background()
	d := &queue.Delivery{Queue: "emails"}
	hooks.OnEnqueue(ctx, "emails", "id")
	hooks.OnDone(ctx, d, time.Millisecond, nil, time.Time{})
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		hooks.OnEnqueue(ctx, "emails", "id")
		hooks.OnDone(ctx, d, time.Millisecond, nil, time.Time{})
		hooks.OnLeaseLost(ctx, d)
	}))
}
