package cache

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/outgrow/outgrow/internal/redistest"
)

// benchKeys is how many keys the local benchmarks spread over: all of them are cached.
const benchKeys = 1 << 14

// benchValue is a typical cached record, held by pointer in the local layer; about 100 bytes
// once encoded.
type benchValue struct {
	ID     int64    `json:"id"`
	Name   string   `json:"name"`
	Email  string   `json:"email"`
	Tags   []string `json:"tags"`
	Score  float64  `json:"score"`
	Active bool     `json:"active"`
}

func newBenchValue(i int) *benchValue {
	return &benchValue{
		ID: int64(i), Name: fmt.Sprintf("user %d", i), Email: fmt.Sprintf("user%d@example.com", i),
		Tags: []string{"a", "b"}, Score: float64(i) / 3, Active: true,
	}
}

// benchTrace is a fixed Zipf sequence of keys (s = 1.01, the most popular first): the same
// for every run, precomputed so that the benchmarks time the cache, not the generator.
type benchTrace struct {
	keys []string // the distinct keys
	seq  []string // the requests, len a power of two
}

func newBenchTrace(n int) *benchTrace {
	t := &benchTrace{keys: make([]string, n), seq: make([]string, 1<<16)}
	for i := range t.keys {
		t.keys[i] = fmt.Sprintf("user:%d", i)
	}
	z := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.01, 1, uint64(n-1))
	for i := range t.seq {
		t.seq[i] = t.keys[z.Uint64()]
	}
	return t
}

// parallel runs fn on the trace's keys from every goroutine of b.RunParallel, each starting at
// its own place in the sequence.
func (t *benchTrace) parallel(b *testing.B, fn func(key string)) {
	var id atomic.Uint64
	mask := uint64(len(t.seq) - 1)
	b.RunParallel(func(pb *testing.PB) {
		i := id.Add(1) * 7919
		for pb.Next() {
			fn(t.seq[i&mask])
			i++
		}
	})
}

func newMemoryBenchCache(b *testing.B, tr *benchTrace) *Cache[*benchValue] {
	b.Helper()
	st, err := NewMemoryStore(MemoryConfig{MaxEntries: 2 * len(tr.keys)})
	if err != nil {
		b.Fatal(err)
	}
	c, err := New[*benchValue](st, Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	for i, k := range tr.keys {
		if err := c.Set(ctx, k, newBenchValue(i)); err != nil {
			b.Fatal(err)
		}
	}
	return c
}

// newRedisBenchCache returns a Cache configured by cfg on a RedisStore, on redistest's client
// (miniredis unless OUTGROW_REDIS_URL or OUTGROW_REDIS_CLUSTER is set).
func newRedisBenchCache(b *testing.B, cfg Config) *Cache[*benchValue] {
	b.Helper()
	rdb := redistest.New(b)
	st, err := NewRedisStore(rdb, RedisConfig{Prefix: redistest.Prefix(b, rdb)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	c, err := New[*benchValue](st, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// BenchmarkGetLocalHit: a hit in the local layer, from every goroutine at once, on Zipf keys
// over 2^14 cached pointers. Must not allocate.
func BenchmarkGetLocalHit(b *testing.B) {
	tr := newBenchTrace(benchKeys)
	c := newMemoryBenchCache(b, tr)
	var misses atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	tr.parallel(b, func(key string) {
		if v, err := c.Get(ctx, key); err != nil || v == nil {
			misses.Add(1)
		}
	})
	if n := misses.Load(); n > 0 {
		b.Fatalf("%d misses", n)
	}
}

// BenchmarkGetOrLoadLocalHit: GetOrLoad of a key the local layer holds; the loader is never
// called.
func BenchmarkGetOrLoadLocalHit(b *testing.B) {
	tr := newBenchTrace(benchKeys)
	c := newMemoryBenchCache(b, tr)
	var loads atomic.Int64
	load := func(context.Context, string) (*benchValue, error) {
		loads.Add(1)
		return &benchValue{}, nil
	}
	b.ReportAllocs()
	b.ResetTimer()
	tr.parallel(b, func(key string) {
		_, _ = c.GetOrLoad(ctx, key, load)
	})
	if n := loads.Load(); n > 0 {
		b.Fatalf("%d loads", n)
	}
}

// BenchmarkSet: Set on a MemoryStore from every goroutine at once (store=memory), and one at
// a time through a RedisStore with its local layer (store=redis: one round trip).
func BenchmarkSet(b *testing.B) {
	b.Run("store=memory", func(b *testing.B) {
		tr := newBenchTrace(benchKeys)
		c := newMemoryBenchCache(b, tr)
		v := newBenchValue(1)
		b.ReportAllocs()
		b.ResetTimer()
		tr.parallel(b, func(key string) {
			if err := c.Set(ctx, key, v); err != nil {
				b.Error(err)
			}
		})
	})
	b.Run("store=redis", func(b *testing.B) {
		c := newRedisBenchCache(b, Config{})
		tr := newBenchTrace(1024)
		v := newBenchValue(1)
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Set(ctx, tr.seq[i&(len(tr.seq)-1)], v); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkGetRemoteHit: a hit read from Redis (no local layer): one GET and a JSON decode.
func BenchmarkGetRemoteHit(b *testing.B) {
	c := newRedisBenchCache(b, Config{DisableLocal: true})
	if err := c.Set(ctx, "k", newBenchValue(1)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, "k"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetManyRemote: 100 keys read from Redis at once (no local layer): one MGET.
func BenchmarkGetManyRemote(b *testing.B) {
	c := newRedisBenchCache(b, Config{DisableLocal: true})
	keys := make([]string, 100)
	items := make(map[string]*benchValue, len(keys))
	for i := range keys {
		keys[i] = fmt.Sprintf("user:%d", i)
		items[keys[i]] = newBenchValue(i)
	}
	if err := c.SetMany(ctx, items); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := c.GetMany(ctx, keys)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != len(keys) {
			b.Fatalf("got %d of %d keys", len(got), len(keys))
		}
	}
}
