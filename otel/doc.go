// Package otel instruments outgrow's components with OpenTelemetry: metrics with stable names
// and units, span events on the request's span, and spans for cache loads. Prometheus users get
// the same instruments through OpenTelemetry's Prometheus exporter (see the example).
//
// It is a module of its own, github.com/outgrow/outgrow/otel, so that outgrow itself keeps
// go-redis as its only run-time dependency. Its name clashes with go.opentelemetry.io/otel: import it
// as outgrowotel.
//
// # Two steps per component
//
// A component reports through two doors, and a [Telemetry] uses both: its Hooks, set in its
// Config before it is built, carry the context of each call (for histograms, transitions and
// span events); its Stats, read after it is built, carry the counts (for counters and gauges
// read at collection time, which cost nothing per call).
//
//	tel, err := outgrowotel.New(outgrowotel.Config{}) // the global providers
//	login, err := ratelimit.New(store, limit, ratelimit.Config{
//		Name:  "login",
//		Hooks: tel.LimiterHooks("login", ratelimit.Hooks{}),
//	})
//	reg, err := tel.ObserveLimiters(login) // reg.Unregister() when login is dropped
//
// Each XHooks method takes the Hooks the component would have had and calls them too. Either
// step can be left out: Observe alone costs nothing on the hot paths (the closed breaker,
// a memory limiter decision, a local cache hit); the Hooks add what only they can see.
//
// A component's series are named by its name (a Limiter's or Breaker's Name, the name given
// to ObserveCache, ObserveSessions, ObserveCacheStore, ObserveBreakerStore and
// ObserveBalancer), so each name is
// observed once per kind: observing the same component again, or another of the same kind and
// name, fails with [ErrObserved] until the first registration is unregistered (else counters
// would add up both, and gauges show one of them). Health series name no Checker: one is
// observed at a time. Create one Telemetry per MeterProvider: two over one provider share its
// instruments, and what both observe is counted twice.
//
// # Metrics
//
// Every instrument belongs to the scope [ScopeName]. Counters are cumulative; names and units
// follow OpenTelemetry's semantic-convention style (durations in seconds, annotations in
// braces), and the Prometheus exporter turns them into outgrow_ratelimit_decisions_total,
// outgrow_breaker_call_duration_seconds, and so on. Attributes are low-cardinality: a policy,
// breaker, cache or check name, a result; never a key, an IP, a session ID or a user.
//
//	instrument                            kind       unit          attributes              from
//	outgrow.ratelimit.decisions           counter    {decision}    policy, decision        Stats
//	outgrow.ratelimit.deny_cache.hits     counter    {decision}    policy                  Stats
//	outgrow.ratelimit.fallback.decisions  counter    {decision}    policy                  Stats
//	outgrow.ratelimit.store.errors        counter    {error}       policy                  Stats
//	outgrow.ratelimit.degraded            gauge      {state}       policy                  Stats
//	outgrow.breaker.call.duration         histogram  s             name, outcome           Hooks
//	outgrow.breaker.transitions           counter    {transition}  name, state             Hooks
//	outgrow.breaker.state                 gauge      {state}       name, state             Stats
//	outgrow.breaker.rejections            counter    {call}        name                    Stats
//	outgrow.breaker.failures              counter    {call}        name                    Stats
//	outgrow.breaker.store.round_trips     counter    {round_trip}  store                   Stats
//	outgrow.breaker.store.errors          counter    {error}       store                   Stats
//	outgrow.breaker.store.notifications   counter    {message}     store                   Stats
//	outgrow.breaker.store.down            gauge      {state}       store                   Stats
//	outgrow.cache.lookups                 counter    {lookup}      name, result, layer     Stats
//	outgrow.cache.loads                   counter    {load}        name, result            Stats
//	outgrow.cache.load.duration           histogram  s             name, result            Hooks
//	outgrow.cache.refreshes               counter    {load}        name                    Stats
//	outgrow.cache.lost_fills              counter    {load}        name                    Stats
//	outgrow.cache.local.evictions         counter    {entry}       name, reason            Stats
//	outgrow.cache.local.entries           up-down    {entry}       name                    Stats
//	outgrow.cache.local.size              up-down    By            name                    Stats
//	outgrow.cache.store.reads             counter    {key}         store, result           Stats
//	outgrow.cache.store.errors            counter    {error}       store                   Stats
//	outgrow.cache.store.down              gauge      {state}       store                   Stats
//	outgrow.cache.coherence.messages      counter    {message}     store, direction        Stats
//	outgrow.cache.coherence.flushes       counter    {flush}       store                   Stats
//	outgrow.session.loads                 counter    {session}     manager, result         Stats
//	outgrow.session.changes               counter    {session}     manager, change         Stats
//	outgrow.session.commits               counter    {write}       manager                 Stats
//	outgrow.session.lost_writes           counter    {write}       manager                 Stats
//	outgrow.session.store.errors          counter    {error}       manager                 Stats
//	outgrow.health.check.duration         histogram  s             check, result           Hooks
//	outgrow.health.status                 gauge      {state}       status                  Stats
//	outgrow.health.check.state            gauge      {state}       check, state            Stats
//	outgrow.queue.enqueued                counter    {job}         name                    Hooks
//	outgrow.queue.run.duration            histogram  s             name, outcome           Hooks
//	outgrow.queue.lease_lost              counter    {run}         name                    Hooks
//	outgrow.queue.jobs                    up-down    {job}         name, state             Stats
//	outgrow.queue.lag                     gauge      s             name                    Stats
//	outgrow.balancer.state_changes        counter    {change}      name, state             Hooks
//	outgrow.balancer.backends             up-down    {backend}     name, state             Stats
//	outgrow.balancer.in_flight            up-down    {request}     name                    Stats
//	outgrow.balancer.ejections            counter    {ejection}    name                    Stats
//	outgrow.balancer.no_backend           counter    {pick}        name                    Stats
//	outgrow.balancer.proxy.retries        counter    {attempt}     name                    Stats
//	outgrow.balancer.proxy.errors         counter    {request}     name, status            Stats
//
// Attribute keys are prefixed by the component (outgrow.ratelimit.policy, outgrow.breaker.name,
// outgrow.cache.result, ...), except outgrow.store, the name of a store observed on its own.
// The names (policy, breaker, cache, manager, check, store) are the components'; the other
// attributes take these values:
//
//	attribute                   values
//	outgrow.ratelimit.decision  allowed, limited
//	outgrow.breaker.outcome     success, failure, ignored
//	outgrow.breaker.state       closed, open, half-open (for transitions, the state entered)
//	outgrow.cache.result        hit, stale, negative, miss (lookups); ok, error (loads: a
//	                            not-found answer is ok); ok, not_found, error (load.duration);
//	                            hit, miss (store.reads)
//	outgrow.cache.layer         local, remote (hits only)
//	outgrow.cache.reason        size, expired
//	outgrow.cache.direction     sent, received
//	outgrow.session.result      found, miss
//	outgrow.session.change      created, renewed, destroyed
//	outgrow.health.result       pass, fail
//	outgrow.health.status       pass, warn, fail
//	outgrow.health.state        unknown, healthy, unhealthy
//	outgrow.queue.outcome       succeeded, retried, dead
//	outgrow.queue.state         due, scheduled, running, dead
//	outgrow.balancer.state      up, down, ejected, draining
//	outgrow.balancer.status     502, 503
//
// A gauge of a state has one series per possible value, 1 for the current one and 0 for the
// others.
//
// # Traces
//
// Hooks add span events to the span of the call's context, built only when that span
// records: outgrow.ratelimit.decision and outgrow.ratelimit.fallback,
// outgrow.breaker.transition and outgrow.breaker.rejected, outgrow.cache.stale and
// outgrow.cache.store_error, outgrow.session.store_error, outgrow.queue.enqueued. A store error says its kind in
// error.type (timeout, canceled or unavailable), never its message. A cache loader call
// becomes the span outgrow.cache.load, timed as the loader ran.
//
// Calls to Redis are spans of go-redis's own instrumentation: every store sends its commands
// through the client it was given, with the caller's context, so
// github.com/redis/go-redis/extra/redisotel/v9's InstrumentTracing on that client makes each
// round trip a span under the request's.
//
// # Cost
//
// Stats are read at collection time only. Hooks run on the component's calls: BreakerHooks
// times every call and records it in a histogram, which costs the OpenTelemetry SDK's
// Record (hundreds of nanoseconds) and two clock reads on a path that otherwise takes a few
// nanoseconds; LimiterHooks costs a context lookup per decision when the request is not
// traced (it uses OnDecision, which carries no key, so a Limiter with SecretKeys computes no
// digest for it). Neither allocates then. benchmarks/otel_test.go measures both against the
// bare components; the figures are in benchmarks/README.md.
package otel
