package cache

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
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

// With B's connection frozen, every call on B returns within its bound (RedisConfig.Timeout),
// answered by the local layer or the loader, or with ErrUnavailable for a write; with either
// way of bounding a call (ContextTimeoutEnabled or not).
func TestBoundWhenFrozen(t *testing.T) {
	for _, mode := range []struct {
		name       string
		ctxTimeout bool
	}{{"goroutine", false}, {"context", true}} {
		t.Run(mode.name, func(t *testing.T) {
			srv := redistest.StartServer(t, 0)
			proxy := redistest.StartProxy(t, srv.Addr())
			as, bs := instance(t, srv.Addr(), true), instance(t, proxy.Addr(), mode.ctxTimeout)
			a, b := newCache[string](t, as, Config{}), newCache[string](t, bs, Config{})
			require.NoError(t, b.Set(ctx, "local", "mine"))
			require.NoError(t, a.Set(ctx, "remote", "theirs"))
			require.Eventually(t, func() bool { return bs.Stats().Received == 1 }, 5*time.Second, time.Millisecond)
			proxy.Blackhole(true)

			within := func(bound time.Duration, what string, fn func()) {
				t.Helper()
				t0 := time.Now()
				fn()
				assert.Less(t, time.Since(t0), bound, what)
			}
			within(slack, "a local hit", func() {
				v, err := b.Get(ctx, "local")
				assert.NoError(t, err)
				assert.Equal(t, "mine", v)
			})
			within(faultTimeout+slack, "Get of a key only Redis holds", func() {
				_, err := b.Get(ctx, "remote")
				assert.ErrorIs(t, err, ErrNotFound)
			})
			within(faultTimeout+slack, "GetOrLoad", func() {
				v, err := b.GetOrLoad(ctx, "cold", func(context.Context, string) (string, error) { return "loaded", nil })
				assert.NoError(t, err)
				assert.Equal(t, "loaded", v)
			})
			within(faultTimeout+slack, "GetMany", func() {
				got, err := b.GetMany(ctx, []string{"remote", "x"})
				assert.NoError(t, err)
				assert.Empty(t, got)
			})
			within(faultTimeout+slack, "Set", func() { assert.ErrorIs(t, b.Set(ctx, "w", "v"), ErrUnavailable) })
			within(faultTimeout+slack, "Delete", func() { assert.ErrorIs(t, b.Delete(ctx, "w"), ErrUnavailable) })
		})
	}
}

// One load per key across the fleet, with the lease holder frozen: A takes the lease and
// loads, then its connection freezes, so that it can neither extend its lease nor fill it. B
// and C wait only until the lease runs out (a lease period, not LoadTimeout), then one of
// them loads for both. A's load, finishing once its connection thaws, stores nothing over B's
// or C's value.
func TestFleetSingleFlightHolderFrozen(t *testing.T) {
	const loadTimeout = 5 * time.Second
	srv := redistest.StartServer(t, 0)
	proxy := redistest.StartProxy(t, srv.Addr())
	as := instance(t, proxy.Addr(), true)
	a := newCache[string](t, as, Config{LoadTimeout: loadTimeout})
	caches := []*Cache[string]{
		newCache[string](t, instance(t, srv.Addr(), true), Config{LoadTimeout: loadTimeout}),
		newCache[string](t, instance(t, srv.Addr(), true), Config{LoadTimeout: loadTimeout}),
	}
	lease := min(loadTimeout, leasePeriod) + faultTimeout

	started, release := make(chan struct{}), make(chan struct{})
	fromA := make(chan result, 1)
	go func() {
		v, err := a.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) {
			close(started)
			<-release
			return "from A", nil
		})
		fromA <- result{v: v, err: err}
	}()
	<-started
	time.Sleep(lease / 2) // A has extended its lease once
	proxy.Blackhole(true)
	frozen := time.Now()

	var loads atomic.Int32
	var wg sync.WaitGroup
	for i, c := range caches {
		for range 10 {
			wg.Go(func() {
				v, err := c.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) {
					loads.Add(1)
					return "from the others", nil
				})
				assert.NoError(t, err, "instance %d", i)
				assert.Equal(t, "from the others", v, "instance %d", i)
			})
		}
	}
	wg.Wait()
	took := time.Since(frozen)
	assert.Equal(t, int32(1), loads.Load(), "one load among the instances that can reach Redis")
	assert.Less(t, took, lease+slack, "waited past the frozen holder's lease")
	t.Logf("served %v after the holder froze (lease %v)", took, lease)

	proxy.Blackhole(false)
	require.Eventually(t, func() bool { return !as.Stats().Down }, 5*time.Second, time.Millisecond, "A reaches Redis again")
	close(release)
	r := await(t, fromA, loadTimeout+5*time.Second, "A's load")
	require.NoError(t, r.err)
	assert.Equal(t, "from A", r.v, "A's callers get what A loaded")
	assert.Equal(t, uint64(1), a.Stats().LostFills, "A's fill was refused")
	fresh := newCache[string](t, instance(t, srv.Addr(), true), Config{})
	v, err := fresh.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "from the others", v, "Redis holds the others' value")
	require.Eventually(t, func() bool { v, err := a.Get(ctx, "k"); return err == nil && v == "from the others" }, 5*time.Second, 5*time.Millisecond,
		"A serves it once it hears again")

}
