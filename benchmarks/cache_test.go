// Caching side by side: outgrow/cache against maypok86/otter v2, hashicorp/golang-lru v2 and
// go-redis/cache v9.
//
// Every sub-benchmark is named lib=<name>, so that `benchstat -col /lib` puts the libraries
// side by side. The local benchmarks read pointers to one struct type over a fixed Zipf trace;
// the Redis ones read a value of about 100 bytes and report roundtrips/op (counted by a
// go-redis hook) and rediscmds/op (from INFO commandstats); the hit-ratio benchmarks replay a
// fixed trace and report hit% in place of ns/op.
package benchmarks

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	grcache "github.com/go-redis/cache/v9"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/maypok86/otter/v2"
	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/benchmarks/internal/harness"
	"github.com/outgrow/outgrow/cache"
)

// cacheKeys is how many keys BenchmarkCacheLocalHit spreads over, all cached.
const cacheKeys = 1 << 14

// cacheTTL is the freshness every library is given: outgrow's default (300 s).
const cacheTTL = 300 * time.Second

// cacheItem is a typical cached record; about 100 bytes once encoded.
type cacheItem struct {
	ID     int64    `json:"id" msgpack:"id"`
	Name   string   `json:"name" msgpack:"name"`
	Email  string   `json:"email" msgpack:"email"`
	Tags   []string `json:"tags" msgpack:"tags"`
	Score  float64  `json:"score" msgpack:"score"`
	Active bool     `json:"active" msgpack:"active"`
}

func newCacheItem(i int) *cacheItem {
	return &cacheItem{
		ID: int64(i), Name: fmt.Sprintf("user %d", i), Email: fmt.Sprintf("user%d@example.com", i),
		Tags: []string{"admin", "beta"}, Score: float64(i) / 3, Active: true,
	}
}

// zipfTrace is a fixed sequence of requests over keys[0:n], the most popular first: the same
// for every library and every run.
type zipfTrace struct {
	keys []string
	seq  []string // len a power of two for the parallel benchmarks
}

func newZipfTrace(n, requests int, seed uint64) *zipfTrace {
	t := &zipfTrace{keys: make([]string, n), seq: make([]string, requests)}
	for i := range t.keys {
		t.keys[i] = fmt.Sprintf("user:%d", i)
	}
	// math/rand/v2's Zipf needs s > 1: 1.01 is the classic s = 1 web workload.
	z := rand.NewZipf(rand.New(rand.NewPCG(seed, seed)), 1.01, 1, uint64(n-1))
	for i := range t.seq {
		t.seq[i] = t.keys[z.Uint64()]
	}
	return t
}

// parallel calls get with the trace's requests from every goroutine of b.RunParallel, each
// starting at its own place, and fails b if get missed.
func (t *zipfTrace) parallel(b *testing.B, get func(key string) bool) {
	var id, misses atomic.Int64
	mask := len(t.seq) - 1
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(id.Add(1)) * 7919
		for pb.Next() {
			if !get(t.seq[i&mask]) {
				misses.Add(1)
			}
			i++
		}
	})
	if n := misses.Load(); n > 0 {
		b.Fatalf("%d misses: every key should be cached", n)
	}
}

// BenchmarkCacheLocalHit: a hit in process memory, from every goroutine at once, on a Zipf
// trace over 2^14 keys, all cached with a 300 s TTL. outgrow is Cache.Get on a MemoryStore;
// otter is GetIfPresent with an ExpiryCalculator (write TTL), so that both do the TTL work;
// lru is golang-lru's expirable LRU; goredis-cache is go-redis/cache's Get served by its
// TinyLFU local cache, which holds msgpack bytes and decodes them on every hit.
func BenchmarkCacheLocalHit(b *testing.B) {
	ctx := context.Background()
	tr := newZipfTrace(cacheKeys, 1<<16, 1)
	b.Run("lib=outgrow", func(b *testing.B) {
		st, err := cache.NewMemoryStore(cache.MemoryConfig{MaxEntries: 2 * cacheKeys})
		if err != nil {
			b.Fatal(err)
		}
		c, err := cache.New[*cacheItem](st, cache.Config{Policy: cache.Policy{TTL: cacheTTL}})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		for i, k := range tr.keys {
			if err := c.Set(ctx, k, newCacheItem(i)); err != nil {
				b.Fatal(err)
			}
		}
		tr.parallel(b, func(key string) bool {
			v, err := c.Get(ctx, key)
			return err == nil && v != nil
		})
	})
	b.Run("lib=otter", func(b *testing.B) {
		c := otter.Must(&otter.Options[string, *cacheItem]{
			MaximumSize:      2 * cacheKeys,
			ExpiryCalculator: otter.ExpiryWriting[string, *cacheItem](cacheTTL),
		})
		defer c.StopAllGoroutines()
		for i, k := range tr.keys {
			c.Set(k, newCacheItem(i))
		}
		tr.parallel(b, func(key string) bool {
			v, ok := c.GetIfPresent(key)
			return ok && v != nil
		})
	})
	b.Run("lib=lru", func(b *testing.B) {
		c := expirable.NewLRU[string, *cacheItem](2*cacheKeys, nil, cacheTTL)
		for i, k := range tr.keys {
			c.Add(k, newCacheItem(i))
		}
		tr.parallel(b, func(key string) bool {
			v, ok := c.Get(key)
			return ok && v != nil
		})
	})
	b.Run("lib=goredis-cache", func(b *testing.B) {
		// TinyLFU sized well over the keys, so that its admission never turns one away.
		c := grcache.New(&grcache.Options{LocalCache: grcache.NewTinyLFU(4*cacheKeys, cacheTTL)})
		for i, k := range tr.keys {
			if err := c.Set(&grcache.Item{Ctx: ctx, Key: k, Value: newCacheItem(i), TTL: cacheTTL}); err != nil {
				b.Fatal(err)
			}
		}
		tr.parallel(b, func(key string) bool {
			var v cacheItem
			return c.Get(ctx, key, &v) == nil && v.Name != ""
		})
	})
}

// BenchmarkCacheRemoteHit: a hit read from Redis, one request at a time, so that the round
// trip dominates: what the cache adds over the client. Every library reads one value of about
// 100 bytes. outgrow is Cache.Get on a RedisStore with DisableLocal (a JSON decode);
// outgrow-bytes is the same with []byte values, so no codec (outgrow-bytes-ctxtimeout: on a
// client with ContextTimeoutEnabled); goredis is the client's own Get(...).Bytes() of the
// value's JSON; goredis-cache is go-redis/cache's Get without local cache (msgpack,
// s2-compressed above 64 bytes).
func BenchmarkCacheRemoteHit(b *testing.B) {
	ctx := context.Background()
	item := newCacheItem(42)
	raw, err := json.Marshal(item)
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, rdb redis.UniversalClient, rt *harness.RoundTrips, get func() error) {
		if err := get(); err != nil { // warm: a connection in the pool
			b.Fatal(err)
		}
		c := countCommands(b, rdb)
		trips := rt.Load()
		b.ReportAllocs()
		for b.Loop() {
			if err := get(); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(rt.Load()-trips)/float64(b.N), "roundtrips/op")
		c.report(b)
	}
	outgrowStore := func(b *testing.B, rdb redis.UniversalClient, prefix string) *cache.RedisStore {
		st, err := cache.NewRedisStore(rdb, cache.RedisConfig{Prefix: prefix})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = st.Close() })
		return st
	}
	b.Run("lib=outgrow", func(b *testing.B) {
		rdb, prefix := harness.Redis(b)
		c, err := cache.New[*cacheItem](outgrowStore(b, rdb, prefix), cache.Config{DisableLocal: true})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		if err := c.Set(ctx, "k", item); err != nil {
			b.Fatal(err)
		}
		rt := harness.CountRoundTrips(rdb)
		run(b, rdb, rt, func() error {
			v, err := c.Get(ctx, "k")
			if err == nil && v.ID != item.ID {
				err = fmt.Errorf("got %+v", v)
			}
			return err
		})
	})
	outgrowBytes := func(b *testing.B, ctxTimeouts bool) {
		rdb, prefix := harness.Redis(b)
		if ctxTimeouts {
			rdb = harness.WithContextTimeouts(b, rdb) // closed after the store, registered later
		}
		c, err := cache.New[[]byte](outgrowStore(b, rdb, prefix), cache.Config{DisableLocal: true})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		if err := c.Set(ctx, "k", raw); err != nil {
			b.Fatal(err)
		}
		rt := harness.CountRoundTrips(rdb)
		run(b, rdb, rt, func() error {
			v, err := c.Get(ctx, "k")
			if err == nil && len(v) != len(raw) {
				err = fmt.Errorf("got %q", v)
			}
			return err
		})
	}
	b.Run("lib=outgrow-bytes", func(b *testing.B) { outgrowBytes(b, false) })
	// The same on a client with ContextTimeoutEnabled: the store then bounds the round trip
	// with the context alone, where it otherwise runs the call on a goroutine of its own.
	b.Run("lib=outgrow-bytes-ctxtimeout", func(b *testing.B) { outgrowBytes(b, true) })
	b.Run("lib=goredis", func(b *testing.B) {
		rdb, prefix := harness.Redis(b)
		if err := rdb.Set(ctx, prefix+"k", raw, cacheTTL).Err(); err != nil {
			b.Fatal(err)
		}
		rt := harness.CountRoundTrips(rdb)
		run(b, rdb, rt, func() error {
			v, err := rdb.Get(ctx, prefix+"k").Bytes()
			if err == nil && len(v) != len(raw) {
				err = fmt.Errorf("got %q", v)
			}
			return err
		})
	})
	b.Run("lib=goredis-cache", func(b *testing.B) {
		rdb, prefix := harness.Redis(b)
		c := grcache.New(&grcache.Options{Redis: rdb})
		if err := c.Set(&grcache.Item{Ctx: ctx, Key: prefix + "k", Value: item, TTL: cacheTTL}); err != nil {
			b.Fatal(err)
		}
		rt := harness.CountRoundTrips(rdb)
		run(b, rdb, rt, func() error {
			var v cacheItem
			err := c.Get(ctx, prefix+"k", &v)
			if err == nil && v.ID != item.ID {
				err = fmt.Errorf("got %+v", v)
			}
			return err
		})
	})
}

// Hit ratio: a trace replayed through each library at 1 %, 5 % and 10 % of its distinct keys.
const (
	ratioKeys     = 100_000
	ratioRequests = 1_000_000
)

// ratioTraces are the traces of BenchmarkCacheHitRatio, built once: "zipf" is 1e6 Zipf
// requests over 1e5 keys; "zipf-scan" interleaves the same requests with a one-pass scan of
// 250,000 keys never seen again (one scan request after every four Zipf ones), which flushes
// an LRU of its popular keys. hit% counts the scan requests, which always miss: at most 80 %.
var ratioTraces = sync.OnceValue(func() []struct {
	name string
	seq  []string
} {
	z := newZipfTrace(ratioKeys, ratioRequests, 7)
	scan := make([]string, 0, ratioRequests+ratioRequests/4)
	for i, k := range z.seq {
		scan = append(scan, k)
		if i%4 == 3 {
			scan = append(scan, fmt.Sprintf("scan:%d", i/4))
		}
	}
	return []struct {
		name string
		seq  []string
	}{{"zipf", z.seq}, {"zipf-scan", scan}}
})

// BenchmarkCacheHitRatio: the share of requests served from the cache (hit%) when a trace is
// replayed through each library, a miss being followed by a write of the key. outgrow is a
// MemoryStore (SIEVE per shard) through Cache.Get and Cache.Set; lru is golang-lru's plain LRU,
// the baseline; otter is W-TinyLFU, with its maintenance run on the calling goroutine so that
// it never lags behind the trace. ns/op is suppressed: it would time a whole trace.
func BenchmarkCacheHitRatio(b *testing.B) {
	ctx := context.Background()
	item := newCacheItem(1)
	type access func(key string) bool // reports a hit; writes the key on a miss
	libs := []struct {
		name string
		make func(b *testing.B, capacity int) access
	}{
		{"outgrow", func(b *testing.B, capacity int) access {
			st, err := cache.NewMemoryStore(cache.MemoryConfig{MaxEntries: capacity})
			if err != nil {
				b.Fatal(err)
			}
			c, err := cache.New[*cacheItem](st, cache.Config{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = c.Close() })
			return func(key string) bool {
				if _, err := c.Get(ctx, key); err == nil {
					return true
				}
				_ = c.Set(ctx, key, item)
				return false
			}
		}},
		{"otter", func(b *testing.B, capacity int) access {
			c := otter.Must(&otter.Options[string, *cacheItem]{
				MaximumSize: capacity,
				Executor:    func(fn func()) { fn() },
			})
			b.Cleanup(func() { c.StopAllGoroutines() })
			return func(key string) bool {
				if _, ok := c.GetIfPresent(key); ok {
					return true
				}
				c.Set(key, item)
				return false
			}
		}},
		{"lru", func(b *testing.B, capacity int) access {
			c, err := lru.New[string, *cacheItem](capacity)
			if err != nil {
				b.Fatal(err)
			}
			return func(key string) bool {
				if _, ok := c.Get(key); ok {
					return true
				}
				c.Add(key, item)
				return false
			}
		}},
	}
	for _, tr := range ratioTraces() {
		for _, pct := range []int{1, 5, 10} {
			capacity := ratioKeys * pct / 100
			for _, lib := range libs {
				b.Run(fmt.Sprintf("trace=%s/cap=%dpct/lib=%s", tr.name, pct, lib.name), func(b *testing.B) {
					var hits, reqs int
					for b.Loop() {
						get := lib.make(b, capacity)
						for _, k := range tr.seq {
							if get(k) {
								hits++
							}
						}
						reqs += len(tr.seq)
					}
					b.ReportMetric(0, "ns/op")
					b.ReportMetric(100*float64(hits)/float64(reqs), "hit%")
				})
			}
		}
	}
}

// TestCacheFleetSingleFlight: 8 instances, each with its own Redis client, 50 goroutines each,
// all ask at once for one key that no layer holds, from a loader that takes 50 ms. outgrow
// takes a lease in Redis, so the whole fleet makes one call; go-redis/cache's Once dedups
// within one process only, so each instance may make its own (logged, not asserted).
func TestCacheFleetSingleFlight(t *testing.T) {
	const instances, goroutines = 8, 50
	const loadTime = 50 * time.Millisecond
	ctx := context.Background()
	rdb, prefix := harness.Redis(t)
	opt := rdb.(*redis.Client).Options()

	// run starts instances×goroutines calls of get at once and returns the loader calls made,
	// and how long the slowest caller waited after the first load returned.
	run := func(get func(i int, load func() (*cacheItem, error)) (*cacheItem, error)) (int64, time.Duration) {
		var calls atomic.Int64
		var loaded atomic.Int64 // UnixNano when the first load returned
		load := func() (*cacheItem, error) {
			calls.Add(1)
			time.Sleep(loadTime)
			loaded.CompareAndSwap(0, time.Now().UnixNano())
			return newCacheItem(7), nil
		}
		var last atomic.Int64
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range instances {
			for range goroutines {
				wg.Go(func() {
					<-start
					v, err := get(i, load)
					if err != nil || v == nil || v.ID != 7 {
						t.Errorf("instance %d: got %+v, %v", i, v, err)
					}
					now := time.Now().UnixNano()
					for {
						l := last.Load()
						if now <= l || last.CompareAndSwap(l, now) {
							break
						}
					}
				})
			}
		}
		close(start)
		wg.Wait()
		return calls.Load(), time.Duration(last.Load() - loaded.Load())
	}

	caches := make([]*cache.Cache[*cacheItem], instances)
	for i := range caches {
		c := redis.NewClient(opt)
		defer c.Close()
		st, err := cache.NewRedisStore(c, cache.RedisConfig{Prefix: prefix + "outgrow:"})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if caches[i], err = cache.New[*cacheItem](st, cache.Config{}); err != nil {
			t.Fatal(err)
		}
		defer caches[i].Close()
	}
	outgrowCalls, outgrowTail := run(func(i int, load func() (*cacheItem, error)) (*cacheItem, error) {
		return caches[i].GetOrLoad(ctx, "cold", func(context.Context, string) (*cacheItem, error) { return load() })
	})

	grcs := make([]*grcache.Cache, instances)
	for i := range grcs {
		c := redis.NewClient(opt)
		defer c.Close()
		grcs[i] = grcache.New(&grcache.Options{Redis: c, LocalCache: grcache.NewTinyLFU(1000, time.Minute)})
	}
	grcCalls, grcTail := run(func(i int, load func() (*cacheItem, error)) (*cacheItem, error) {
		var v cacheItem
		err := grcs[i].Once(&grcache.Item{
			Ctx: ctx, Key: prefix + "goredis-cache:cold", Value: &v, TTL: time.Minute,
			Do: func(*grcache.Item) (any, error) { return load() },
		})
		return &v, err
	})

	t.Logf("%d instances × %d goroutines, cold key, loader %v:", instances, goroutines, loadTime)
	t.Logf("  outgrow:       %d loader call(s); last caller served %v after the load returned", outgrowCalls, outgrowTail.Round(time.Microsecond))
	t.Logf("  goredis-cache: %d loader call(s); last caller served %v after the first load returned", grcCalls, grcTail.Round(time.Microsecond))
	if outgrowCalls != 1 {
		t.Errorf("outgrow made %d loader calls across the fleet, want 1", outgrowCalls)
	}
}
