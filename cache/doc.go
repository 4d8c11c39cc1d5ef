// Package cache is a layered cache: typed data in process memory (fresh for 300 s by default),
// Redis as the layer shared by every instance, and Cache-Control headers for browsers and CDNs.
//
//	store, _ := cache.NewRedisStore(rdb, cache.RedisConfig{Prefix: "myapp:"})
//	profiles, _ := cache.New[Profile](store, cache.Config{Namespace: "profiles"})
//	p, err := profiles.GetOrLoad(ctx, userID, func(ctx context.Context, id string) (Profile, error) {
//		return db.LoadProfile(ctx, id) // return cache.ErrNotFound for a missing row
//	})
//	// after an update: the fleet drops the key and no load in flight stores the old row
//	err = profiles.Delete(ctx, userID)
//
// # Stores and layers
//
// A [Cache] of values V works over a [Store]. One store serves any number of caches, of any
// value types, each under its own Config.Namespace:
//
//   - [MemoryStore]: process memory, for data that may differ briefly between instances
//     (configuration, feature flags) and for tests. Its caches share one local layer, of one
//     capacity. A hit is a lookup: no decoding, no allocation.
//   - [RedisStore]: Redis, shared by every instance (standalone, Sentinel or Cluster). Each
//     Cache keeps a local layer of its own in front (sized by Config.Local, or none with
//     Config.DisableLocal), holding decoded values. A read looks in the local layer, then
//     Redis (one GET), then calls the loader; what Redis returns fills the local layer until
//     the time the Redis entry itself ends, so the local layer never outlives it. Writes go
//     to Redis first, then to the local layer. The store runs one subscription for all its
//     caches.
//
// Switching from one store to the other changes the argument of New only. Store is sealed
// (its methods are unexported): a Cache and its store work as one.
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
// callers: a caller that gives up gets its context's error and the others get the value.
// Config.LoadTimeout bounds the loader, even one that ignores its context: at LoadTimeout its
// callers get an error (or a stale value) and the next call loads afresh. A panicking loader
// gives every waiter [ErrLoaderPanic].
//
// # Coherence
//
// Each Set and Delete is announced, with its namespace, on the channel Prefix+"invalidate" by
// the script that makes it; every other instance drops the key from the local layer of its
// Cache of that namespace when it hears it.
//
// Fills of a local layer are guarded by generations: a fill that started before an
// invalidation of its key is not stored after it. Pub/sub is at most once, so announcements
// made while an instance's subscription is down are lost: when the subscription is lost, and
// again when it is made again, the local layers are flushed, and while it is down what they
// store lives at most RedisConfig.RetryInterval. A connection that dies quietly is found by a
// PING after RedisConfig.PingInterval of silence, so within two PingIntervals. So once a Set
// or Delete has returned, an instance serves the value it replaced for at most the
// announcement's delivery while subscribed, two PingIntervals after its connection froze, or
// RetryInterval while its subscription is down.
//
// # Failures
//
// Every call to Redis is bounded by RedisConfig.Timeout. When the caller's context ends
// first, the call returns its error and Redis is not counted as failing. When Redis fails,
// reads go on without it, from the local layer (emptied once the subscription is lost: see
// Coherence) and the loader, and after RedisConfig.FailFastAfter consecutive failures Redis is
// left alone for RetryInterval before one call tries it again; with Config.FailOnStoreError
// reads return an error matching [ErrUnavailable] instead. Set and Delete return an error
// matching ErrUnavailable, and the key leaves this instance's local layer, so that it does not
// serve what the fleet cannot see. Hooks.OnStoreError sees every failure.
//
// # HTTP
//
// [Middleware] makes GET and HEAD responses cacheable by browsers and CDNs from the same
// [Policy] as the data cache: max-age is TTL, stale-while-revalidate and stale-if-error are its
// stale windows, and MiddlewareConfig adds s-maxage for shared caches, public or private,
// immutable or no-store. A response is never marked public when the request carries
// Authorization or a session cookie (unless AllowCredentialed, which then adds Vary:
// Authorization, Cookie) or when it sets a cookie. Give MiddlewareConfig.SessionCookies the
// cookie name the session manager reports; its "__Host-" and "__Secure-" forms match too, and
// without SessionCookies any cookie counts. Vary is merged with the handler's, and gets
// Accept-Encoding for encoded bodies. Each 200 gets a strong ETag hashed from its body and
// Content-Encoding, and If-None-Match and If-Modified-Since are answered with 304 and no body.
// Bodies above MaxBody (1 MiB), and responses that flush, stream through at once without an
// ETag. A Cache-Control or ETag set by the handler always wins.
//
// # Redis keys
//
// With the default prefix "cache:", for a Cache of Namespace "users" (a Cache without a
// namespace has no "users:"):
//
//	cache:users:{key}         string: the envelope (version, flags, fresh/stale/kept-until times) and the value
//	cache:users:{key}:lease   string: the token of the instance loading key
//	cache:invalidate          pub/sub channel: one message per changed key, naming its namespace
//
// The key is the hash tag, so a key and its lease share a Cluster slot and keys spread over
// the Cluster. Redis's default maxmemory-policy is noeviction, under which a full Redis refuses
// writes: give a Redis that caches allkeys-lfu or volatile-lfu.
//
// # Costs
//
// A local hit takes no lock and allocates nothing. A hit in Redis is one GET and one decode;
// GetMany is one MGET per Cluster slot, in one round trip. A miss with a loader costs a GET,
// the lease script and the fill script. Measured figures are in the benchmarks module's
// README.
package cache
