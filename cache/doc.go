// Package cache is the article's layered cache: typed data in process memory (node-cache's
// 300 s TTL), Redis as the layer shared by every instance, and Cache-Control headers for
// browsers and CDNs.
//
//	store, _ := cache.NewRedisStore(rdb, cache.RedisConfig{Prefix: "cache:profiles:"})
//	profiles, _ := cache.New[Profile](store, cache.Config{})
//	p, err := profiles.GetOrLoad(ctx, userID, func(ctx context.Context, id string) (Profile, error) {
//		return db.LoadProfile(ctx, id) // return cache.ErrNotFound for a missing row
//	})
//	// after an update: the fleet drops the key and no load in flight stores the old row
//	err = profiles.Delete(ctx, userID)
//
// # Backends
//
// A [Cache] works over one [Store]:
//
//   - [MemoryStore]: in process only, for data that may differ briefly between instances
//     (configuration, feature flags) and for tests. A hit is a map lookup: no decoding, no
//     allocation.
//   - [RedisStore]: Redis shared by every instance (standalone, Sentinel or Cluster), with a
//     MemoryStore in front (the local layer, L1) unless RedisConfig.NoLocal. A read looks in
//     L1, then Redis (one GET), then calls the loader; what Redis returns fills L1 until the
//     time the Redis entry itself ends, so L1 never outlives it. Writes go to Redis first, then
//     to L1.
//
// Switching from one to the other changes the argument of New only.
//
// # Freshness
//
// One [Policy] says how long data is fresh (TTL, 300 s by default) and how long it may then be
// served stale: within StaleWhileRevalidate, GetOrLoad returns the stale value at once and
// refreshes it once in the background; within StaleIfError, it returns the stale value when the
// refresh fails. A loader's [ErrNotFound] is cached for Config.NegativeTTL (30 s); other errors
// are never cached. Config.Jitter spreads expiries, and Config.EarlyRefresh refreshes hot data
// shortly before it expires (XFetch), so that it never expires under its readers.
//
// # Loads
//
// Concurrent GetOrLoad calls for one key share one load per process. On a RedisStore they
// share one load in the whole fleet: a miss takes a lease in Redis (one script: the value if
// it is there, else the lease); the holder loads and writes the value with a compare-and-set
// on its lease; the other instances wait to be woken by the announcement of the fill, not by
// polling, and read it. A Set or Delete revokes the lease, so a load that read the source
// before a write cannot store its older value after it. A load runs detached from its
// callers (bounded by Config.LoadTimeout): a caller that gives up gets its context's error and
// the others get the value. A panicking loader gives every waiter [ErrLoaderPanic].
//
// # Coherence
//
// Each Set and Delete is announced on the channel prefix+"invalidate" by the script that makes
// it; every other instance drops the key from its L1 when it hears it. On a loopback Redis the
// other instances stop serving the old value within about 0.1 ms (p50) and a few ms (p99) of
// the write returning (TestCoherenceLatency).
//
// Fills of L1 are guarded by generations: a fill that started before an invalidation of its
// key is not stored after it. Pub/sub is at most once, so announcements made while an
// instance's subscription is down are lost: when the subscription is made again, L1 is flushed.
// A connection that dies quietly is found by a PING after PingInterval (1 s) of silence, and
// while the subscription is down, entries filled from Redis live at most RetryInterval
// (500 ms). So the staleness of L1 is bounded by the announcement's delivery while subscribed,
// and by the time to notice a lost subscription otherwise.
//
// # Failures
//
// Every call to Redis is bounded by RedisConfig.Timeout (100 ms). When Redis fails, reads go
// on without it, from L1 and the loader, and Redis is left alone for RetryInterval before one
// call tries it again; with Config.FailOnStoreError they return an error matching
// [ErrUnavailable] instead. Set and Delete return an error matching ErrUnavailable, and the key
// leaves this instance's L1, so that it does not serve what the fleet cannot see. Hooks.OnStoreError
// sees every failure.
//
// # HTTP
//
// [Middleware] makes GET and HEAD responses cacheable by browsers and CDNs from the same
// [Policy] as the data cache: max-age is TTL, stale-while-revalidate and stale-if-error are its
// stale windows, and MiddlewareConfig adds s-maxage for shared caches, public or private,
// immutable or no-store. A response is never marked public when the request carries
// Authorization or a session cookie (unless AllowCredentialed, which then adds Vary:
// Authorization, Cookie) or when it sets a cookie. Vary is merged with the handler's, and gets
// Accept-Encoding for encoded bodies. Each 200 gets a strong ETag hashed from its body and
// Content-Encoding, and If-None-Match and If-Modified-Since are answered with 304 and no body.
// Bodies above MaxBody (1 MiB), and responses that flush, stream through at once without an
// ETag. A Cache-Control or ETag set by the handler always wins.
//
// # Redis keys
//
// With the default prefix "cache:":
//
//	cache:{key}          string: the envelope (version, flags, fresh/stale/kept-until times) and the value
//	cache:{key}:lease    string: the token of the instance loading key (PX LoadTimeout)
//	cache:invalidate     pub/sub channel: one message per changed key
//
// The key is the hash tag, so a key and its lease share a Cluster slot and keys spread over
// the Cluster. Redis's default maxmemory-policy is noeviction, under which a full Redis refuses
// writes: give a Redis that caches allkeys-lfu or volatile-lfu.
//
// # Performance
//
// An L1 hit is one hash, a lock-free probe of atomic slots, a clock read, an atomic flag and a
// striped counter: no lock, no allocation. An L2 hit is one GET and one decode. A miss with a
// loader costs a GET, the lease script and the fill script. See bench_test.go and the
// comparisons in the benchmarks module.
package cache
