package cache

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

// The fault tests run instances on a private redis-server, some through a proxy that can
// freeze their connection, with short detection times.
const (
	faultTimeout = 100 * time.Millisecond
	faultPing    = 100 * time.Millisecond
	faultRetry   = 200 * time.Millisecond
	// slack is what a busy machine running the race detector may add to a bound.
	slack = 500 * time.Millisecond
)

// instance returns a RedisStore on a client of its own to addr (a private server, or a proxy
// in front of it), as another instance of a service would have. The client's ReadTimeout
// bounds how long Close waits for a subscription being made again on a frozen connection.
func instance(t *testing.T, addr string, ctxTimeout bool) *RedisStore {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{
		Addr: addr, MaxRetries: -1, DialTimeout: faultTimeout, ReadTimeout: time.Second,
		ContextTimeoutEnabled: ctxTimeout,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	s, err := NewRedisStore(rdb, RedisConfig{Timeout: faultTimeout, PingInterval: faultPing, RetryInterval: faultRetry, Logger: quietLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// warm makes b hold A's value of key in its local layer: it heard A's write, read the value
// from Redis, and the next read is a local hit.
func warm(t *testing.T, bs *RedisStore, b *Cache[string], key, want string, heard uint64) {
	t.Helper()
	require.Eventually(t, func() bool { return bs.Stats().Received >= heard }, 5*time.Second, time.Millisecond)
	v, err := b.Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, want, v)
	hits := b.Stats().LocalHits
	v, err = b.Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, want, v)
	require.Equal(t, hits+1, b.Stats().LocalHits, "in B's local layer")
}

// neverOldAfter reads key on c until d after since, and fails if a read that began later than
// bound after since returned old.
func neverOldAfter(t *testing.T, c *Cache[string], key, old string, since time.Time, bound, d time.Duration) {
	t.Helper()
	served := time.Duration(-1)
	for time.Since(since) < bound+d {
		began := time.Since(since)
		if v, err := c.Get(ctx, key); err == nil && v == old {
			served = began
			require.LessOrEqual(t, began, bound, "the old value served after the bound")
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("old value last served %v after the write (bound %v)", served, bound)
}

// Coherence with B's connection to Redis frozen mid-call (a blackhole: nothing reaches Redis,
// nothing comes back): once A's Set has returned, B serves the value it replaced at most until
// B notices that its subscription is lost (a PingInterval of silence, then one more for the
// PING), never later. What B loads from the source while it cannot hear, it serves for at most
// RetryInterval. Once the connection thaws, B serves A's values.
func TestCoherenceFrozenConnection(t *testing.T) {
	srv := redistest.StartServer(t, 0)
	proxy := redistest.StartProxy(t, srv.Addr())
	as, bs := instance(t, srv.Addr(), true), instance(t, proxy.Addr(), true)
	a, b := newCache[string](t, as, Config{}), newCache[string](t, bs, Config{})
	var source sync.Map
	load := func(_ context.Context, key string) (string, error) { v, _ := source.Load(key); return v.(string), nil }
	require.NoError(t, a.Set(ctx, "k", "old"))
	warm(t, bs, b, "k", "old", 1)

	// B is reading another key when its connection freezes.
	proxy.SetDelay(20 * time.Millisecond)
	inflight := make(chan error, 1)
	go func() { _, err := b.Get(ctx, "other"); inflight <- err }()
	time.Sleep(10 * time.Millisecond)
	proxy.Blackhole(true)
	proxy.SetDelay(0)

	require.NoError(t, a.Set(ctx, "k", "new"))
	neverOldAfter(t, b, "k", "old", time.Now(), 2*faultPing+slack, time.Second)
	require.ErrorIs(t, <-inflight, ErrNotFound, "the frozen call is answered without Redis")

	// B, deaf, loads a key from the source; then A changes it.
	source.Store("k2", "old")
	v, err := b.GetOrLoad(ctx, "k2", load)
	require.NoError(t, err)
	require.Equal(t, "old", v)
	source.Store("k2", "new")
	require.NoError(t, a.Set(ctx, "k2", "new"))
	neverOldAfter(t, b, "k2", "old", time.Now(), faultRetry+slack, time.Second)

	proxy.Blackhole(false)
	for _, k := range []string{"k", "k2"} {
		require.Eventually(t, func() bool { v, err := b.Get(ctx, k); return err == nil && v == "new" }, 5*time.Second, 5*time.Millisecond,
			"B reads A's value of %s once its connection thaws", k)
	}
}

// Coherence across a restart of Redis: B, which held the old value and loaded it again from
// the source while Redis was down, serves it at most RetryInterval after A's Set returns once
// Redis is back.
func TestCoherenceRedisRestart(t *testing.T) {
	srv := redistest.StartServer(t, 0)
	as, bs := instance(t, srv.Addr(), true), instance(t, srv.Addr(), true)
	a, b := newCache[string](t, as, Config{}), newCache[string](t, bs, Config{})
	var source sync.Map
	source.Store("k", "old")
	load := func(_ context.Context, key string) (string, error) { v, _ := source.Load(key); return v.(string), nil }
	require.NoError(t, a.Set(ctx, "k", "old"))
	warm(t, bs, b, "k", "old", 1)

	srv.Stop()
	require.Eventually(t, func() bool {
		v, err := b.GetOrLoad(ctx, "k", load)
		return err == nil && v == "old" && bs.Stats().Down
	}, 5*time.Second, time.Millisecond, "B serves the source's value during the outage")
	redistest.StartServer(t, srv.Port())
	source.Store("k", "new")
	require.Eventually(t, func() bool { return a.Set(ctx, "k", "new") == nil }, 10*time.Second, 5*time.Millisecond, "A writes once Redis is back")
	neverOldAfter(t, b, "k", "old", time.Now(), faultRetry+slack, time.Second)
	require.Eventually(t, func() bool { v, err := b.Get(ctx, "k"); return err == nil && v == "new" }, 5*time.Second, 5*time.Millisecond)
}
