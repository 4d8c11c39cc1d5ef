// Package breaker is a circuit breaker: closed, open after 5 consecutive failures, half-open
// with limited probes after a 30s cooldown.
//
//	b, _ := breaker.New(breaker.Config{Name: "payments"})
//	err := b.Do(ctx, func(ctx context.Context) error { return callPayments(ctx) })
//	if errors.Is(err, breaker.ErrOpen) {
//		// fail fast: serve a fallback; errors.As(err, &oe) and oe.RetryAfter() say for how long
//	}
//
// A call through a closed breaker takes no lock and allocates nothing.
//
// # States
//
// Closed lets calls through and counts consecutive failures; Config.Failures of them open the
// breaker. With Config.FailureRate it also opens when that share of the calls of the last
// Config.Window (or of the last Config.WindowCalls calls) failed, once the window holds
// Config.MinCalls calls. Open refuses calls with an *OpenError, matching ErrOpen, for
// Config.OpenDuration (doubling with jitter up to Config.MaxOpenDuration on repeated
// reopenings). Then the breaker is half-open: Config.Probes calls at a time go through as
// probes; Config.Successes successful probes close it, one failed probe reopens it. A probe is
// a lease: if its outcome is not reported within Config.ProbeTimeout (a hung or lost call) its
// place goes to another probe, so half-open never wedges. Outcomes reported after the breaker
// changed state ("late" outcomes) never change the new state; [Token.Done] says whether an
// outcome counted. [Breaker.SetMode] forces the breaker open or closed, or disables it.
//
// # Outcomes
//
// Config.Classify decides how a call counts. The default ignores calls whose context ended and
// context.Canceled errors (a client going away says nothing about the dependency), counts other
// errors as failures, and, with Config.SlowCall, counts slow successes as failures. A panic in
// Do counts as a failure and is re-raised. The *OpenError of a refused call should never be
// retried right away.
//
// # HTTP
//
// [Breaker.Transport] wraps an http.RoundTripper for clients: transport errors, 5xx, 408 and 429
// fail, other 4xx succeed (so no client can open the breaker for everyone with bad requests),
// and a 429 or 503 with Retry-After opens the breaker for that long, bounded by the longer of
// OpenDuration and MaxOpenDuration (on every instance, with a Store).
// [Breaker.Middleware] protects a handler: 5xx and panics fail, and while open it answers 503
// with Retry-After and {"error":"Service temporarily unavailable."}.
//
// # Observability
//
// Config.Hooks are called after the change they report, outside any lock, so they may call the
// breaker back. Config.Logger logs each transition (to open at Warn, others at Info), never a
// line per call. [Breaker.Stats] and [MemoryStore.Stats] or [RedisStore.Stats] are snapshots of
// the counters.
//
// [Breaker.Check] is a health check that fails while the breaker is open; register it as
// non-critical so that an open breaker shows as degraded readiness rather than taking the
// instance out of the load balancer, and as local, so that every probe reads its current state.
//
// # Registry
//
// [Registry] holds one breaker per key (host, route, tenant), bounded by MaxKeys, dropping idle
// closed breakers first; [Registry.Transport] keys by destination host.
//
// # Backends
//
// A Breaker alone decides for its process. With Config.Store, the breakers of one Name on every
// instance of a service act as one (see [Store] for the contract): failures add up across
// instances, one instance's trip makes the others refuse calls within about a round trip,
// exactly Config.Probes probes run at a time across all instances, and a successful probe closes
// the breaker everywhere. A [RedisStore] shares through Redis (standalone, Sentinel or Cluster);
// a [MemoryStore] is the same contract within one process, for tests and for breakers of one
// process that should act as one.
//
//	store, _ := breaker.NewRedisStore(rdb, breaker.RedisConfig{})
//	defer store.Close()
//	b, _ := breaker.New(breaker.Config{Name: "payments", Store: store})
//
// [Store] is sealed: a Breaker and its store work as one (batched outcomes, probe leases,
// announcements), so only this package implements it.
//
// Admission costs no round trip: each instance decides from its local state and still trips at
// once on its own outcomes. Outcomes are sent in batches (every RedisConfig.FlushInterval, or at
// once after RedisConfig.FlushOutcomes failures or when the breaker opens). Only leaving open
// takes a round trip on a call's path: the probe lease in Allow, and the report of the probe's
// outcome in Done, each bounded by RedisConfig.Timeout.
//
// When Redis fails or is slow, breakers go on alone, as without a store, and rejoin once it
// answers again (a store notices both without any call). No call fails because of Redis.
// Outcomes counted while it failed reach the totals once it answers, never the policy (their
// moment has passed), except that a success among them, such as a probe an instance ran alone,
// ends the shared run of consecutive failures. A probe outcome whose report failed may be
// missing from the totals.
//
// Transitions that an instance learns from the store are reported to Hooks.OnStateChange on the
// store's goroutine: keep hooks short, and never call the store's Close from one.
//
// # Redis keys
//
// One hash per breaker, prefix{name} ("breaker:" by default), with a TTL: a breaker nobody uses
// for longer than its Window, OpenDuration and ProbeTimeout (plus what is left of an open
// period) starts again closed. Next to it, prefix{name}:q:<id>, one per Breaker object for 10
// minutes, makes a batch sent again after a timeout count once. Transitions are announced on
// the channel prefix + "changes", with the breaker's name only.
package breaker
