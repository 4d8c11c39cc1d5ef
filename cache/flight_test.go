package cache

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// result is what one GetOrLoad returned, and when.
type result struct {
	v    string
	err  error
	took time.Duration
}

// getOrLoadAsync calls c.GetOrLoad with context.Background() on its own goroutine.
func getOrLoadAsync(c *Cache[string], key string, load func(context.Context, string) (string, error)) <-chan result {
	ch := make(chan result, 1)
	start := time.Now()
	go func() {
		v, err := c.GetOrLoad(context.Background(), key, load)
		ch <- result{v, err, time.Since(start)}
	}()
	return ch
}

// await returns what w delivers, failing t if it delivers nothing within d.
func await(t *testing.T, w <-chan result, d time.Duration, what string) result {
	t.Helper()
	select {
	case r := <-w:
		return r
	case <-time.After(d):
		t.Fatalf("%s: still blocked after %v", what, d)
		return result{}
	}
}

// valueOrTimeout checks that a waiter of a stuck load got either want (filled by another
// instance) or the LoadTimeout error.
func valueOrTimeout(t *testing.T, r result, want string) {
	t.Helper()
	if r.err == nil {
		assert.Equal(t, want, r.v)
	} else {
		assert.ErrorIs(t, r.err, context.DeadlineExceeded)
	}
}

// stuckLoader ignores its context: it returns only when release is closed. started counts its
// calls.
func stuckLoader(release <-chan struct{}, started *atomic.Int32) func(context.Context, string) (string, error) {
	return func(context.Context, string) (string, error) {
		started.Add(1)
		<-release
		return "late", nil
	}
}

// A loader that ignores its context does not hold its waiters past LoadTimeout: each gets an
// error at LoadTimeout, the flight is unlisted (the next call loads afresh), what the loader
// returns at last is dropped, never stored over the newer value, and Close returns by
// LoadTimeout, abandoning the loader.
func TestStuckLoaderMemory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release, releaseLast := make(chan struct{}), make(chan struct{})
		defer close(releaseLast) // the last abandoned loader returns, after the checks
		s, err := NewMemoryStore(MemoryConfig{})
		require.NoError(t, err)
		c, err := New[string](s, Config{LoadTimeout: time.Second})
		require.NoError(t, err)
		var started atomic.Int32
		stuck := stuckLoader(release, &started)

		waiters := []<-chan result{getOrLoadAsync(c, "k", stuck)}
		synctest.Wait()
		require.Equal(t, int32(1), started.Load())
		time.Sleep(500 * time.Millisecond)
		waiters = append(waiters, getOrLoadAsync(c, "k", stuck)) // joins the flight
		for _, w := range waiters {
			r := await(t, w, time.Hour, "a waiter of the stuck load")
			assert.ErrorIs(t, r.err, context.DeadlineExceeded)
			assert.LessOrEqual(t, r.took, time.Second, "past LoadTimeout")
		}
		assert.Equal(t, int32(1), started.Load(), "the second caller joined the first load")

		// The flight is gone: the next call loads afresh.
		v, err := c.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) { return "fresh", nil })
		require.NoError(t, err)
		assert.Equal(t, "fresh", v)

		// The abandoned loader returns at last: its "late" goes nowhere.
		close(release)
		synctest.Wait()
		v, err = c.Get(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, "fresh", v, "a loader abandoned at LoadTimeout stored its value over a newer one")

		// Close with a stuck loader in flight returns by the load's LoadTimeout.
		w := getOrLoadAsync(c, "other", stuckLoader(releaseLast, &started))
		synctest.Wait()
		t0 := time.Now()
		closed := make(chan struct{})
		go func() { _ = c.Close(); close(closed) }()
		select {
		case <-closed:
			assert.LessOrEqual(t, time.Since(t0), time.Second, "Close waits at most LoadTimeout")
		case <-time.After(time.Hour):
			t.Fatal("Close hangs on a stuck loader")
		}
		r := <-w
		assert.Error(t, r.err, "the waiter of a load cancelled by Close")
	})
}

// The same on Redis, with a second instance: at A's LoadTimeout, A's waiters get an error or
// the value B wrote, never later; A gives its lease back, so B's own load does not wait for
// the lease to expire; the next call on A reads what B stored; and when A's abandoned loaders
// return at last, what they loaded is stored nowhere, in Redis or in a local layer.
func TestStuckLoaderRedis(t *testing.T) {
	redisBackends(t, func(t *testing.T, fx *fixture) {
		const loadTimeout = time.Second
		const slack = 500 * time.Millisecond
		a := newCache[string](t, fx.store(), Config{LoadTimeout: loadTimeout})
		b := newCache[string](t, fx.store(), Config{LoadTimeout: loadTimeout})
		release := make(chan struct{})
		unstick := sync.OnceFunc(func() { close(release) })
		t.Cleanup(unstick) // before the caches' Close
		var started, returned atomic.Int32
		stuck := func(ctx context.Context, key string) (string, error) {
			defer returned.Add(1)
			return stuckLoader(release, &started)(ctx, key)
		}

		// B writes the key while A's loader is stuck.
		w1, w2 := getOrLoadAsync(a, "set", stuck), getOrLoadAsync(a, "set", stuck)
		require.Eventually(t, func() bool { return started.Load() == 1 }, 5*time.Second, time.Millisecond)
		require.NoError(t, b.Set(ctx, "set", "from B"))
		for _, w := range []<-chan result{w1, w2} {
			r := await(t, w, loadTimeout+5*time.Second, "A's waiter")
			valueOrTimeout(t, r, "from B")
			assert.Less(t, r.took, loadTimeout+slack)
		}
		r := <-getOrLoadAsync(a, "set", stuck)
		require.NoError(t, r.err)
		assert.Equal(t, "from B", r.v, "A's next call reads what B stored")
		assert.Equal(t, int32(1), started.Load(), "without joining the stuck load")

		// B loads a key whose lease A holds with a stuck loader: A gives the lease back at its
		// LoadTimeout, and B loads then, not when the lease would have expired.
		wa := getOrLoadAsync(a, "load", stuck)
		require.Eventually(t, func() bool { return started.Load() == 2 }, 5*time.Second, time.Millisecond)
		t0 := time.Now()
		wb := getOrLoadAsync(b, "load", func(context.Context, string) (string, error) { return "B loaded", nil })
		r = await(t, wb, loadTimeout+10*time.Second, "B's load")
		require.NoError(t, r.err)
		assert.Equal(t, "B loaded", r.v)
		assert.Less(t, time.Since(t0), loadTimeout+slack, "B waited for A's lease to expire")
		valueOrTimeout(t, await(t, wa, 5*time.Second, "A's waiter"), "B loaded")

		unstick()
		require.Eventually(t, func() bool { return returned.Load() == 2 }, 5*time.Second, time.Millisecond)
		time.Sleep(50 * time.Millisecond) // time to store "late", were it stored
		other := newCache[string](t, fx.store(), Config{})
		for key, want := range map[string]string{"set": "from B", "load": "B loaded"} {
			for name, c := range map[string]*Cache[string]{"A": a, "B": b, "a third instance": other} {
				v, err := c.Get(ctx, key)
				require.NoError(t, err, "%s, %s", name, key)
				assert.Equal(t, want, v, "%s reads %s", name, key)
			}
		}
	})
}

// Close returns by LoadTimeout while a loader ignores its context, and gives the lease back.
func TestStuckLoaderCloseRedis(t *testing.T) {
	redisBackends(t, func(t *testing.T, fx *fixture) {
		const loadTimeout = time.Second
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		var started atomic.Int32
		c, err := New[string](fx.store(), Config{LoadTimeout: loadTimeout})
		require.NoError(t, err)
		w := getOrLoadAsync(c, "k", stuckLoader(release, &started))
		require.Eventually(t, func() bool { return started.Load() == 1 }, 5*time.Second, time.Millisecond)
		t0 := time.Now()
		closed := make(chan struct{})
		go func() { _ = c.Close(); close(closed) }()
		select {
		case <-closed:
			assert.Less(t, time.Since(t0), loadTimeout+500*time.Millisecond, "Close waits at most LoadTimeout and a round trip")
		case <-time.After(loadTimeout + 5*time.Second):
			t.Fatal("Close hangs on a stuck loader")
		}
		assert.Error(t, await(t, w, 5*time.Second, "the waiter of a load cancelled by Close").err)
		// The lease was given back: another instance loads at once.
		other := newCache[string](t, fx.store(), Config{})
		t0 = time.Now()
		v, err := other.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) { return "v", nil })
		require.NoError(t, err)
		assert.Equal(t, "v", v)
		assert.Less(t, time.Since(t0), time.Second, "waited for the closed cache's lease")
	})
}

// TestStatsLoadsWhileLoading: a snapshot taken while loads end never shows more failures than
// loads, nor a failed load as a good one (Loads-LoadErrors is what the otel module reports as
// good loads: it must never go down, nor below zero). Every load here fails.
func TestStatsLoadsWhileLoading(t *testing.T) {
	store, err := NewMemoryStore(MemoryConfig{})
	require.NoError(t, err)
	c, err := New[string](store, Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	fail := func(context.Context, string) (string, error) { return "", assert.AnError }
	var stop atomic.Bool
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				_, _ = c.GetOrLoad(context.Background(), strconv.Itoa(g)+"-"+strconv.Itoa(i), fail)
			}
		})
	}
	bad := 0
	for range 100000 {
		if s := c.Stats(); s.Loads != s.LoadErrors {
			bad++
		}
	}
	stop.Store(true)
	wg.Wait()
	assert.Zero(t, bad, "snapshots with failed loads counted as good, or errors beyond loads")
	assert.Positive(t, c.Stats().LoadErrors)
}
