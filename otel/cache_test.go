package otel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/outgrow/outgrow/cache"
	"github.com/outgrow/outgrow/internal/redistest"
)

// TestCache: two instances share a Redis (miniredis, and the real servers redistest is
// given); lookups are counted by result and layer, loads by
// result with their durations, and become child spans of the request; announcements are
// counted sent on one instance and received on the other.
func TestCache(t *testing.T) {
	for _, k := range redistest.Kinds() {
		if k != redistest.Memory {
			t.Run(string(k), func(t *testing.T) { testCache(t, redistest.Open(t, k)) })
		}
	}
}

func testCache(t *testing.T, b redistest.Backend) {
	h := newHarness(t)
	instance := func() (*cache.RedisStore, *cache.Cache[string]) {
		store, err := cache.NewRedisStore(b.NewClient(t), cache.RedisConfig{Prefix: b.Prefix, Logger: quiet})
		require.NoError(t, err)
		c, err := cache.New[string](store, cache.Config{Namespace: "products", Logger: quiet,
			Hooks: h.tel.CacheHooks("products", cache.Hooks{})})
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close(); _ = store.Close() })
		return store, c
	}
	storeA, a := instance()
	storeB, bc := instance()
	for name, c := range map[string]*cache.Cache[string]{"a": a, "b": bc} {
		reg, err := h.tel.ObserveCache("products-"+name, c)
		require.NoError(t, err)
		t.Cleanup(func() { _ = reg.Unregister() })
	}
	for name, s := range map[string]*cache.RedisStore{"a": storeA, "b": storeB} {
		reg, err := h.tel.ObserveCacheStore(name, s)
		require.NoError(t, err)
		t.Cleanup(func() { _ = reg.Unregister() })
	}

	ctx, span := h.request(context.Background())
	load := func(_ context.Context, key string) (string, error) {
		time.Sleep(3 * time.Millisecond)
		if key == "404" {
			return "", cache.ErrNotFound
		}
		if key == "boom" {
			return "", errors.New("database down")
		}
		return "product " + key, nil
	}
	v, err := a.GetOrLoad(ctx, "1", load) // miss, loaded
	require.NoError(t, err)
	require.Equal(t, "product 1", v)
	_, err = a.GetOrLoad(ctx, "1", load) // local hit
	require.NoError(t, err)
	_, err = a.GetOrLoad(ctx, "404", load)
	require.ErrorIs(t, err, cache.ErrNotFound)
	_, err = a.GetOrLoad(ctx, "boom", load)
	require.Error(t, err)
	_, err = bc.Get(ctx, "1") // remote hit
	require.NoError(t, err)
	require.NoError(t, a.Set(ctx, "1", "product 1, renamed"))
	span.End()
	require.Eventually(t, func() bool { return storeB.Stats().Received > 0 }, 5*time.Second, 5*time.Millisecond)

	ms := h.collect(t)
	lookup := func(c, result string, layer ...string) float64 {
		kv := []string{"outgrow.cache.name", c, "outgrow.cache.result", result}
		if len(layer) > 0 {
			kv = append(kv, "outgrow.cache.layer", layer[0])
		}
		return value(t, ms, "outgrow.cache.lookups", kv...)
	}
	assert.Equal(t, 1.0, lookup("products-a", "hit", "local"))
	assert.Equal(t, 0.0, lookup("products-a", "hit", "remote"))
	assert.Equal(t, 1.0, lookup("products-b", "hit", "remote"))
	assert.Equal(t, 3.0, lookup("products-a", "miss"))
	assert.Equal(t, 2.0, value(t, ms, "outgrow.cache.loads", "outgrow.cache.name", "products-a", "outgrow.cache.result", "ok"), "not found is a load that worked")
	assert.Equal(t, 1.0, value(t, ms, "outgrow.cache.loads", "outgrow.cache.name", "products-a", "outgrow.cache.result", "error"))
	for _, r := range []string{"ok", "not_found", "error"} {
		assert.Equal(t, 1.0, value(t, ms, "outgrow.cache.load.duration", "outgrow.cache.name", "products", "outgrow.cache.result", r))
	}
	assert.Equal(t, "s", ms["outgrow.cache.load.duration"].Unit)
	assert.Positive(t, value(t, ms, "outgrow.cache.local.entries", "outgrow.cache.name", "products-a"))
	assert.Equal(t, "By", ms["outgrow.cache.local.size"].Unit)
	assert.Positive(t, value(t, ms, "outgrow.cache.local.size", "outgrow.cache.name", "products-a"))
	assert.GreaterOrEqual(t, value(t, ms, "outgrow.cache.coherence.messages", "outgrow.store", "a", "outgrow.cache.direction", "sent"), 1.0)
	assert.GreaterOrEqual(t, value(t, ms, "outgrow.cache.coherence.messages", "outgrow.store", "b", "outgrow.cache.direction", "received"), 1.0)
	assert.Equal(t, 1.0, value(t, ms, "outgrow.cache.store.reads", "outgrow.store", "b", "outgrow.cache.result", "hit"))
	assert.Equal(t, 0.0, value(t, ms, "outgrow.cache.store.down", "outgrow.store", "a"))

	// The loads are spans, children of the request, timed as the loader ran.
	var request, loads = h.spans.Ended()[len(h.spans.Ended())-1], 0
	require.Equal(t, "request", request.Name())
	for _, s := range h.spans.Ended() {
		if s.Name() != "outgrow.cache.load" {
			continue
		}
		loads++
		assert.Equal(t, request.SpanContext().SpanID(), s.Parent().SpanID())
		assert.GreaterOrEqual(t, s.EndTime().Sub(s.StartTime()), 3*time.Millisecond)
		assert.False(t, s.StartTime().Before(request.StartTime()))
		for _, kv := range s.Attributes() {
			if kv.Key == "outgrow.cache.result" && kv.Value.AsString() == "error" {
				assert.Equal(t, codes.Error, s.Status().Code)
			}
		}
	}
	assert.Equal(t, 3, loads)
}

// TestCacheStoreError: a failed call to Redis (a read, which goes on without it) adds the store_error event to the request's span
// and counts in outgrow.cache.store.errors.
func TestCacheStoreError(t *testing.T) {
	h := newHarness(t)
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	store, err := cache.NewRedisStore(rdb, cache.RedisConfig{Logger: quiet})
	require.NoError(t, err)
	c, err := cache.New[string](store, cache.Config{Logger: quiet, Hooks: h.tel.CacheHooks("flags", cache.Hooks{})})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(); _ = store.Close() })
	reg, err := h.tel.ObserveCacheStore("redis", store)
	require.NoError(t, err)
	t.Cleanup(func() { _ = reg.Unregister() })

	mr.SetError("LOADING Redis is loading the dataset in memory")
	ctx, span := h.request(context.Background())
	_, err = c.Get(ctx, "dark-mode")
	span.End()
	require.ErrorIs(t, err, cache.ErrNotFound, "reads go on without Redis")
	evs := h.events(t, "request")
	require.NotEmpty(t, evs)
	assert.Equal(t, map[string]string{"event": "outgrow.cache.store_error", "outgrow.cache.name": "flags",
		"error.type": "unavailable"}, evs[0].attrs)
	assert.GreaterOrEqual(t, value(t, h.collect(t), "outgrow.cache.store.errors", "outgrow.store", "redis"), 1.0)
}

// TestCacheLoadSpanAndStale: the span of a load is timed as the loader ran; a stale value served adds
// outgrow.cache.stale to the request's span, saying whether its refresh failed.
func TestCacheLoadSpanAndStale(t *testing.T) {
	h := newHarness(t)
	store, err := cache.NewMemoryStore(cache.MemoryConfig{})
	require.NoError(t, err)
	c, err := cache.New[string](store, cache.Config{Logger: quiet,
		Policy: cache.Policy{TTL: 20 * time.Millisecond, StaleIfError: time.Hour},
		Hooks:  h.tel.CacheHooks("quotes", cache.Hooks{})})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })

	var entered, left time.Time
	ctx, span := h.request(context.Background())
	called := time.Now()
	_, err = c.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) {
		entered = time.Now()
		time.Sleep(5 * time.Millisecond)
		left = time.Now()
		return "v", nil
	})
	returned := time.Now()
	require.NoError(t, err)
	time.Sleep(30 * time.Millisecond) // expired: a failing load serves the stale value
	v, err := c.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) { return "", errors.New("database down") })
	require.NoError(t, err)
	require.Equal(t, "v", v)
	span.End()

	var loads []sdktrace.ReadOnlySpan
	for _, s := range h.spans.Ended() {
		if s.Name() == "outgrow.cache.load" {
			loads = append(loads, s)
		}
	}
	require.Len(t, loads, 2)
	first := loads[0]
	// The hook runs once the loader has returned, so the span ends when the hook starts (a
	// few microseconds after the loader returned, before GetOrLoad does) and lasts as long as
	// the loader ran.
	assert.False(t, first.StartTime().Before(called), "starts within GetOrLoad")
	assert.False(t, first.EndTime().Before(left), "ends once the loader returned")
	assert.False(t, first.EndTime().After(returned), "ends before GetOrLoad returned")
	assert.InDelta(t, left.Sub(entered), first.EndTime().Sub(first.StartTime()), float64(time.Millisecond), "lasts as the loader ran")
	assert.Less(t, first.StartTime().Sub(entered), time.Millisecond, "starts when the loader was called")
	assert.Equal(t, codes.Error, loads[1].Status().Code)

	evs := h.events(t, "request")
	require.Len(t, evs, 1)
	assert.Equal(t, map[string]string{"event": "outgrow.cache.stale", "outgrow.cache.name": "quotes",
		"outgrow.cache.refresh_failed": "true"}, evs[0].attrs)
}
