package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

var ctx = context.Background()

// fixture is one backend of the suite: a way to make stores on it (each a separate instance,
// with its own Redis client) and a clock that moves every store's local layer and the Redis
// times together.
type fixture struct {
	t     *testing.T
	b     redistest.Backend
	clock *fakeClock
}

// store returns a new store: another instance of a service, with its own Redis client.
func (fx *fixture) store() Store {
	fx.t.Helper()
	var s Store
	if fx.b.Client == nil {
		m, err := NewMemoryStore(MemoryConfig{})
		require.NoError(fx.t, err)
		s = m
	} else {
		rs, err := NewRedisStore(fx.b.NewClient(fx.t), RedisConfig{
			Prefix: fx.b.Prefix,
			// The suite is about behaviour, not latency: a busy CI machine running the race
			// detector must not pass for an outage.
			Timeout: 2 * time.Second,
		})
		require.NoError(fx.t, err)
		fx.t.Cleanup(func() { _ = rs.Close() })
		s = rs
	}
	useClock(s, fx.clock)
	return s
}

// received is how many announcements of other instances s heard.
func received(s Store) uint64 { return s.(*RedisStore).Stats().Received }

// advance moves time: the fake clock, and miniredis's own clock so that its keys expire.
func (fx *fixture) advance(d time.Duration) {
	fx.clock.Advance(d)
	if fx.b.Mini != nil {
		fx.b.Mini.FastForward(d)
	}
}

func newCache[V any](t *testing.T, s Store, cfg Config) *Cache[V] {
	t.Helper()
	c, err := New[V](s, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// each runs fn on every backend: memory, miniredis and every real server configured.
func each(t *testing.T, fn func(t *testing.T, fx *fixture)) {
	redistest.Each(t, func(t *testing.T, b redistest.Backend) {
		fn(t, &fixture{t: t, b: b, clock: newFakeClock()})
	})
}

type user struct {
	Name string `json:"name"`
	Age  int    `json:"age"`
}

func TestSuiteSetGetDelete(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		c := newCache[user](t, fx.store(), Config{})
		_, err := c.Get(ctx, "ada")
		require.ErrorIs(t, err, ErrNotFound)

		require.NoError(t, c.Set(ctx, "ada", user{"Ada", 36}))
		got, err := c.Get(ctx, "ada")
		require.NoError(t, err)
		assert.Equal(t, user{"Ada", 36}, got)

		require.NoError(t, c.Delete(ctx, "ada"))
		_, err = c.Get(ctx, "ada")
		require.ErrorIs(t, err, ErrNotFound)
	})
}

func TestSuiteSharedAcrossInstances(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		if fx.b.Client == nil {
			t.Skip("a MemoryStore is one process")
		}
		a := newCache[user](t, fx.store(), Config{})
		bs := fx.store()
		b := newCache[user](t, bs, Config{})
		require.NoError(t, a.Set(ctx, "ada", user{"Ada", 36}))
		// b hears of the write (and would drop "ada" from its local layer).
		require.Eventually(t, func() bool { return received(bs) == 1 }, 5*time.Second, time.Millisecond)
		got, err := b.Get(ctx, "ada")
		require.NoError(t, err)
		assert.Equal(t, "Ada", got.Name)
		assert.Equal(t, uint64(1), b.Stats().RemoteHits)
		// Now in b's local layer: a second read does not reach Redis.
		_, err = b.Get(ctx, "ada")
		require.NoError(t, err)
		assert.Equal(t, uint64(1), b.Stats().RemoteHits)
	})
}

func TestSuiteTTL(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		c := newCache[string](t, fx.store(), Config{})
		require.NoError(t, c.Set(ctx, "k", "v"))
		require.NoError(t, c.SetWithTTL(ctx, "short", "v", time.Second))
		fx.advance(2 * time.Second)
		_, err := c.Get(ctx, "short")
		require.ErrorIs(t, err, ErrNotFound, "SetWithTTL's TTL")
		_, err = c.Get(ctx, "k")
		require.NoError(t, err, "the default TTL is 300 s")
		fx.advance(defaultTTL)
		_, err = c.Get(ctx, "k")
		require.ErrorIs(t, err, ErrNotFound, "expired after 300 s")
		require.ErrorIs(t, c.SetWithTTL(ctx, "k", "v", 0), ErrInvalidConfig)
	})
}

func TestSuiteMany(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		c := newCache[int](t, fx.store(), Config{})
		items := map[string]int{}
		for i := range 50 {
			items[fmt.Sprint("k", i)] = i
		}
		require.NoError(t, c.SetMany(ctx, items))
		keys := []string{"missing"}
		for k := range items {
			keys = append(keys, k)
		}
		got, err := c.GetMany(ctx, keys)
		require.NoError(t, err)
		assert.Equal(t, items, got)

		if fx.b.Client != nil {
			// Another instance reads them all from Redis, in one round trip per slot.
			other := newCache[int](t, fx.store(), Config{})
			got, err := other.GetMany(ctx, keys)
			require.NoError(t, err)
			assert.Equal(t, items, got)
			assert.Equal(t, uint64(50), other.Stats().RemoteHits)
		}
	})
}

func TestSuiteRawValues(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		bs := newCache[[]byte](t, fx.store(), Config{})
		require.NoError(t, bs.Set(ctx, "b", []byte{0, 1, 2, 255}))
		strs := newCache[string](t, fx.store(), Config{})
		require.NoError(t, strs.Set(ctx, "s", "héllo"))
		if fx.b.Client != nil {
			// Stored as they are, after the envelope: readable by other tools.
			raw, err := fx.b.Client.Get(ctx, fx.b.Prefix+"{s}").Bytes()
			require.NoError(t, err)
			assert.Equal(t, "héllo", string(raw[len(raw)-len("héllo"):]))
			other := newCache[[]byte](t, fx.store(), Config{})
			got, err := other.Get(ctx, "b")
			require.NoError(t, err)
			assert.Equal(t, []byte{0, 1, 2, 255}, got)
		}
		got, err := strs.Get(ctx, "s")
		require.NoError(t, err)
		assert.Equal(t, "héllo", got)
	})
}

func TestSuiteGetOrLoad(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		c := newCache[user](t, fx.store(), Config{})
		var calls atomic.Int32
		load := func(ctx context.Context, key string) (user, error) {
			calls.Add(1)
			return user{Name: key}, nil
		}
		for range 3 {
			got, err := c.GetOrLoad(ctx, "bob", load)
			require.NoError(t, err)
			assert.Equal(t, "bob", got.Name)
		}
		assert.Equal(t, int32(1), calls.Load())
		st := c.Stats()
		assert.Equal(t, uint64(1), st.Loads)

		// An error is returned and never cached.
		boom := errors.New("db down")
		fail := func(ctx context.Context, key string) (user, error) { calls.Add(1); return user{}, boom }
		_, err := c.GetOrLoad(ctx, "carol", fail)
		require.ErrorIs(t, err, boom)
		_, err = c.GetOrLoad(ctx, "carol", fail)
		require.ErrorIs(t, err, boom)
		assert.Equal(t, int32(3), calls.Load())
		assert.Equal(t, uint64(2), c.Stats().LoadErrors)
	})
}

func TestSuiteNegativeCaching(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		s := fx.store()
		c := newCache[user](t, s, Config{NegativeTTL: 10 * time.Second})
		var calls atomic.Int32
		missing := func(ctx context.Context, key string) (user, error) {
			calls.Add(1)
			return user{}, fmt.Errorf("no row: %w", ErrNotFound)
		}
		for range 3 {
			_, err := c.GetOrLoad(ctx, "ghost", missing)
			require.ErrorIs(t, err, ErrNotFound)
		}
		assert.Equal(t, int32(1), calls.Load(), "not found is cached")
		assert.Equal(t, uint64(2), c.Stats().NegativeHits)
		_, err := c.Get(ctx, "ghost")
		require.ErrorIs(t, err, ErrNotFound)
		if fx.b.Client != nil {
			other := newCache[user](t, fx.store(), Config{})
			_, err := other.GetOrLoad(ctx, "ghost", missing)
			require.ErrorIs(t, err, ErrNotFound)
			assert.Equal(t, int32(1), calls.Load(), "the negative entry is shared")
		}
		fx.advance(11 * time.Second)
		_, err = c.GetOrLoad(ctx, "ghost", missing)
		require.ErrorIs(t, err, ErrNotFound)
		assert.Equal(t, int32(2), calls.Load(), "its own TTL")

		off := newCache[user](t, s, Config{Namespace: "off", DisableNegative: true})
		for range 2 {
			_, err := off.GetOrLoad(ctx, "ghost", missing)
			require.ErrorIs(t, err, ErrNotFound)
		}
		assert.Equal(t, int32(4), calls.Load(), "DisableNegative caches nothing")
	})
}

func TestSuiteSingleFlight(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		c := newCache[int](t, fx.store(), Config{})
		var calls atomic.Int32
		release := make(chan struct{})
		load := func(ctx context.Context, key string) (int, error) {
			calls.Add(1)
			<-release
			return 42, nil
		}
		// One waiter gives up: the others must not fail with it.
		quitter, quit := context.WithCancel(ctx)
		var wg sync.WaitGroup
		errs := make(chan error, 51)
		for i := range 51 {
			wg.Go(func() {
				cctx := ctx
				if i == 0 {
					cctx = quitter
				}
				v, err := c.GetOrLoad(cctx, "answer", load)
				if i == 0 {
					if !errors.Is(err, context.Canceled) {
						errs <- fmt.Errorf("quitter: %v, %v", v, err)
					}
					return
				}
				if err != nil || v != 42 {
					errs <- fmt.Errorf("waiter: %v, %v", v, err)
				}
			})
		}
		require.Eventually(t, func() bool { return calls.Load() == 1 }, 5*time.Second, time.Millisecond)
		time.Sleep(20 * time.Millisecond) // let every caller join the flight
		quit()
		close(release)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		assert.Equal(t, int32(1), calls.Load())
	})
}

func TestSuiteStaleWhileRevalidate(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		c := newCache[int](t, fx.store(), Config{Policy: Policy{TTL: time.Minute, StaleWhileRevalidate: time.Minute}})
		var version atomic.Int32
		refreshed := make(chan struct{}, 10)
		load := func(ctx context.Context, key string) (int, error) {
			defer func() { refreshed <- struct{}{} }()
			return int(version.Add(1)), nil
		}
		v, err := c.GetOrLoad(ctx, "k", load)
		require.NoError(t, err)
		require.Equal(t, 1, v)
		<-refreshed

		fx.advance(90 * time.Second) // stale, inside the window
		v, err = c.GetOrLoad(ctx, "k", load)
		require.NoError(t, err)
		assert.Equal(t, 1, v, "the stale value at once")
		select {
		case <-refreshed:
		case <-time.After(5 * time.Second):
			t.Fatal("no background refresh")
		}
		require.Eventually(t, func() bool {
			v, err := c.GetOrLoad(ctx, "k", load)
			return err == nil && v == 2
		}, 5*time.Second, time.Millisecond)
		assert.Equal(t, int32(2), version.Load(), "one refresh")
		assert.GreaterOrEqual(t, c.Stats().Stale, uint64(1))

		fx.advance(3 * time.Minute) // past both windows: a plain miss, loaded in line
		v, err = c.GetOrLoad(ctx, "k", load)
		require.NoError(t, err)
		assert.Equal(t, 3, v)
	})
}

func TestSuiteStaleIfError(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		var stale []error
		var mu sync.Mutex
		c := newCache[string](t, fx.store(), Config{
			Policy: Policy{TTL: time.Minute, StaleIfError: 10 * time.Minute},
			Hooks:  Hooks{OnStale: func(_ context.Context, key string, err error) { mu.Lock(); stale = append(stale, err); mu.Unlock() }},
		})
		boom := errors.New("origin down")
		ok := func(ctx context.Context, key string) (string, error) { return "good", nil }
		fail := func(ctx context.Context, key string) (string, error) { return "", boom }
		_, err := c.GetOrLoad(ctx, "k", ok)
		require.NoError(t, err)

		fx.advance(2 * time.Minute)
		v, err := c.GetOrLoad(ctx, "k", fail)
		require.NoError(t, err, "stale-if-error serves the old value")
		assert.Equal(t, "good", v)
		mu.Lock()
		require.Len(t, stale, 1)
		assert.ErrorIs(t, stale[0], boom)
		mu.Unlock()

		fx.advance(10 * time.Minute)
		_, err = c.GetOrLoad(ctx, "k", fail)
		require.ErrorIs(t, err, boom, "past the window, the error")
	})
}

func TestSuiteLoaderPanic(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		c := newCache[int](t, fx.store(), Config{Logger: quietLogger()})
		_, err := c.GetOrLoad(ctx, "k", func(ctx context.Context, key string) (int, error) { panic("bug") })
		require.ErrorIs(t, err, ErrLoaderPanic)
		v, err := c.GetOrLoad(ctx, "k", func(ctx context.Context, key string) (int, error) { return 7, nil })
		require.NoError(t, err, "a panic is not cached, and the lease was given back")
		assert.Equal(t, 7, v)
	})
}

// A Delete during a slow load wins: what the load read before the Delete is not stored.
func TestSuiteDeleteDuringLoad(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		c := newCache[string](t, fx.store(), Config{})
		started, finish := make(chan struct{}), make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			v, err := c.GetOrLoad(ctx, "k", func(ctx context.Context, key string) (string, error) {
				close(started)
				<-finish
				return "old", nil
			})
			assert.NoError(t, err)
			assert.Equal(t, "old", v, "the callers of the load get what it read")
		}()
		<-started
		require.NoError(t, c.Delete(ctx, "k"))
		close(finish)
		<-done
		_, err := c.Get(ctx, "k")
		require.ErrorIs(t, err, ErrNotFound, "the load's value was not stored")
		assert.Equal(t, uint64(1), c.Stats().LostFills)
	})
}

// One store serves caches of different types under their namespaces: equal keys never meet,
// an announcement reaches only the Cache of its namespace, and a namespace is free again once
// its Cache is closed.
func TestSuiteStoreServesManyCaches(t *testing.T) {
	each(t, func(t *testing.T, fx *fixture) {
		s := fx.store()
		ints := newCache[int](t, s, Config{Namespace: "ints"})
		strs := newCache[string](t, s, Config{Namespace: "strs"})
		plain := newCache[user](t, s, Config{})
		require.NoError(t, ints.Set(ctx, "k", 1))
		require.NoError(t, strs.Set(ctx, "k", "one"))
		require.NoError(t, plain.Set(ctx, "k", user{Name: "k"}))
		i, err := ints.Get(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, 1, i)
		str, err := strs.Get(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, "one", str)
		u, err := plain.Get(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, "k", u.Name)

		_, err = New[float64](s, Config{Namespace: "ints"})
		require.ErrorIs(t, err, ErrInvalidConfig, "a namespace already open")
		require.NoError(t, ints.Delete(ctx, "k"))
		_, err = strs.Get(ctx, "k")
		require.NoError(t, err, "a Delete in another namespace")

		if fx.b.Client != nil {
			// Another instance writes "k" in "ints": this instance's ints drops it, strs
			// keeps serving its own "k" from its local layer.
			other := newCache[int](t, fx.store(), Config{Namespace: "ints"})
			require.NoError(t, ints.Set(ctx, "k", 1))
			before := received(s)
			require.NoError(t, other.Set(ctx, "k", 2))
			require.Eventually(t, func() bool { return received(s) > before }, 5*time.Second, time.Millisecond)
			i, err := ints.Get(ctx, "k")
			require.NoError(t, err)
			assert.Equal(t, 2, i)
			hits := strs.Stats().LocalHits
			str, err := strs.Get(ctx, "k")
			require.NoError(t, err)
			assert.Equal(t, "one", str)
			assert.Equal(t, hits+1, strs.Stats().LocalHits, "strs kept its local entry")
			if raw, err := fx.b.Client.Get(ctx, fx.b.Prefix+"ints:{k}").Bytes(); assert.NoError(t, err) {
				assert.Equal(t, byte('2'), raw[len(raw)-1], "the namespace is in the Redis key")
			}
		}

		require.NoError(t, ints.Close())
		_, err = ints.Get(ctx, "k")
		require.ErrorIs(t, err, ErrClosed)
		again := newCache[string](t, s, Config{Namespace: "ints"})
		_, err = again.Get(ctx, "never-set")
		require.ErrorIs(t, err, ErrNotFound)
	})
}

// Every configuration error matches ErrInvalidConfig and names its field.
func TestConfigErrors(t *testing.T) {
	s, err := NewMemoryStore(MemoryConfig{})
	require.NoError(t, err)
	for field, cfg := range map[string]Config{
		"Config.TTL":                  {Policy: Policy{TTL: -1}},
		"Config.StaleWhileRevalidate": {Policy: Policy{StaleWhileRevalidate: -1}},
		"Config.StaleIfError":         {Policy: Policy{StaleIfError: -1}},
		"Config.Namespace":            {Namespace: "a{b"},
		"Config.NegativeTTL":          {NegativeTTL: -1},
		"Config.Jitter":               {Jitter: 1.5},
		"Config.EarlyRefresh":         {EarlyRefresh: -1},
		"Config.LoadTimeout":          {LoadTimeout: -1},
	} {
		_, err := New[int](s, cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, field)
		assert.ErrorContains(t, err, field)
	}
	_, err = New[int](s, Config{Jitter: -0.1})
	assert.ErrorContains(t, err, "Config.Jitter")
	_, err = New[int](nil, Config{})
	assert.ErrorIs(t, err, ErrInvalidConfig)

	_, err = NewMemoryStore(MemoryConfig{MaxEntries: -1})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	assert.ErrorContains(t, err, "MemoryConfig.MaxEntries")
	_, err = NewMemoryStore(MemoryConfig{MaxBytes: -1})
	assert.ErrorContains(t, err, "MemoryConfig.MaxBytes")

	_, err = NewRedisStore(nil, RedisConfig{})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	b := redistest.Open(t, redistest.Miniredis)
	for field, cfg := range map[string]RedisConfig{
		"RedisConfig.Prefix":        {Prefix: "a{"},
		"RedisConfig.Timeout":       {Timeout: -1},
		"RedisConfig.RetryInterval": {RetryInterval: -1},
		"RedisConfig.FailFastAfter": {FailFastAfter: -1},
		"RedisConfig.PingInterval":  {PingInterval: -1},
	} {
		_, err := NewRedisStore(b.Client, cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, field)
		assert.ErrorContains(t, err, field)
	}
	rs, err := NewRedisStore(b.Client, RedisConfig{Prefix: b.Prefix})
	require.NoError(t, err)
	defer rs.Close()
	_, err = New[int](rs, Config{Local: MemoryConfig{MaxEntries: -1}})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	assert.ErrorContains(t, err, "Config.Local.MaxEntries")
}
