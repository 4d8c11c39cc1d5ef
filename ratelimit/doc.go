// Package ratelimit limits how often a key (a client IP, an API key, a user) may do something,
// in process memory or shared by every instance of a service through Redis, with net/http
// middleware that layers several limits on one request.
//
// The defaults follow the article this module comes from: 1000 requests per minute per IP
// globally, 5 login attempts per minute per IP, and 100 calls per minute per API key, answered
// with 429 and a JSON error such as {"error":"Too many login attempts. Try again in 1 minute."}.
//
//	store, _ := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{}) // or NewRedisStore(rdb, ...)
//	login, _ := ratelimit.New(store, ratelimit.PerMinute(5), ratelimit.Config{Name: "login", Failure: ratelimit.FailClosed})
//	r, err := login.Allow(ctx, clientIP)
//	if err != nil || !r.Allowed {
//		// refuse: over the limit (r.RetryAfter says for how long), or, failing closed, the
//		// store is down (err is ErrUnavailable)
//	}
//
// # Algorithm
//
// Every store runs GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp
// per key): a [Limit] of Rate units per Period grants one unit every Period/Rate and up to Burst
// units at once after a quiet spell. Over any interval of length t, a key is granted at most
// Burst + Rate*t/Period units; with the default Burst (= Rate) that is up to 2*Rate within one
// Period for a client that saved up its burst. A denied request consumes nothing, so a client
// retrying in a loop is not kept out longer than the limit says. Result.RetryAfter is the exact
// wait for the request to be granted, not the length of a window.
//
// # Backends
//
// [MemoryStore] keeps keys in sharded maps in process memory, with a cap on the number of keys
// (MaxKeys) that a flood of distinct keys cannot lift, and without handing a throttled key a
// fresh budget when it evicts. It is for a single instance, for tests, and for the local fallback
// of a Redis-backed limiter. [RedisStore] keeps keys in Redis (standalone, Sentinel or Cluster),
// so that every instance shares them: one Lua script call, one round trip, per decision, with
// the time taken from the Redis server. Both implement [Store] with the same semantics, proven
// by one test suite run on both.
//
// # Layered limits
//
// [AllowAll] and [Middleware] apply several limits to one request all or nothing: if the login
// limit refuses, the global limit is not charged either. On Redis, the policies of one key are
// decided by one script call and different keys by one pipeline, so a request with three limits
// still costs one round trip. The [Decision] names every policy that denied.
//
// # Failures
//
// A Redis-backed limiter never waits more than RedisConfig.Timeout (50 ms) for Redis and never
// lets go-redis resend a script that may have run. After a failure the store answers at once
// without calling Redis for RedisConfig.RetryInterval, then probes, and is used again as soon as
// Redis answers. Meanwhile each [Limiter] applies its [Failure] policy: FailLocal (the default)
// limits on a private in-memory store, FailOpen lets requests through, FailClosed refuses them
// with [ErrUnavailable]. Use FailClosed for login limits (an outage must not open a brute-force
// window) and FailLocal for broad limits (an outage of Redis must not take the site down).
//
// # Deny cache
//
// A Limiter over a shared store remembers keys the store denied until their RetryAfter, and
// refuses them again without any call to the store: a client hammering at a hundred times its
// limit costs Redis about one call per RetryAfter per instance. A denial cached while another
// instance held units it then gave back (an all-or-nothing request over several keys) can refuse
// a key up to one interval early: the cache may over-limit, never over-admit. [Limiter.Reset]
// clears the cache of its own instance only.
//
// # HTTP
//
// [Middleware] applies [Rule]s to requests: a Limiter, a [KeyFunc] ([KeyByIP], [KeyByHeader],
// [KeyByEndpoint], [KeyJoin]), an optional route match ([Routes]), a cost, a message, and a
// dry-run switch. Every response lists the policies that applied in the IETF RateLimit-Policy
// and RateLimit fields, for example
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
// # Redis keys
//
// Keys are prefix{key}:policy, "ratelimit:{203.0.113.9}:login" by default: the key is the hash
// tag, so the policies of one client share a Cluster slot while clients spread across the
// cluster. Braces and '%' in keys are percent-escaped. A key holds one integer (microseconds)
// and expires when it is back to a full burst.
package ratelimit
