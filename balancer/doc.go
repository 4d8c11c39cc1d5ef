// Package balancer spreads requests over a set of backends: the article's round robin, least
// connections, IP hash (session affinity) and weighted round robin, plus power of two choices
// and random, over backends that active health checks and failed requests take out of
// rotation, behind a retrying reverse proxy.
//
//	b, _ := balancer.New(balancer.Config{Algorithm: balancer.LeastConnections},
//		balancer.Backend{ID: "http://10.0.0.1:8080"}, balancer.Backend{ID: "http://10.0.0.2:8080"})
//	p, err := b.Pick(r) // err: ErrNoBackend
//	defer p.Done()      // once the request is over
//	... send r to p.ID() ...
//
// # Picks
//
// A [Balancer] keeps an immutable snapshot of its set behind an atomic pointer: a pick takes
// no lock and allocates nothing, whatever the algorithm, and [Balancer.Update],
// [Balancer.SetUp] and [Balancer.Drain] publish a new snapshot. A backend that stays in the set
// keeps its requests in flight across snapshots, so LeastConnections and PowerOfTwo count them
// from [Balancer.Pick] to [Pick.Done], which must run exactly once per pick (after the
// response body is closed, for a streamed response).
//
// RoundRobin starts at a random backend, so that balancers started together do not all hit the
// first one. WeightedRoundRobin follows one precomputed cycle of NGINX's smooth algorithm: each
// backend gets exactly its Weight of picks per cycle, spread out. IPHash uses rendezvous
// hashing over the backends' IDs, so adding or removing one of N backends moves only about
// 1/N of the clients (never mod-N's nearly all), a backend that goes down moves only its own
// clients, and every balancer with the same set agrees; the client's address comes from the
// same trusted-proxy parser as package ratelimit's (the peer unless Config.TrustedProxies
// vouch for a forwarding header).
//
// # Health
//
// A backend is up, down, ejected or draining; only those up are picked. Two signals feed it:
//
//   - Active: a [Checker] probes each backend's /api/health every 30s (5s timeout, jittered)
//     and marks it down after 3 failed probes in a row and up again after 2 successful ones,
//     the article's ALB settings, on the same rise/fall machine as package health's checks. A
//     single failed probe never takes a backend down.
//   - Passive: [Pick.Observe] counts a backend's consecutive failed requests; 5 eject it for
//     30s (Config.Eject), the article's breaker numbers, at most half the set at once. The
//     [Proxy] reports connection errors, timeouts and 502-504 answers, never a client's
//     cancellation nor a 500, so that no client can eject backends at will. A backend that
//     refuses connections under load is ejected within a second, where active checks alone
//     take about 95s (one that hangs fails its requests after the Proxy's
//     ResponseHeaderTimeout, 60s by default).
//
// [Balancer.SetUp] and [Balancer.Drain] set the state by hand. When none is up,
// Config.WhenNoneUp decides: FailOpen (the default, as AWS ALB and Envoy do) picks among all
// backends not draining, so that a broken health check does not take the service down;
// FailClosed answers ErrNoBackend. A draining backend is never picked, even failing open:
// drain a backend before it leaves.
//
// # Proxy
//
// [Proxy] is a reverse proxy (httputil.ReverseProxy with Rewrite and SetXForwarded) that picks
// a backend per attempt. A request that reached no backend is tried on another; an idempotent
// one (or one with an Idempotency-Key) also when its connection failed before a response,
// within a retry budget; nothing is retried once a response came, so no byte is ever sent to
// the client twice, and a POST that may have reached a backend is never sent again. Requests
// count as in flight until their response body closes (streams and upgraded connections
// included). Errors are JSON 502 and 503, without the backends' messages.
//
// # Defaults
//
// The zero Config is round robin, failing open, trusting no proxy, ejecting after 5 failures
// for 30s. A Backend's Weight defaults to 1: draining is a state ([Balancer.Drain]), not a
// weight of 0, so that the zero Backend is a working one. The zero CheckConfig is the
// article's ALB check; the zero ProxyConfig retries up to 3 backends within a 20% budget.
//
// Config.SlowStart ramps up a backend that joins or comes back: its share grows from a tenth
// to the full share over that window (IPHash aside).
//
// # Registry
//
// A [Registry] keeps a service's membership: each instance registers itself
// ([Registry.Register]: a first heartbeat, then one every TTL/3; [Registration.Close]
// deregisters it), and [Registry.Watch] keeps a Balancer's set equal to the members. Changes
// reach watching balancers within milliseconds: the store announces them (Redis pub/sub), and
// Watch also reads the members every ReconcileInterval and whenever announcements may have been
// lost, since pub/sub drops messages while a subscription is down and expiries are found only
// when a call meets them. An instance that crashes leaves within TTL plus ReconcileInterval of
// its last heartbeat. A Redis outage never empties a watched set: the Balancer keeps its last
// good set, and for one TTL after Redis answers again (or after Redis lost the registry) it
// keeps the backends that reads miss, while live instances heartbeat again. A [MemoryStore]
// has the same semantics in one process; a [RedisStore] shares the registry between instances.
//
// # Redis keys
//
// A RedisStore keeps each service under one hash tag, Prefix{service} (one Cluster slot):
// Prefix{service}:members, a sorted set of backend IDs scored by expiry (ms of Redis TIME);
// Prefix{service}:info, a hash of ID to weight and the owner Registration's token;
// Prefix{service}:epoch, which changes when Redis loses the registry; and the channel
// Prefix{service}:events, on which every change is published. The members and info keys expire
// with their newest member, the epoch a day after the last heartbeat. A heartbeat, a
// deregistration and a read are one script call each; no call scans the keyspace. The default
// Prefix is "balancer:". Nothing of the registry is on the pick path: picks never reach Redis.
//
// # Not yet
//
// Health verdicts shared between balancers (one prober per backend across the fleet) are to
// come.
package balancer
