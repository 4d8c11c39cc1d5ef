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
// Config.Window failed, once the window holds Config.MinCalls calls. Open refuses calls with an *OpenError, matching ErrOpen, for Config.OpenDuration
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
// and a 429 or 503 with Retry-After opens the breaker for that long, bounded.
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
// Sharing breaker state across instances through Redis is not implemented yet.
package breaker
