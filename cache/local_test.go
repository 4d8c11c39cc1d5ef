package cache

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

func memStore(t *testing.T, cfg MemoryConfig) (*MemoryStore, *fakeClock) {
	t.Helper()
	s, err := NewMemoryStore(cfg)
	require.NoError(t, err)
	clk := newFakeClock()
	useClock(s, clk)
	return s, clk
}

func TestMemoryCapacity(t *testing.T) {
	s, _ := memStore(t, MemoryConfig{MaxEntries: 1000})
	c := newCache[int](t, s, Config{})
	for i := range 5000 {
		require.NoError(t, c.Set(ctx, fmt.Sprint(i), i))
	}
	st := s.Stats()
	assert.LessOrEqual(t, st.Entries, 1000+len(s.local.shards), "bounded (shard rounding aside)")
	assert.GreaterOrEqual(t, st.Entries, 900)
	assert.GreaterOrEqual(t, st.Evictions, uint64(4000-len(s.local.shards)))
}

// SIEVE keeps entries that were read, where LRU would evict them first: hot keys read once
// before a burst of new keys survive the burst.
func TestMemoryKeepsReadEntriesThroughAScan(t *testing.T) {
	s, _ := memStore(t, MemoryConfig{MaxEntries: 1000})
	c := newCache[int](t, s, Config{})
	for i := range 100 {
		require.NoError(t, c.Set(ctx, fmt.Sprint("hot", i), i))
	}
	for i := range 100 {
		_, err := c.Get(ctx, fmt.Sprint("hot", i))
		require.NoError(t, err)
	}
	for i := range 1400 { // fills the store, then 500 more: LRU would lose every hot key
		require.NoError(t, c.Set(ctx, fmt.Sprint("scan", i), i))
	}
	kept := 0
	for i := range 100 {
		if _, err := c.Get(ctx, fmt.Sprint("hot", i)); err == nil {
			kept++
		}
	}
	assert.GreaterOrEqual(t, kept, 90, "hot keys kept")
}

func TestMemoryMaxBytes(t *testing.T) {
	s, _ := memStore(t, MemoryConfig{MaxBytes: 64 << 10})
	c := newCache[[]byte](t, s, Config{})
	val := make([]byte, 1000)
	for i := range 1000 {
		require.NoError(t, c.Set(ctx, fmt.Sprint(i), val))
	}
	st := s.Stats()
	assert.LessOrEqual(t, st.Bytes, int64(64<<10)+int64(len(s.local.shards))*1010)
	assert.Greater(t, st.Bytes, int64(32<<10))
	assert.Positive(t, st.Evictions)
}

// Expired entries go without a goroutine: inserts sweep them.
func TestMemoryExpiredReclaimedByInserts(t *testing.T) {
	s, clk := memStore(t, MemoryConfig{MaxEntries: 100_000})
	c := newCache[int](t, s, Config{})
	for i := range 1000 {
		require.NoError(t, c.SetWithTTL(ctx, fmt.Sprint("old", i), i, time.Second))
	}
	clk.Advance(2 * time.Second)
	for i := range 1000 {
		require.NoError(t, c.Set(ctx, fmt.Sprint("new", i), i))
	}
	st := s.Stats()
	assert.Greater(t, st.Expired, uint64(500), "expired entries reclaimed")
	assert.Less(t, st.Entries, 1500)
	assert.Zero(t, st.Evictions)
}

func TestLocalFillGuard(t *testing.T) {
	s, clk := memStore(t, MemoryConfig{})
	l := s.local
	h := l.hash("k", 0)
	e := func(v int) *entry {
		now := clk.ns.Load()
		return &entry{key: "k", hash: h, value: v, fresh: now + int64(time.Minute), stale: now + int64(time.Minute), hard: now + int64(time.Minute)}
	}
	// A fill that started before an invalidation is refused.
	start := l.begin()
	l.invalidate(h, "k")
	assert.True(t, l.fill(e(1), start, clk.ns.Load()))
	l.end()
	assert.Nil(t, l.get(h, "k", clk.ns.Load()))

	// One that started after it is stored; an older one cannot overwrite it.
	older := l.begin()
	newer := l.begin()
	assert.False(t, l.fill(e(2), newer, clk.ns.Load()))
	l.set(e(3), clk.ns.Load())
	assert.True(t, l.fill(e(1), older, clk.ns.Load()), "a write made after the fill started wins")
	l.end()
	l.end()
	assert.Equal(t, 3, l.get(h, "k", clk.ns.Load()).value)

	// A flush refuses every fill in flight.
	start = l.begin()
	l.flush()
	assert.True(t, l.fill(e(4), start, clk.ns.Load()))
	l.end()
	assert.Zero(t, l.len())

	// With no fill in flight an invalidation leaves no tombstone.
	l.set(e(5), clk.ns.Load())
	l.invalidate(h, "k")
	assert.Zero(t, l.len())
}

// Caches sharing a MemoryStore never see each other's entries, and a closed Cache's entries
// leave the store.
func TestMemoryStoreNamespaces(t *testing.T) {
	s, _ := memStore(t, MemoryConfig{})
	a := newCache[string](t, s, Config{Namespace: "a"})
	b := newCache[string](t, s, Config{Namespace: "b"})
	for i := range 100 {
		require.NoError(t, a.Set(ctx, fmt.Sprint(i), "a"))
	}
	for i := range 50 {
		_, err := b.Get(ctx, fmt.Sprint(i))
		require.ErrorIs(t, err, ErrNotFound)
		require.NoError(t, b.Set(ctx, fmt.Sprint(i), "b"))
		v, err := a.Get(ctx, fmt.Sprint(i))
		require.NoError(t, err)
		require.Equal(t, "a", v)
	}
	assert.Equal(t, 150, s.Stats().Entries)
	require.NoError(t, a.Close())
	assert.Equal(t, 50, s.Stats().Entries, "a's entries left with it")
}

// A Cache over a RedisStore with DisableLocal keeps nothing in process: every read reaches
// Redis.
func TestDisableLocal(t *testing.T) {
	b := redistest.Open(t, redistest.Miniredis)
	s, err := NewRedisStore(b.Client, RedisConfig{Prefix: b.Prefix})
	require.NoError(t, err)
	defer s.Close()
	c := newCache[string](t, s, Config{DisableLocal: true})
	require.NoError(t, c.Set(ctx, "k", "v"))
	for range 3 {
		v, err := c.Get(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, "v", v)
	}
	st := c.Stats()
	assert.Equal(t, uint64(3), st.RemoteHits)
	assert.Zero(t, st.LocalHits)
	assert.Zero(t, st.Local.Entries)
	assert.Zero(t, st.LostFills)
}

// A local hit allocates nothing: over a MemoryStore, and in the local layer of a Cache over a
// RedisStore.
func TestLocalHitAllocatesNothing(t *testing.T) {
	ms, _ := memStore(t, MemoryConfig{})
	b := redistest.Open(t, redistest.Miniredis)
	rs, err := NewRedisStore(b.Client, RedisConfig{Prefix: b.Prefix})
	require.NoError(t, err)
	defer rs.Close()
	for _, s := range []Store{ms, rs} {
		c := newCache[*user](t, s, Config{Namespace: "users"})
		require.NoError(t, c.Set(ctx, "ada", &user{"Ada", 36}))
		load := func(ctx context.Context, key string) (*user, error) { return nil, nil }
		assert.Zero(t, testing.AllocsPerRun(1000, func() { _, _ = c.Get(ctx, "ada") }))
		assert.Zero(t, testing.AllocsPerRun(1000, func() { _, _ = c.GetOrLoad(ctx, "ada", load) }))
		assert.Equal(t, uint64(2002), c.Stats().LocalHits, "served by the local layer")
	}
}

func TestJitter(t *testing.T) {
	s, clk := memStore(t, MemoryConfig{})
	c := newCache[int](t, s, Config{Policy: Policy{TTL: 100 * time.Second}, Jitter: 0.5})
	for i := range 1000 {
		require.NoError(t, c.Set(ctx, fmt.Sprint(i), i))
	}
	clk.Advance(75 * time.Second)
	alive := 0
	for i := range 1000 {
		if _, err := c.Get(ctx, fmt.Sprint(i)); err == nil {
			alive++
		}
	}
	// TTLs are spread over [50 s, 100 s]: about half are gone at 75 s.
	assert.InDelta(t, 500, alive, 150)
	clk.Advance(25 * time.Second)
	_, err := c.Get(ctx, "0")
	assert.ErrorIs(t, err, ErrNotFound, "never longer than TTL")
}

func TestEarlyRefresh(t *testing.T) {
	s, clk := memStore(t, MemoryConfig{})
	c := newCache[int](t, s, Config{Policy: Policy{TTL: time.Minute}, EarlyRefresh: 1})
	var loads atomic.Int32
	load := func(ctx context.Context, key string) (int, error) {
		time.Sleep(5 * time.Millisecond) // the load's cost: refreshes start about this early
		return int(loads.Add(1)), nil
	}
	_, err := c.GetOrLoad(ctx, "k", load)
	require.NoError(t, err)
	clk.Advance(30 * time.Second)
	for range 100 {
		_, _ = c.GetOrLoad(ctx, "k", load)
	}
	assert.Equal(t, int32(1), loads.Load(), "no refresh long before expiry")
	clk.Advance(30*time.Second - 2*time.Millisecond)
	require.Eventually(t, func() bool {
		v, err := c.GetOrLoad(ctx, "k", load)
		return err == nil && v == 2
	}, 5*time.Second, time.Millisecond, "refreshed before it expired")
	assert.Equal(t, uint64(1), c.Stats().Refreshes)
}

// The lock-free index against a map, through random inserts, replacements and removals that
// force growth and reuse of removed slots.
func TestTableMatchesMap(t *testing.T) {
	s, _ := memStore(t, MemoryConfig{})
	hash := func(k string) uint64 { return s.local.hash(k, 0) }
	tab := newTable(0)
	model := map[string]*entry{}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20_000 {
		key := fmt.Sprint(r.IntN(300))
		switch e := tab.get(hash(key), key); {
		case e != model[key]:
			t.Fatalf("step %d: %q is %p, want %p", i, key, e, model[key])
		case e != nil && r.IntN(2) == 0:
			tab.remove(e)
			delete(model, key)
		default:
			if tab.full() {
				tab = tab.grown()
			}
			n := &entry{key: key, hash: hash(key)}
			if old := tab.put(n); old != model[key] {
				t.Fatalf("step %d: put replaced %p, want %p", i, old, model[key])
			}
			model[key] = n
		}
		if tab.live != len(model) {
			t.Fatalf("step %d: %d live, want %d", i, tab.live, len(model))
		}
	}
}

// Readers take no lock while writers insert, replace and evict: a reader never sees another
// key's entry (run with -race).
func TestMemoryConcurrentReadersAndWriters(t *testing.T) {
	s, _ := memStore(t, MemoryConfig{MaxEntries: 256})
	c := newCache[string](t, s, Config{})
	var writers, readers sync.WaitGroup
	var wrong atomic.Int64
	stop := make(chan struct{})
	for w := range 2 {
		writers.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprint(r.IntN(1000))
				if r.IntN(10) == 0 {
					_ = c.Delete(ctx, k)
				} else {
					_ = c.Set(ctx, k, k)
				}
			}
		})
	}
	for g := range 4 {
		readers.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 9))
			for range 20_000 {
				k := fmt.Sprint(r.IntN(1000))
				if v, err := c.Get(ctx, k); err == nil && v != k {
					wrong.Add(1)
				}
			}
		})
	}
	readers.Wait()
	close(stop)
	writers.Wait()
	assert.Zero(t, wrong.Load())
	assert.LessOrEqual(t, s.Stats().Entries, 256+len(s.local.shards))
}
