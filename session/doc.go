// Package session keeps server-side sessions in Redis (or in memory), never in an instance's
// memory, so that every instance of a service can serve every request.
//
//	store, _ := session.NewRedisStore(rdb, session.RedisConfig{}) // or NewMemoryStore(MemoryConfig{})
//	sm, _ := session.New(store, session.Config{})
//	http.ListenAndServe(addr, sm.Middleware(mux))
//
//	func login(w http.ResponseWriter, r *http.Request) {
//		s := session.FromContext(r.Context())
//		// ... check the password ...
//		s.Login(userID)              // a new session and ID (no fixation), listed under the user
//		s.Put("name", "Ada")         // saved when the response starts
//	}
//
// # Requests
//
// [Manager.Middleware] loads the session named by the request's cookie and saves what the
// handler changed when the response starts; handlers never save by hand. Values are strings,
// integers, booleans, times ([Session.String], [Session.Int], [Session.Bool], [Session.Time])
// or anything the Codec (JSON by default) encodes ([Session.Get]). An unknown, malformed or
// expired ID starts a new session, which is stored (and its cookie sent) only once something is
// put in it. A change after the response started fails with ErrCommitted instead of being lost.
//
// # HTTP
//
// The session is saved when the response starts: the first Write, WriteHeader (1xx responses
// excepted) or Flush, or when the handler returns. A handler that panics saves nothing, Destroy
// included. When the save fails, the handler's headers are dropped and Config.OnError answers
// instead (503). The wrapper passes Flush, ReadFrom and, through http.ResponseController, Hijack
// to the server's writer.
//
// # Expiry
//
// A session ends after IdleTimeout unused (30 minutes) or Lifetime after it was created (24
// hours), whichever comes first. Both are checked by the store on every load and every save with
// one clock (Redis's own for the RedisStore, never an instance's); the stored key's TTL never
// passes the absolute deadline, and a save after it deletes the session instead of writing it
// again.
//
// # Security
//
// IDs carry 256 bits from crypto/rand; stores keep only their SHA-256. The cookie is HttpOnly,
// Secure (unless Config.Insecure, for local development), SameSite=Lax, optionally "__Host-"
// ([Manager.CookieName] is the name sent). [Session.Renew] replaces the ID atomically (the old
// one stops working at once); [Session.Login] moves the session's values into a new session of
// the user and deletes the old one; [Session.Destroy] deletes the session; [Manager.List] shows a
// user's sessions, [Manager.Revoke] ends one of them and [Manager.DestroyAll] all, atomically,
// through a per-user index. A request whose session was renewed or destroyed by another request
// while it ran loses its changes (Stats.Lost) and leaves the cookie alone. Responses that set the
// cookie get Cache-Control: no-store, and responses to requests with a session get Vary: Cookie.
// Data over Config.MaxSize (16 KiB) is refused with ErrTooLarge.
//
// The first 4 characters of an ID (its tag) place the session in a Redis Cluster slot: random
// for an anonymous session, and for a user's sessions a keyed hash (HMAC-SHA256) of the user ID
// under the store's secret (RedisConfig.Secret), so that they share a slot with the user's
// index. Without the secret, a logged cookie or a key name cannot be tied to a user ID, and two
// deployments with their own secrets give one user unrelated tags. A user's sessions share one
// tag within a deployment.
//
// # Backends
//
// [RedisStore] shares sessions between instances: loading and sliding the idle deadline is one
// round trip, saving is one round trip that writes only the fields that changed, so concurrent
// requests changing different values of one session all keep their changes, and a request that
// only read its session writes nothing. Sessions are always read on the primary. [MemoryStore]
// has the same semantics in one process, for tests and single instances.
//
// [Store] is a small open interface (load, commit, list a user's sessions): the Manager gives it
// IDs and changes, and the store decides where a session lives, tag included, with its own
// secret.
//
// # Failures
//
// When the store fails or does not answer within its timeout (RedisConfig.Timeout), the
// middleware answers 503 with {"error":"Service temporarily unavailable."} (Config.OnError), or
// with Config.FailOpen serves the request with an empty session that is not saved. After
// consecutive failures the RedisStore answers at once for RedisConfig.RetryInterval, then probes
// Redis again. Nothing panics. Hooks.OnStoreError sees each failure. One line is logged when
// the store starts failing and one when it answers again, never a line per request: by the
// RedisStore (RedisConfig.Logger), or for any other store by the Manager (Config.Logger, after 3
// failed requests in a row).
//
// # Redis keys
//
// A session is a hash, prefix{tag}:handle ("session:" by default), where handle is the base64url
// SHA-256 of its ID and tag the ID's first 4 characters; it holds the session's values and
// deadlines. A user's index is a sorted set, prefix{tag}:u:digest, where digest is the keyed hash
// of the user ID, in the slot of the user's sessions, scored by their absolute deadlines. The
// secret of the keyed hashes, unless RedisConfig.Secret is set, is the string at
// prefix+"secret". Every read and write is a Lua script, so it runs on the primary. No key name
// contains a session ID or a user ID.
package session
