package cache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

// redisBackends runs fn on every Redis backend (not memory).
func redisBackends(t *testing.T, fn func(t *testing.T, fx *fixture)) {
	each(t, func(t *testing.T, fx *fixture) {
		if fx.b.Client == nil {
			t.Skip("needs Redis")
		}
		fn(t, fx)
	})
}

// realRedis returns the fixture of the real standalone Redis, skipping without one.
func realRedis(t *testing.T) *fixture {
	if os.Getenv(redistest.EnvURL) == "" {
		t.Skip("needs a real Redis: set " + redistest.EnvURL + " (.ci/run does)")
	}
	return &fixture{t: t, b: redistest.Open(t, redistest.Redis), clock: newFakeClock()}
}

// Fleet single flight: 8 instances x 50 goroutines miss one cold key; the loader runs once.
func TestFleetSingleFlight(t *testing.T) {
	redisBackends(t, func(t *testing.T, fx *fixture) {
		var calls atomic.Int32
		load := func(ctx context.Context, key string) (string, error) {
			calls.Add(1)
			time.Sleep(50 * time.Millisecond)
			return "value", nil
		}
		caches := make([]*Cache[string], 8)
		for i := range caches {
			caches[i] = newCache[string](t, fx.store(), Config{})
		}
		var wg sync.WaitGroup
		var failures atomic.Int32
		startGun := make(chan struct{})
		for _, c := range caches {
			for range 50 {
				wg.Go(func() {
					<-startGun
					v, err := c.GetOrLoad(ctx, "cold", load)
					if err != nil || v != "value" {
						failures.Add(1)
					}
				})
			}
		}
		close(startGun)
		wg.Wait()
		assert.Equal(t, int32(0), failures.Load())
		assert.Equal(t, int32(1), calls.Load(), "one load in the whole fleet")
	})
}

// Coherence: after a Set returns on A, B stops serving the old value within milliseconds.
func TestCoherenceLatency(t *testing.T) {
	fx := realRedis(t)
	a := newCache[int](t, fx.store(), Config{})
	bs := fx.store().(*RedisStore)
	b := newCache[int](t, bs, Config{})
	const rounds = 200
	lat := make([]time.Duration, 0, rounds)
	require.NoError(t, a.Set(ctx, "k", 0))
	for i := 1; i <= rounds; i++ {
		// B has heard every write so far, and holds the current value in its local layer.
		require.Eventually(t, func() bool { return bs.Stats().Received == uint64(i) }, 5*time.Second, 50*time.Microsecond)
		require.Eventually(t, func() bool { v, err := b.Get(ctx, "k"); return err == nil && v == i-1 }, 5*time.Second, 50*time.Microsecond)
		hits := b.Stats().LocalHits
		_, _ = b.Get(ctx, "k")
		require.Greater(t, b.Stats().LocalHits, hits, "served from B's local layer")

		require.NoError(t, a.Set(ctx, "k", i))
		t0 := time.Now()
		for {
			v, err := b.Get(ctx, "k")
			require.NoError(t, err)
			if v == i {
				break
			}
			require.Less(t, time.Since(t0), 5*time.Second, "B never saw the write")
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("B stops serving the old value after A's Set returns: p50 %v, p99 %v, max %v", p50, p99, lat[len(lat)-1])
	assert.Less(t, p99, 100*time.Millisecond)
}

// A lost subscription may have lost announcements: the local layer is flushed when it is
// made again, so B never serves what A changed meanwhile.
func TestResubscribeFlushes(t *testing.T) {
	fx := realRedis(t)
	opt, err := redis.ParseURL(os.Getenv(redistest.EnvURL))
	require.NoError(t, err)
	name := "outgrow-test-b-" + strconv.Itoa(rand.IntN(1e9))
	opt.ClientName = name
	bClient := redis.NewClient(opt)
	t.Cleanup(func() { _ = bClient.Close() })

	a := newCache[string](t, fx.store(), Config{})
	bs, err := NewRedisStore(bClient, RedisConfig{Prefix: fx.b.Prefix, Logger: quietLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = bs.Close() })
	b := newCache[string](t, bs, Config{})

	const keys = 20
	for i := range keys {
		require.NoError(t, a.Set(ctx, fmt.Sprint("k", i), "old"))
	}
	require.Eventually(t, func() bool { return bs.Stats().Received == keys }, 5*time.Second, time.Millisecond)
	for i := range keys {
		v, err := b.Get(ctx, fmt.Sprint("k", i))
		require.NoError(t, err)
		require.Equal(t, "old", v)
	}

	// Kill B's subscriber connection, and change every key while B cannot hear.
	require.Equal(t, 1, redistest.KillSubscriptions(t, fx.b.Client, name), "B's subscriber connection")
	for i := range keys {
		require.NoError(t, a.Set(ctx, fmt.Sprint("k", i), "new"))
	}
	require.Eventually(t, func() bool { return bs.Stats().Flushes >= 1 }, 5*time.Second, time.Millisecond)
	for i := range keys {
		v, err := b.Get(ctx, fmt.Sprint("k", i))
		require.NoError(t, err)
		assert.Equal(t, "new", v, "stale read after the subscription came back")
	}
}

// Stale-fill torture: loads race writers that update the source, then Delete. Whatever the
// interleaving, no layer of any instance keeps the old value once the dust settles.
func TestStaleFillTorture(t *testing.T) {
	redisBackends(t, func(t *testing.T, fx *fixture) {
		iterations := 2000
		if fx.b.Mini != nil {
			iterations = 300
		}
		as := fx.store()
		a := newCache[int](t, as, Config{})
		b := newCache[int](t, fx.store(), Config{})
		var db sync.Map // key -> current version in the source
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		for i := range iterations {
			key := fmt.Sprint("k", i)
			db.Store(key, 1)
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				var inner sync.WaitGroup
				inner.Go(func() {
					_, _ = a.GetOrLoad(ctx, key, func(ctx context.Context, key string) (int, error) {
						v, _ := db.Load(key)
						time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
						return v.(int), nil
					})
				})
				inner.Go(func() {
					time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
					db.Store(key, 2)
					assert.NoError(t, b.Delete(ctx, key))
				})
				inner.Wait()
			})
		}
		wg.Wait()
		// Every Delete of B reached A.
		require.Eventually(t, func() bool { return received(as) >= uint64(iterations) }, 10*time.Second, time.Millisecond)
		fresh := newCache[int](t, fx.store(), Config{})
		stale := 0
		for i := range iterations {
			key := fmt.Sprint("k", i)
			for _, c := range []*Cache[int]{a, b, fresh} {
				if v, err := c.Get(ctx, key); err == nil && v != 2 {
					stale++
				}
			}
		}
		assert.Zero(t, stale, "stale entries persisted")
		t.Logf("%d iterations; fills lost to a Delete: %d", iterations, a.Stats().LostFills)
	})
}

// Redis stopped and restarted under load: reads never fail (local layer, then the loader),
// writes report ErrUnavailable, and the cache uses Redis again once it is back.
func TestRedisOutage(t *testing.T) {
	srv := redistest.StartServer(t, 0)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	s, err := NewRedisStore(rdb, RedisConfig{RetryInterval: 100 * time.Millisecond, Logger: quietLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	var storeErrs atomic.Int32
	c := newCache[string](t, s, Config{Hooks: Hooks{OnStoreError: func(context.Context, error) { storeErrs.Add(1) }}})
	load := func(ctx context.Context, key string) (string, error) { return "v:" + key, nil }

	var stop atomic.Bool
	var failures, reads atomic.Int64
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				key := fmt.Sprint("k", (i*7+g)%200)
				v, err := c.GetOrLoad(ctx, key, load)
				reads.Add(1)
				if err != nil || v != "v:"+key {
					failures.Add(1)
				}
				time.Sleep(100 * time.Microsecond)
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	srv.Stop()
	time.Sleep(100 * time.Millisecond)
	err = c.Set(ctx, "w", "x")
	require.ErrorIs(t, err, ErrUnavailable, "a write reports the outage")
	_, err = c.Get(ctx, "w")
	require.ErrorIs(t, err, ErrNotFound, "and leaves nothing local that the fleet cannot see")
	time.Sleep(300 * time.Millisecond)
	down := storeErrs.Load()
	// Taken while Redis is down (nothing is read from it): once it is back, the flush sends
	// the readers to Redis again, maybe before StartServer even returns.
	remote := s.Stats().Hits + s.Stats().Misses
	redistest.StartServer(t, srv.Port())
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		st := s.Stats()
		assert.Greater(ct, st.Hits+st.Misses, remote+10, "back on Redis")
		assert.GreaterOrEqual(ct, st.Flushes, uint64(1), "local layer flushed")
	}, 10*time.Second, 10*time.Millisecond)
	stop.Store(true)
	wg.Wait()
	assert.Zero(t, failures.Load(), "reads that failed during the outage")
	assert.Positive(t, down, "the outage was seen")
	t.Logf("%d reads, %d store errors reported", reads.Load(), storeErrs.Load())
	require.NoError(t, c.Set(ctx, "w", "x"))
}

// FailOnStoreError turns a Redis failure on a read into ErrUnavailable.
func TestFailOnStoreError(t *testing.T) {
	b := redistest.Open(t, redistest.Miniredis)
	s, err := NewRedisStore(b.Client, RedisConfig{Prefix: b.Prefix, Logger: quietLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	c := newCache[string](t, s, Config{FailOnStoreError: true})
	b.Mini.SetError("LOADING")
	t.Cleanup(func() { b.Mini.SetError("") })
	_, err = c.Get(ctx, "k")
	require.ErrorIs(t, err, ErrUnavailable)
	_, err = c.GetOrLoad(ctx, "k2", func(ctx context.Context, key string) (string, error) { return "x", nil })
	require.True(t, errors.Is(err, ErrUnavailable), "%v", err)
}

// A holder that died loading (its lease left in Redis, never filled or released) stalls the
// others only until its lease ends, then one of them loads: a lease that ends before
// LoadTimeout is not waited out to LoadTimeout, and one that ends after it (as lease.lua's
// does, LoadTimeout plus Timeout, when the holder dies at once) is outlasted.
func TestDeadLeaseHolder(t *testing.T) {
	fx := realRedis(t)
	for key, tc := range map[string]struct{ loadTimeout, lease time.Duration }{
		"ends before LoadTimeout": {10 * time.Second, 300 * time.Millisecond},
		"ends after LoadTimeout":  {500 * time.Millisecond, 600 * time.Millisecond},
	} {
		c := newCache[string](t, fx.store(), Config{LoadTimeout: tc.loadTimeout})
		require.NoError(t, fx.b.Client.Set(ctx, c.leaseKey(key), "dead-instance", tc.lease).Err())
		var calls atomic.Int32
		t0 := time.Now()
		v, err := c.GetOrLoad(ctx, key, func(ctx context.Context, key string) (string, error) {
			calls.Add(1)
			return "v", nil
		})
		took := time.Since(t0)
		require.NoError(t, err, key)
		assert.Equal(t, "v", v, key)
		assert.Equal(t, int32(1), calls.Load(), key)
		assert.GreaterOrEqual(t, took, tc.lease-50*time.Millisecond, "%s: waited for the lease", key)
		assert.Less(t, took, tc.lease+time.Second, "%s: not past the lease", key)
	}
}
