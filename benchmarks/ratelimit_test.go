// Rate limiting side by side: outgrow/ratelimit against golang.org/x/time/rate (one limiter per key
// in a sync.Map), sethvargo/go-limiter and ulule/limiter in memory, and against
// go-redis/redis_rate and ulule/limiter's Redis store over Redis.
//
// Every limit is generous, so that the benchmarks measure the cost of a decision, not of a
// refusal, except BenchmarkRateLimitAbusive, which measures one client far over its limit. The
// Redis benchmarks report "rediscmds/op", every command Redis executed per decision, including
// those run inside the libraries' Lua scripts, and "scriptcalls/op", the scripts sent
// (EVAL/EVALSHA), which is the number of round trips when nothing is pipelined.
package benchmarks

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	sethvargo "github.com/sethvargo/go-limiter"
	"github.com/sethvargo/go-limiter/memorystore"
	ulule "github.com/ulule/limiter/v3"
	ulmemory "github.com/ulule/limiter/v3/drivers/store/memory"
	ulredis "github.com/ulule/limiter/v3/drivers/store/redis"
	"golang.org/x/time/rate"

	"github.com/outgrow/outgrow/benchmarks/internal/harness"
	"github.com/outgrow/outgrow/ratelimit"
)

const (
	memKeys       = 10_000  // BenchmarkRateLimitMemory
	footprintKeys = 100_000 // BenchmarkRateLimitMemoryFootprint
	redisKeys     = 1_000   // BenchmarkRateLimitRedis
	// redisParallelism goroutines per GOMAXPROCS send decisions to Redis, so that the client side
	// is busy rather than waiting on one round trip at a time, as in a server handling many
	// requests at once.
	redisParallelism = 4
)

// ipKey returns a new string naming the i-th client, like an IPv4 address.
func ipKey(i int) string {
	return "10." + strconv.Itoa(i>>16&255) + "." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255)
}

func ipKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = ipKey(i)
	}
	return keys
}

// allowFunc makes one decision for key with one library, reporting whether it was granted.
type allowFunc func(ctx context.Context, key string) (bool, error)

// warm makes one decision for each key, so that the state of every key exists before the timer
// starts and the steady state is measured.
func warm(b *testing.B, keys []string, allow allowFunc) {
	b.Helper()
	ctx := context.Background()
	for _, k := range keys {
		ok, err := allow(ctx, k)
		if err != nil {
			b.Fatal(err)
		}
		if !ok {
			b.Fatalf("first decision for %q denied", k)
		}
	}
}

// benchGrants runs allow in parallel, each goroutine cycling through keys from its own starting
// point, and fails if any decision errs or is denied: the limits are chosen to grant everything.
func benchGrants(b *testing.B, keys []string, allow allowFunc) {
	b.Helper()
	var next atomic.Uint64
	var denied, failed atomic.Int64
	var firstErr atomic.Value
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		// Start goroutines far apart, so that they do not walk the keys in step.
		i := int(next.Add(1)*7919) % len(keys)
		var d, f int64
		for pb.Next() {
			ok, err := allow(ctx, keys[i])
			if err != nil {
				if f == 0 {
					firstErr.CompareAndSwap(nil, err)
				}
				f++
			} else if !ok {
				d++
			}
			if i++; i == len(keys) {
				i = 0
			}
		}
		denied.Add(d)
		failed.Add(f)
	})
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d decisions failed, first: %v", n, b.N, firstErr.Load())
	}
	if n := denied.Load(); n > 0 {
		b.Fatalf("%d of %d decisions denied under a limit meant to grant everything", n, b.N)
	}
}

// ---- in memory ------------------------------------------------------------------------------

// generous is 1,000,000 decisions per second per key, in bursts of as many: far more than one
// key sees here, so every decision is a grant.
const generous = 1_000_000

func BenchmarkRateLimitMemory(b *testing.B) {
	keys := ipKeys(memKeys)

	b.Run("lib=outgrow", func(b *testing.B) {
		store, err := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
		if err != nil {
			b.Fatal(err)
		}
		l, err := ratelimit.New(store, ratelimit.PerSecond(generous), ratelimit.Config{Name: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		allow := func(ctx context.Context, key string) (bool, error) {
			r, err := l.Allow(ctx, key)
			return r.Allowed, err
		}
		warm(b, keys, allow)
		benchGrants(b, keys, allow)
	})

	b.Run("lib=xtimerate", func(b *testing.B) {
		m := newPerKeyRate(rate.Limit(generous), generous)
		allow := func(_ context.Context, key string) (bool, error) { return m.allow(key), nil }
		warm(b, keys, allow)
		benchGrants(b, keys, allow)
	})

	b.Run("lib=sethvargo", func(b *testing.B) {
		store, err := memorystore.New(&memorystore.Config{Tokens: generous, Interval: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		defer store.Close(context.Background())
		allow := sethvargoAllow(store)
		warm(b, keys, allow)
		benchGrants(b, keys, allow)
	})

	b.Run("lib=ulule", func(b *testing.B) {
		l := ulule.New(ulmemory.NewStore(), ulule.Rate{Period: time.Second, Limit: generous})
		allow := ululeAllow(l)
		warm(b, keys, allow)
		benchGrants(b, keys, allow)
	})
}

// perKeyRate is the usual way to limit many keys with x/time/rate: one *rate.Limiter per key.
type perKeyRate struct {
	m     sync.Map // key -> *rate.Limiter
	limit rate.Limit
	burst int
}

func newPerKeyRate(limit rate.Limit, burst int) *perKeyRate {
	return &perKeyRate{limit: limit, burst: burst}
}

func (p *perKeyRate) allow(key string) bool {
	v, ok := p.m.Load(key)
	if !ok {
		// LoadOrStore only on a miss: calling it first would build a Limiter per decision.
		v, _ = p.m.LoadOrStore(key, rate.NewLimiter(p.limit, p.burst))
	}
	return v.(*rate.Limiter).Allow()
}

func sethvargoAllow(store sethvargo.Store) allowFunc {
	return func(ctx context.Context, key string) (bool, error) {
		_, _, _, ok, err := store.Take(ctx, key)
		return ok, err
	}
}

func ululeAllow(l *ulule.Limiter) allowFunc {
	return func(ctx context.Context, key string) (bool, error) {
		c, err := l.Get(ctx, key)
		return !c.Reached, err
	}
}

// BenchmarkRateLimitMemoryFootprint reports the heap held per key ("B/key") once 100,000 keys
// have each made one decision, measured from HeapAlloc after a GC. Each key is a new string,
// as it would be when read from a request, so a library that keeps the key pays for it. The
// limit (100 per hour) keeps every key's state alive for the whole measurement. ns/op, B/op and
// allocs/op are for filling the store with the 100,000 keys.
func BenchmarkRateLimitMemoryFootprint(b *testing.B) {
	ctx := context.Background()
	const perHour = 100

	b.Run("lib=outgrow", func(b *testing.B) {
		footprint(b, func() (any, func(), error) {
			store, err := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
			if err != nil {
				return nil, nil, err
			}
			l, err := ratelimit.New(store, ratelimit.PerHour(perHour), ratelimit.Config{Name: "bench"})
			if err != nil {
				return nil, nil, err
			}
			if err := fill(ctx, func(ctx context.Context, key string) (bool, error) {
				r, err := l.Allow(ctx, key)
				return r.Allowed, err
			}); err != nil {
				return nil, nil, err
			}
			if n := store.Stats().Keys; n != footprintKeys {
				b.Fatalf("store holds %d keys, want %d", n, footprintKeys)
			}
			return l, func() {}, nil
		})
	})

	b.Run("lib=xtimerate", func(b *testing.B) {
		footprint(b, func() (any, func(), error) {
			m := newPerKeyRate(rate.Every(time.Hour/perHour), perHour)
			err := fill(ctx, func(_ context.Context, key string) (bool, error) { return m.allow(key), nil })
			return m, func() {}, err
		})
	})

	b.Run("lib=sethvargo", func(b *testing.B) {
		footprint(b, func() (any, func(), error) {
			store, err := memorystore.New(&memorystore.Config{Tokens: perHour, Interval: time.Hour})
			if err != nil {
				return nil, nil, err
			}
			err = fill(ctx, sethvargoAllow(store))
			return store, func() { _ = store.Close(ctx) }, err
		})
	})

	b.Run("lib=ulule", func(b *testing.B) {
		footprint(b, func() (any, func(), error) {
			l := ulule.New(ulmemory.NewStore(), ulule.Rate{Period: time.Hour, Limit: perHour})
			err := fill(ctx, ululeAllow(l))
			return l, func() {}, err
		})
	})
}

// fill makes one decision for each of footprintKeys new keys.
func fill(ctx context.Context, allow allowFunc) error {
	for i := range footprintKeys {
		if _, err := allow(ctx, ipKey(i)); err != nil {
			return err
		}
	}
	return nil
}

// footprint builds a store with build and reports the heap it holds per key, averaged over the
// iterations. build returns what keeps the store alive and how to release it.
func footprint(b *testing.B, build func() (any, func(), error)) {
	b.ReportAllocs()
	var total float64
	for b.Loop() {
		b.StopTimer()
		before := liveHeap()
		b.StartTimer()
		kept, release, err := build()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		after := liveHeap()
		runtime.KeepAlive(kept)
		release()
		total += float64(int64(after) - int64(before))
		b.StartTimer()
	}
	b.ReportMetric(total/float64(b.N)/footprintKeys, "B/key")
}

// liveHeap returns HeapAlloc once a garbage collection no longer frees anything: the store of
// the previous iteration may take more than one cycle to go (ulule's memory store is released
// by a finalizer that stops its cleaning goroutine).
func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	for range 4 {
		prev := m.HeapAlloc
		time.Sleep(time.Millisecond) // let finalizers, and the goroutines they stop, run
		runtime.GC()
		runtime.ReadMemStats(&m)
		if m.HeapAlloc >= prev {
			break
		}
	}
	return m.HeapAlloc
}

// ---- Redis ----------------------------------------------------------------------------------

// redisGenerous is 1,000,000 decisions per minute per key: every decision is a grant.
const redisGenerous = 1_000_000

// redisOutgrow returns a Limiter over a RedisStore under prefix. The Timeout is raised from its
// 50 ms default so that a slow moment of this shared machine does not send decisions to the
// local fallback, which would no longer measure Redis; checkOutgrow fails the benchmark if any
// decision was made without Redis all the same.
func redisOutgrow(b *testing.B, rdb redis.UniversalClient, prefix, name string, limit ratelimit.Limit, cfg ratelimit.Config) *ratelimit.Limiter {
	b.Helper()
	store, err := ratelimit.NewRedisStore(rdb, ratelimit.RedisConfig{Prefix: prefix, Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	return redisOutgrowOn(b, store, name, limit, cfg)
}

func redisOutgrowOn(b *testing.B, store ratelimit.Store, name string, limit ratelimit.Limit, cfg ratelimit.Config) *ratelimit.Limiter {
	b.Helper()
	cfg.Name = name
	l, err := ratelimit.New(store, limit, cfg)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

func checkOutgrow(b *testing.B, ls ...*ratelimit.Limiter) {
	b.Helper()
	for _, l := range ls {
		if s := l.Stats(); s.StoreErrors != 0 || s.Fallback != 0 {
			b.Fatalf("limiter %s: %d store errors, %d decisions by the fallback", l.Name(), s.StoreErrors, s.Fallback)
		}
	}
}

// redisRate returns a redis_rate Limiter and deletes its keys when b ends: redis_rate puts its
// own "rate:" before every key, so they fall outside the harness's prefix.
func redisRate(b *testing.B, rdb redis.UniversalClient, prefix string) *redis_rate.Limiter {
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, "rate:"+prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			_ = rdb.Unlink(ctx, iter.Val()).Err()
		}
	})
	return redis_rate.NewLimiter(rdb)
}

func redisRateAllow(l *redis_rate.Limiter, prefix string, limit redis_rate.Limit) allowFunc {
	return func(ctx context.Context, key string) (bool, error) {
		r, err := l.Allow(ctx, prefix+key, limit)
		if err != nil {
			return false, err
		}
		return r.Allowed > 0, nil
	}
}

func outgrowAllow(l *ratelimit.Limiter) allowFunc {
	return func(ctx context.Context, key string) (bool, error) {
		r, err := l.Allow(ctx, key)
		return r.Allowed, err
	}
}

// cmdCounter reads Redis INFO commandstats around a benchmark.
type cmdCounter struct {
	rdb    redis.UniversalClient
	before map[string]int64
}

func countCommands(b *testing.B, rdb redis.UniversalClient) *cmdCounter {
	b.Helper()
	before, err := harness.CommandStats(context.Background(), rdb)
	if err != nil {
		b.Fatal(err)
	}
	return &cmdCounter{rdb: rdb, before: before}
}

// notWork are the commands that are not decisions: the readings of INFO themselves and the
// set-up of new connections of the client's pool.
var notWork = map[string]bool{"info": true, "hello": true, "client|setinfo": true, "auth": true, "select": true, "ping": true}

var scriptCmds = map[string]bool{"eval": true, "evalsha": true, "eval_ro": true, "evalsha_ro": true, "fcall": true, "fcall_ro": true}

// report reports rediscmds/op and scriptcalls/op since countCommands.
func (c *cmdCounter) report(b *testing.B) {
	b.Helper()
	after, err := harness.CommandStats(context.Background(), c.rdb)
	if err != nil {
		b.Fatal(err)
	}
	var cmds, scripts int64
	for cmd, n := range after {
		d := n - c.before[cmd]
		if notWork[cmd] {
			continue
		}
		cmds += d
		if scriptCmds[cmd] {
			scripts += d
		}
	}
	b.ReportMetric(float64(cmds)/float64(b.N), "rediscmds/op")
	b.ReportMetric(float64(scripts)/float64(b.N), "scriptcalls/op")
}

func benchRedisGrants(b *testing.B, rdb redis.UniversalClient, keys []string, allow allowFunc) {
	b.Helper()
	warm(b, keys, allow)
	c := countCommands(b, rdb)
	b.SetParallelism(redisParallelism)
	benchGrants(b, keys, allow)
	c.report(b)
}

func BenchmarkRateLimitRedis(b *testing.B) {
	keys := ipKeys(redisKeys)

	b.Run("lib=outgrow", func(b *testing.B) {
		rdb, prefix := harness.Redis(b)
		l := redisOutgrow(b, rdb, prefix, "bench", ratelimit.PerMinute(redisGenerous), ratelimit.Config{})
		benchRedisGrants(b, rdb, keys, outgrowAllow(l))
		checkOutgrow(b, l)
	})

	// The same on a client with ContextTimeoutEnabled, the setting the README recommends: no
	// goroutine per call.
	b.Run("lib=outgrow-ctxtimeout", func(b *testing.B) {
		def, prefix := harness.Redis(b)
		rdb := harness.WithContextTimeouts(b, def)
		l := redisOutgrow(b, rdb, prefix, "bench", ratelimit.PerMinute(redisGenerous), ratelimit.Config{})
		benchRedisGrants(b, rdb, keys, outgrowAllow(l))
		checkOutgrow(b, l)
	})

	b.Run("lib=redis_rate", func(b *testing.B) {
		rdb, prefix := harness.Redis(b)
		l := redisRate(b, rdb, prefix)
		benchRedisGrants(b, rdb, keys, redisRateAllow(l, prefix, redis_rate.PerMinute(redisGenerous)))
	})

	b.Run("lib=ulule-redis", func(b *testing.B) {
		rdb, prefix := harness.Redis(b)
		store, err := ulredis.NewStoreWithOptions(rdb, ulule.StoreOptions{Prefix: prefix + "ulule"})
		if err != nil {
			b.Fatal(err)
		}
		l := ulule.New(store, ulule.Rate{Period: time.Minute, Limit: redisGenerous})
		benchRedisGrants(b, rdb, keys, ululeAllow(l))
	})
}

// BenchmarkRateLimitLayered applies three limits to every request, as the article's service
// does, all generous enough to grant everything: a global limit and a login limit per IP and a
// limit per API key. With keys=same the three share one key (one entity); with keys=distinct
// they are keyed by an IP, an API key and a user, three entities. outgrow decides the three in
// one AllowAll, one script call on a single Redis whatever the keys; redis_rate needs one Allow
// per limit.
func BenchmarkRateLimitLayered(b *testing.B) {
	keys := ipKeys(redisKeys)
	limit := ratelimit.PerMinute(redisGenerous)
	// layerKeys returns the keys of the three layers for the request of key.
	for _, tc := range []struct {
		name      string
		layerKeys func(key string) [3]string
	}{
		{"keys=same", func(key string) [3]string { return [3]string{key, key, key} }},
		{"keys=distinct", func(key string) [3]string { return [3]string{key, "apikey-" + key, "user-" + key} }},
	} {
		b.Run(tc.name+"/lib=outgrow", func(b *testing.B) {
			rdb, prefix := harness.Redis(b)
			store, err := ratelimit.NewRedisStore(rdb, ratelimit.RedisConfig{Prefix: prefix, Timeout: time.Second})
			if err != nil {
				b.Fatal(err)
			}
			global := redisOutgrowOn(b, store, "global", limit, ratelimit.Config{})
			login := redisOutgrowOn(b, store, "login", limit, ratelimit.Config{})
			apiKey := redisOutgrowOn(b, store, "apikey", limit, ratelimit.Config{})
			benchRedisGrants(b, rdb, keys, func(ctx context.Context, key string) (bool, error) {
				k := tc.layerKeys(key)
				d, err := ratelimit.AllowAll(ctx,
					ratelimit.Layer{Limiter: global, Key: k[0]},
					ratelimit.Layer{Limiter: login, Key: k[1]},
					ratelimit.Layer{Limiter: apiKey, Key: k[2]})
				return d.Allowed, err
			})
			checkOutgrow(b, global, login, apiKey)
		})

		b.Run(tc.name+"/lib=redis_rate", func(b *testing.B) {
			rdb, prefix := harness.Redis(b)
			l := redisRate(b, rdb, prefix)
			rl := redis_rate.PerMinute(redisGenerous)
			benchRedisGrants(b, rdb, keys, func(ctx context.Context, key string) (bool, error) {
				k := tc.layerKeys(key)
				for i, policy := range [...]string{"global:", "login:", "apikey:"} {
					r, err := l.Allow(ctx, prefix+policy+k[i], rl)
					if err != nil || r.Allowed == 0 {
						return false, err
					}
				}
				return true, nil
			})
		})
	}
}

// BenchmarkRateLimitAbusive hammers one key, serially, at far more than its limit of 10 per
// minute: after the first 10 decisions nearly every one is a denial. outgrow's deny cache
// refuses the key without asking Redis until its RetryAfter; redis_rate asks Redis every time.
func BenchmarkRateLimitAbusive(b *testing.B) {
	const perMinute = 10
	const key = "203.0.113.7"

	bench := func(b *testing.B, rdb redis.UniversalClient, allow allowFunc) {
		b.Helper()
		ctx := context.Background()
		// Use up the limit, so that the timed loop sees the abusive client, not its first burst.
		for range perMinute {
			if _, err := allow(ctx, key); err != nil {
				b.Fatal(err)
			}
		}
		c := countCommands(b, rdb)
		var denied int
		b.ReportAllocs()
		for b.Loop() {
			ok, err := allow(ctx, key)
			if err != nil {
				b.Fatal(err)
			}
			if !ok {
				denied++
			}
		}
		c.report(b)
		if denied < b.N/2 {
			b.Fatalf("only %d of %d decisions denied over the limit", denied, b.N)
		}
	}

	b.Run("lib=outgrow", func(b *testing.B) {
		rdb, prefix := harness.Redis(b)
		l := redisOutgrow(b, rdb, prefix, "bench", ratelimit.PerMinute(perMinute), ratelimit.Config{})
		bench(b, rdb, outgrowAllow(l))
		checkOutgrow(b, l)
	})

	b.Run("lib=redis_rate", func(b *testing.B) {
		rdb, prefix := harness.Redis(b)
		l := redisRate(b, rdb, prefix)
		bench(b, rdb, redisRateAllow(l, prefix, redis_rate.PerMinute(perMinute)))
	})
}
