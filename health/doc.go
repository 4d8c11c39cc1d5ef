// Package health serves liveness and readiness for a service behind a load balancer. The liveness
// endpoint GET /api/health answers {"status":"ok","uptime":<seconds>}; the readiness endpoint
// GET /api/ready reports named dependency checks, which by default run in the background every
// 4 s with a 2 s timeout, turn unhealthy after 3 consecutive failures and healthy again after 2
// consecutive successes.
//
// # Liveness and readiness
//
// Liveness ([Checker.LivenessHandler], at [Config.Path]) says the process is up. It never looks at
// a dependency: a database outage must not make the orchestrator restart every instance.
//
// Readiness ([Checker.ReadinessHandler], at [Config.ReadyPath]) says the instance should get
// traffic. It reports the cached verdict of named checks ([Check]) that a [Checker] runs in the
// background, concurrently, each bounded by its timeout. A probe never runs a background check,
// so probes do not multiply the load on dependencies however often and from however many
// balancers they come, and a probe's cost does not grow with the number of background checks.
//
//	hc, err := health.New(health.Config{},
//		health.Check{Name: "redis", Func: health.RedisCheck(rdb)},
//		health.Check{Name: "search", Func: health.HTTPCheck(nil, searchURL), NonCritical: true},
//		health.Check{Name: "payments-breaker", Func: payments.Check, NonCritical: true, Local: true},
//	)
//	if err != nil { ... }
//	defer hc.Close()
//	handler := hc.Middleware(mux) // GET /api/health and GET /api/ready, the rest to mux
//
// # Local checks
//
// A check marked [Check.Local] reads in-process state only, such as a circuit breaker's state:
// it does no I/O, so there is nothing to protect from probes and nothing to wait for. It is not
// run in the background: readiness requests, [Checker.Ready] and [Checker.Stats] call it, and
// its result counts at once, without thresholds, so readiness follows it on the very next probe
// (a breaker applies its own thresholds before it opens). Its function must return at once and
// be safe for concurrent use; while a call has been running for longer than the check's Timeout,
// probes do not call it again and count it failed (see [Check.Timeout]). The cached response
// bodies are reused for as long as the Local checks' states hold.
//
// # States
//
// Each check starts unknown, and the instance is not ready until the first pass over the checks
// has completed (New starts it at once). A background check's first result sets its state; after
// that it turns unhealthy only after [Config.UnhealthyThreshold] consecutive failures and healthy
// again only after [Config.HealthyThreshold] consecutive successes, so one slow answer never
// flips it. The readiness status is:
//
//	pass  every check healthy                                        200 {"status":"ok"}
//	warn  a NonCritical check unhealthy, every critical one healthy  200 {"status":"degraded"}
//	fail  a critical check unknown or unhealthy                      503 {"status":"unavailable"}
//	      before the first pass                                      503 {"status":"starting"}
//	      after Drain                                                503 {"status":"draining"}
//	      after Close                                                503 {"status":"closed"}
//
// # Two layers of thresholds
//
// A load balancer probing readiness applies its own thresholds on top of the checks', and the
// delays add up. Take an ALB target group set as is common for this endpoint: a probe every 30 s
// with a 5 s timeout, healthy after 2 consecutive successes, unhealthy after 3 consecutive
// failures. In the worst case (the change comes just after a check run, and just after a probe):
//
//	                         checks behind /api/ready              balancer                   total
//	dependency dies          Interval×UnhealthyThreshold+Timeout   probe interval×unhealthy
//	                         4 s×3 + 2 s = 14 s                    30 s×3 = 90 s              104 s
//	dependency comes back    Interval×HealthyThreshold             probe interval×healthy
//	                         4 s×2 = 8 s                           30 s×2 = 60 s               68 s
//
// The check's Timeout counts only for a dependency that hangs (one that refuses is seen in
// 4 s×3 = 12 s), and the balancer's only for an instance that does not answer: /api/ready
// answers 503 at once. A Local check adds nothing to the first layer, and neither does
// [Checker.Drain], so DrainDelay must cover the balancer's layer alone. That is why the checks do
// not default to the balancer's numbers: with 30 s, 5 s, 3 and 2 they would take up to 95 s to
// see a dead dependency and 60 s to see it back, before the balancer's own 90 s and 60 s. To
// shorten the total, shorten the balancer's side; the checks' thresholds are there to ride out
// one failed call to a dependency, the balancer's to ride out one lost probe.
//
// # Formats
//
// Responses are plain JSON unless the request's Accept header prefers application/health+json,
// the IETF health check response format (draft-inadarei-api-health-check), in which case the
// status is pass, warn or fail and each check appears under "<name>:responseTime" with its status
// and time. Error strings, durations and counters are details: they appear only when the request
// has the "verbose" query parameter and [Config.AllowVerbose] accepts the request. By default no
// request sees them, so internal errors never reach a caller.
//
// # Timeouts and goroutines
//
// Each run of a background check gets a context with its timeout. A check that does not return in
// time counts as failed with [ErrTimeout]; its goroutine ends as soon as the function returns,
// and a check whose previous run is still going is not started again, so a check that ignores its
// context costs one goroutine, not one per pass. A panicking check counts as failed.
// [Checker.Close] cancels running checks and waits for them.
//
// # Zero-downtime deploys
//
// On SIGTERM, [Checker.ShutdownOnSignal] (or [Checker.Shutdown]) drains: readiness turns 503 while
// liveness stays 200; it keeps serving for [Config.DrainDelay] so that balancers stop routing
// here, then calls [http.Server.Shutdown], which waits up to [Config.ShutdownTimeout] for in-flight
// requests. Set DrainDelay to at least the balancer's probe interval times its failure threshold
// plus its propagation time (for the ALB settings above, 30 s × 3 = 90 s, or use the target
// group's deregistration, which starts at once).
//
// # Built-in checks
//
// [RedisCheck] PINGs a go-redis client (every master of a Cluster), [SQLCheck] pings a *sql.DB,
// and [HTTPCheck] expects a 2xx from a URL. Any func(context.Context) error is a check.
//
// # Observability
//
// [Hooks] report every run of a background check (for latency metrics), every state change and
// every status change. [Checker.Stats] returns a snapshot of every check. [Config.Logger] gets a
// line when a check turns unhealthy or recovers and when a background check panics, never one per
// request.
package health
