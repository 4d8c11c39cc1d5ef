// Package ratelimit limits how often a key (a client IP, an API key, a user) may do something,
// in process memory or shared by every instance of a service through Redis, with net/http
// middleware that layers several limits on one request.
//
//	store, _ := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{}) // or NewRedisStore(rdb, ...)
//	login, _ := ratelimit.New(store, ratelimit.Limit{Rate: 5, Period: time.Minute, Strict: true},
//		ratelimit.Config{Name: "login", FailurePolicy: ratelimit.FailClosed})
//	r, err := login.Allow(ctx, clientIP)
//	if err != nil || !r.Allowed {
//		// refuse: over the limit (r.RetryAfter says for how long), or, failing closed, the
//		// store is down (err is ErrUnavailable)
//	}
//
// # Algorithms
//
// A [Limit] is Rate units per Period, enforced in one of two ways, on every store alike:
//
//   - GCRA (the default): one unit comes back every Period/Rate, and up to Burst units can be
//     taken at once after a quiet spell. The state of a key is one timestamp. Over any interval
//     of length t a key gets at most Burst + Rate*t/Period units, so a client that saved up its
//     burst may take up to 2*Rate units within one Period.
//   - Strict: at most Rate units in any window of length Period, a sliding log of each key's
//     last Rate grants (so Rate is at most [MaxStrictRate]). A client that took Rate units waits
//     until the oldest of them is Period old.
//
// Use Strict where the count per window is the promise: login attempts (5 per minute per IP) are
// a brute-force budget, and GCRA's burst would let a patient attacker try 9 times in the first
// minute. Use GCRA for limits that protect capacity, such as 1000 requests per minute per IP and
// 100 calls per minute per API key: what matters there is the sustained rate, which GCRA holds
// exactly with one timestamp per key, and its burst absorbs the clumps of real traffic (a page
// load, a batch of calls) that a window count would refuse. Make the API key limit Strict if its
// number is a quota that customers count per minute.
//
// A denied request consumes nothing, so a client retrying in a loop is not kept out longer than
// the limit says, and Result.RetryAfter is the exact wait for the request to be granted, not the
// length of a window.
//
// # Backends
//
// [MemoryStore] keeps keys in sharded tables in process memory, with a cap on the number of keys
// (MaxKeys) that a flood of distinct keys cannot lift, and without handing a throttled key a
// fresh budget when it evicts. It is for a single instance, for tests, and for the local
// fallback of a Redis-backed limiter. [RedisStore] keeps keys in Redis (standalone, Sentinel or
// Cluster), so that every instance shares them, with the time taken from the Redis server. Both
// decide every request the same way, proven by one test suite run on both. The [Store]
// interface is sealed: a Limiter and its store work as one.
//
// # Layered limits
//
// [AllowAll] and [Middleware] apply several limits to one request all or nothing: if the login
// limit refuses, the global limit is not charged either. The layers of a store are decided
// atomically: other requests never see units that a request does not keep, a layer is reported
// denied only when its key lacks the units, and the same requests get the same decisions on
// every store. On Redis that takes one round trip when the keys are on one server or are one
// key's (the policies of one key share a Cluster slot), and two when they span Cluster slots
// (see [RedisStore]). The [Decision] names every policy that denied.
//
// # Failures
//
// A Redis-backed limiter never waits much longer than RedisConfig.Timeout for Redis and never
// lets go-redis resend a script that may have run. After FailFastAfter consecutive failures the
// store answers at once without calling Redis for RedisConfig.RetryInterval, then probes, and is
// used again as soon as Redis answers. Meanwhile each [Limiter] applies its [FailurePolicy]:
// FailLocal (the default) limits on a private in-memory store, FailOpen lets requests through,
// FailClosed refuses them with [ErrUnavailable]. Use FailClosed for login limits (an outage must
// not open a brute-force window) and FailLocal for broad limits (an outage of Redis must not take
// the site down).
//
// # Deny cache
//
// A Limiter over a RedisStore remembers keys that Redis denied until their RetryAfter, and
// refuses them again without any call: a client hammering at a hundred times its limit costs
// Redis about one call per RetryAfter per instance. Since Redis only denies a key that lacks the
// units, a cached denial is never wrong before its RetryAfter, unless the key is reset
// ([Limiter.Reset] clears the cache of its own instance only), or units it lacked were given
// back: by a request whose layers span stores (see [AllowAll]), or by one held up between its
// two phases on a Cluster (see [RedisStore]).
//
// # HTTP
//
// [Middleware] applies [Rule]s to requests: a Limiter, a [KeyFunc] ([KeyByIP], [KeyByHeader]),
// an optional route match ([Routes]), a cost, a message, and a dry-run switch. Every response
// lists the policies that applied in the IETF RateLimit-Policy field, and their state in the
// RateLimit field (all of them on a granted request, the ones that refused it on a 429):
//
//	RateLimit-Policy: "global";q=1000;w=60, "login";q=5;w=60
//	RateLimit: "global";r=995;t=1, "login";r=0;t=60
//
// A denied request gets 429, Retry-After in whole seconds rounded up, and a JSON body naming the
// policy, such as {"error":"Too many login attempts. Try again in 12 seconds.","policy":"login",
// "retry_after":12}; error bodies never contain keys or Redis errors.
//
// [KeyByIP] uses the TCP peer's address unless the peer is a configured trusted proxy, in which
// case it reads the forwarding header from the right and stops at the first address that is not
// a trusted proxy, so a client cannot choose its own key by sending X-Forwarded-For. IPv6
// clients are grouped by /56, since one subscriber can rotate addresses inside its prefix. A
// request without a usable address is refused (400), never let through unlimited.
//
// # Observability
//
// [Hooks] see every decision, [Limiter.Stats], [MemoryStore.Stats] and [RedisStore.Stats] count
// them, and Config.Logger receives the start and the end of the failure policy, never one line
// per request. Keys never appear in logs; hooks receive them, or, for a Limiter whose keys are
// secrets (Config.SecretKeys, for API keys), a digest of them ([Limiter.KeyDigest]).
//
// # Redis keys
//
// No key name contains a key: each key is named by its digest, a keyed hash (HMAC-SHA256) under
// RedisConfig.Secret or, by default, under a random secret stored in Redis at prefix+"secret" by
// the first instance. The digest is the hash tag, so the policies of one key share a Cluster
// slot while keys spread across the cluster:
//
//	ratelimit:{<digest>}:global        GCRA: a string, the next arrival time (µs); it expires
//	                                   when the key is back to its full burst
//	ratelimit:{<digest>}:login:log     Strict: a list of grant times (µs); it expires a Period
//	                                   after the newest
//	<either of those>:holds            on a Cluster only: the units that requests spanning
//	                                   slots hold between their two round trips
package ratelimit
