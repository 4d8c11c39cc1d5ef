// Command api is the runnable starting point of an outgrow service: an HTTP API with liveness
// and readiness endpoints, in memory by default and on Redis when REDIS_URL is set.
//
//	go run ./examples/api                                 # in memory, listens on :8080
//	REDIS_URL=redis://127.0.0.1:6379/0 go run ./examples/api
//	curl -i localhost:8080/api/health                     # liveness: {"status":"ok","uptime":...}
//	curl -i localhost:8080/api/ready                      # readiness: cached checks, 503 when not ready
//	curl -i -H 'X-API-Key: k1' localhost:8080/api/items   # 100 per minute per API key
//	COOKIE_INSECURE=1 go run ./examples/api               # session cookies over plain HTTP
//	curl -i -c jar -d user=ada localhost:8080/api/login   # 5 per minute per IP, then 429
//	curl -i -b jar localhost:8080/api/me                  # {"user":"ada"}
//	curl -i -b jar -X POST localhost:8080/api/logout
//	DOWNSTREAM_URL=http://127.0.0.1:9999 go run ./examples/api
//	curl -i localhost:8080/api/quote                      # through a breaker: 503 fast once it is open
//
// Every request is under the article's rate limits, layered all or nothing: 1000 requests per
// minute per IP, 5 login attempts per minute per IP, 100 calls per minute per API key. Sessions
// live in the store too, never in the instance: with REDIS_URL any instance serves any
// request. GET /api/quote calls DOWNSTREAM_URL through a circuit breaker (open after 5
// failures, for 30 s), shared by every instance with REDIS_URL, and shown as a non-critical
// readiness check. KEY_PREFIX starts every Redis key (then "ratelimit:", "session:" or
// "breaker:"). The session cookie is Secure: browsers and curl send it over HTTPS only, unless
// COOKIE_INSECURE=1 (local development over plain HTTP).
//
// The service itself is package app (examples/api/app), so that other programs can run it with
// more around it: otel/example serves it instrumented with OpenTelemetry, its metrics on
// /metrics for Prometheus.
//
// On SIGINT or SIGTERM it drains (readiness 503, liveness 200), keeps serving for a short delay so
// that load balancers stop routing to it, and shuts down gracefully. Packages land here as they
// are built: rate limits, breakers, caches, sessions and queues.
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/outgrow/outgrow/examples/api/app"
)

func main() {
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = ":8080"
	}
	if err := run(context.Background(), addr, os.Getenv("REDIS_URL"), nil); err != nil {
		slog.Error("api stopped", "error", err)
		os.Exit(1)
	}
}

// run serves the example until ctx ends or a signal arrives, configured from the environment.
func run(ctx context.Context, addr, redisURL string, listening chan<- string) error {
	return app.Run(ctx, app.Config{
		Addr:           addr,
		RedisURL:       redisURL,
		KeyPrefix:      os.Getenv("KEY_PREFIX"),
		CookieInsecure: os.Getenv("COOKIE_INSECURE") == "1",
		DownstreamURL:  os.Getenv("DOWNSTREAM_URL"),
	}, listening)
}
