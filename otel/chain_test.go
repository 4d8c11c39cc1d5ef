package otel_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/cache"
	"github.com/outgrow/outgrow/health"
	"github.com/outgrow/outgrow/ratelimit"
	"github.com/outgrow/outgrow/session"
)

// TestHooksChain: the Hooks given to LimiterHooks, CacheHooks, SessionHooks and HealthHooks
// are still called, once per event and with what the component passed, while the Telemetry
// records too.
func TestHooksChain(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()

	t.Run("limiter", func(t *testing.T) {
		var allowed, limited []string
		store, err := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
		require.NoError(t, err)
		l, err := ratelimit.New(store, ratelimit.Limit{Rate: 1, Period: time.Minute, Strict: true}, ratelimit.Config{Name: "login",
			Hooks: h.tel.LimiterHooks("login", ratelimit.Hooks{
				OnAllowed: func(_ context.Context, key string, r ratelimit.Result) { allowed = append(allowed, key) },
				OnLimited: func(_ context.Context, key string, r ratelimit.Result) {
					limited = append(limited, key)
					assert.Positive(t, r.RetryAfter)
				},
			})})
		require.NoError(t, err)
		for range 2 {
			_, err = l.Allow(ctx, "203.0.113.7")
			require.NoError(t, err)
		}
		assert.Equal(t, []string{"203.0.113.7"}, allowed)
		assert.Equal(t, []string{"203.0.113.7"}, limited)
	})

	t.Run("limiter fallback", func(t *testing.T) {
		mr := miniredis.RunT(t)
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
		t.Cleanup(func() { _ = rdb.Close() })
		store, err := ratelimit.NewRedisStore(rdb, ratelimit.RedisConfig{Logger: quiet})
		require.NoError(t, err)
		var entered []bool
		l, err := ratelimit.New(store, ratelimit.PerMinute(10), ratelimit.Config{Name: "api", FailurePolicy: ratelimit.FailOpen, Logger: quiet,
			Hooks: h.tel.LimiterHooks("api", ratelimit.Hooks{OnFallback: func(_ context.Context, in bool, err error) {
				entered = append(entered, in)
				assert.Equal(t, in, err != nil)
			}})})
		require.NoError(t, err)
		mr.SetError("LOADING Redis is loading the dataset in memory")
		_, err = l.Allow(ctx, "k")
		require.NoError(t, err)
		mr.SetError("")
		require.Eventually(t, func() bool {
			_, _ = l.Allow(ctx, "k")
			return len(entered) == 2
		}, 5*time.Second, 10*time.Millisecond)
		assert.Equal(t, []bool{true, false}, entered)
	})

	t.Run("cache", func(t *testing.T) {
		var loads, stale, storeErrors int
		mr := miniredis.RunT(t)
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
		t.Cleanup(func() { _ = rdb.Close() })
		store, err := cache.NewRedisStore(rdb, cache.RedisConfig{Logger: quiet})
		require.NoError(t, err)
		c, err := cache.New[string](store, cache.Config{Logger: quiet, Policy: cache.Policy{TTL: 20 * time.Millisecond, StaleWhileRevalidate: time.Hour},
			Hooks: h.tel.CacheHooks("chain", cache.Hooks{
				OnLoad: func(_ context.Context, key string, took time.Duration, err error) {
					loads++
					assert.Equal(t, "k", key)
					assert.Positive(t, took)
				},
				OnStale:      func(context.Context, string, error) { stale++ },
				OnStoreError: func(_ context.Context, err error) { storeErrors++; assert.Error(t, err) },
			})})
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close(); _ = store.Close() })
		load := func(context.Context, string) (string, error) { return "v", nil }
		_, err = c.GetOrLoad(ctx, "k", load)
		require.NoError(t, err)
		time.Sleep(30 * time.Millisecond)
		_, err = c.GetOrLoad(ctx, "k", load) // stale, refreshed in the background
		require.NoError(t, err)
		require.Eventually(t, func() bool { return c.Stats().Loads == 2 }, 5*time.Second, 5*time.Millisecond)
		mr.SetError("LOADING Redis is loading the dataset in memory")
		_, _ = c.Get(ctx, "other")
		assert.Equal(t, 2, loads)
		assert.Equal(t, 1, stale)
		assert.Positive(t, storeErrors)
	})

	t.Run("session", func(t *testing.T) {
		mr := miniredis.RunT(t)
		rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
		t.Cleanup(func() { _ = rdb.Close() })
		store, err := session.NewRedisStore(rdb, session.RedisConfig{Logger: quiet})
		require.NoError(t, err)
		var errs []error
		sm, err := session.New(store, session.Config{Logger: quiet, Hooks: h.tel.SessionHooks(session.Hooks{
			OnStoreError: func(_ context.Context, err error) { errs = append(errs, err) }})})
		require.NoError(t, err)
		mux := http.NewServeMux()
		mux.HandleFunc("POST /login", func(_ http.ResponseWriter, r *http.Request) {
			require.NoError(t, session.FromContext(r.Context()).Login("ada"))
		})
		rec := httptest.NewRecorder()
		sm.Middleware(mux).ServeHTTP(rec, httptest.NewRequest("POST", "/login", nil))
		require.NotEmpty(t, rec.Result().Cookies())
		mr.SetError("READONLY You can't write against a read only replica.")
		req := httptest.NewRequest("GET", "/", nil)
		req.AddCookie(rec.Result().Cookies()[0])
		sm.Middleware(mux).ServeHTTP(httptest.NewRecorder(), req)
		require.Len(t, errs, 1)
		assert.ErrorIs(t, errs[0], session.ErrUnavailable)
	})

	t.Run("health", func(t *testing.T) {
		var runs []string
		var changes, statuses int
		c, err := health.New(health.Config{Logger: quiet, Hooks: h.tel.HealthHooks(health.Hooks{
			OnCheckDone:    func(_ context.Context, name string, _ time.Duration, err error) { runs = append(runs, name) },
			OnCheckChange:  func(context.Context, string, health.State, health.State) { changes++ },
			OnStatusChange: func(context.Context, health.Status, health.Status) { statuses++ },
		})}, health.Check{Name: "db", Func: func(context.Context) error { return nil }})
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		_, err = c.Refresh(ctx)
		require.NoError(t, err)
		require.NoError(t, c.Close())
		assert.NotEmpty(t, runs)
		assert.Equal(t, "db", runs[0])
		assert.Positive(t, changes)
		assert.Positive(t, statuses)
	})
}
