// Package breaker is the article's circuit breaker: closed, open after 5 consecutive failures,
// half-open with limited probes after a 30 s cooldown.
//
//	b, _ := breaker.New(breaker.Config{Name: "payments"})
//	err := b.Do(ctx, func(ctx context.Context) error { return callPayments(ctx) })
//	if errors.Is(err, breaker.ErrOpen) {
//		// fail fast: serve a fallback; errors.As(err, &oe) and oe.RetryAfter() say for how long
//	}
//
// # States
//
// Closed lets calls through and counts consecutive failures; Config.Failures of them open the
// breaker. With Config.FailureRate it also opens when that share of the calls of the last
// Config.Window (or of the last Config.WindowCalls calls) failed, once the window holds
// Config.MinCalls calls. Open refuses calls with an *OpenError, matching ErrOpen, for Config.OpenDuration
// (doubling with jitter up to Config.MaxOpenDuration on repeated reopenings). Then the breaker is
// half-open: Config.Probes calls at a time go through as probes; Config.Successes successful
// probes close it, one failed probe reopens it. A probe is a lease: if its outcome is not
// reported within Config.ProbeTimeout (a hung or lost call) its place goes to another probe, so
// half-open never wedges. Outcomes reported after the breaker changed state ("late" outcomes)
// never change the new state; Token.Done says whether an outcome counted.
//
// # Outcomes
//
// Config.Classify decides how a call counts. The default ignores calls whose context ended and
// context.Canceled errors (a client going away says nothing about the dependency), counts other
// errors as failures, and, with Config.SlowCall, counts slow successes as failures. A panic in
// Do counts as a failure and is re-raised. The *OpenError of a refused call should never be
// retried right away.
//
// # Performance
//
// The closed path is lock-free and allocation-free: Allow reads one atomic word and Done(nil)
// writes nothing unless a failure preceded it, so successes on many cores do not contend
// (with FailureRate, each outcome is also added to its window bucket). The
// clock is read only when durations matter (SlowCall or an OnOutcome hook), when open, and in
// half-open.
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
// # Hooks
//
// Hooks are called after the change they report, outside any lock, so they may call the
// breaker back.
//
// # Health
//
// [Breaker.Check] is a health check that fails while the breaker is open; register it as
// non-critical so that an open breaker shows as degraded readiness rather than taking the
// instance out of the load balancer.
//
// # Registry
//
// [Registry] holds one breaker per key (host, route, tenant), bounded by MaxKeys, dropping idle
// closed breakers first; [Registry.Transport] keys by destination host.
//
// # Sharing across instances
//
// With Config.Store set to a [RedisStore], the breakers of one Name on every instance of a
// service act as one: failures add up across instances, one instance's trip makes the others
// refuse calls within about two round trips (measured p99 under 3 ms on loopback), exactly
// Config.Probes probes run at a time across all instances, and a successful probe closes the
// breaker everywhere. A [MemoryStore] gives the same semantics within one process, for tests.
//
//	store, _ := breaker.NewRedisStore(rdb, breaker.RedisConfig{})
//	defer store.Close()
//	b, _ := breaker.New(breaker.Config{Name: "payments", Store: store})
//
// Admission costs no round trip: each instance decides from its local state and still trips at
// once on its own outcomes. Outcomes are counted locally and sent in batches (every 100 ms, or
// at once after 64 failures or when the breaker opens), all of a store's breakers in one
// pipeline (one round trip per node on a Cluster); each reply carries the shared state.
// Transitions are announced with PUBLISH; an instance that hears of one reads the state itself,
// and an instance that missed the announcement learns the state at its next batch. Only leaving
// open takes a round trip on a call's path: the probe lease in Allow, and the report of the
// probe's outcome in Done.
//
// The state machine in Redis counts consecutive failures per batch (the failures after a batch's
// last success extend the shared run; a batch with a success restarts it), so with several
// instances "consecutive" is exact up to the interleaving within one batch interval. Outcomes
// reported after the shared breaker changed state count in the totals, never in the policy.
//
// When Redis fails or is slow (a probe lease or report takes longer than RedisConfig.Timeout,
// 50 ms, or a batch longer than ten times that), breakers go on alone as if they had no store,
// and rejoin after RedisConfig.RetryInterval once Redis answers. No call fails because of Redis,
// and a probe call waits at most Timeout for it in Allow and again in Done; other calls never
// wait. Outcomes counted while the store failed reach the totals once it answers again, never
// the policy (their moment has passed), except that a success among them, such as the probe an
// instance ran alone, ends the shared run of consecutive failures. A batch that failed is sent
// again, alone; batches are numbered per Breaker, so one that timed out after Redis ran it
// is applied once, as long as it is sent again within 10 minutes. A probe lease whose request or
// report failed is given back once Redis answers again; a probe outcome whose report failed is
// not counted again, so the totals may miss it.
//
// Transitions that an instance adopts from the store are reported to Hooks.OnStateChange on the
// store's goroutine: keep hooks short, and never call the store's Close from one.
//
// # Redis keys
//
// One hash per breaker, prefix{name} ("breaker:" by default). Its TTL is the longest of
// Window, OpenDuration and ProbeTimeout, plus what is left of the open period when open, or
// plus a ProbeTimeout when half-open, renewed at each write: a stale state never outlives its
// time, and a breaker nobody uses for that long starts again closed. Its fields: g (generation, +1 per transition), s (0 closed, 1 open, 2 half-open),
// u (open until, ms of Redis time), cf (consecutive failures), r (reopenings, for the backoff),
// ps (probe successes), p1..pN and l1..lN (probe lease deadlines and ids), wt/wc/wf0..9
// (FailureRate buckets), and
// n and nf: the outcomes and failures counted since the key was created. Next to it,
// prefix{name}:q:<id> holds the number of the last batch each Breaker applied, for 10 minutes.
// Announcements go to the channel prefix + "changes", carrying only the name.
package breaker
