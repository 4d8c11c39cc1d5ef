// Command api is the runnable starting point of an outgrow service: an HTTP API with the
// article's health endpoints, in memory by default and on Redis when REDIS_URL is set.
//
//	go run ./examples/api                                 # in memory, listens on :8080
//	REDIS_URL=redis://127.0.0.1:6379/0 go run ./examples/api
//	curl -i localhost:8080/api/health                     # liveness: {"status":"ok","uptime":...}
//	curl -i localhost:8080/api/ready                      # readiness: cached checks, 503 when not ready
//
// On SIGINT or SIGTERM it drains (readiness 503, liveness 200), keeps serving for a short delay so
// that load balancers stop routing to it, and shuts down gracefully. Packages land here as they
// are built: rate limits, breakers, caches, sessions and queues.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/health"
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

// run serves until ctx ends or a signal arrives. It reports the listening address on listening,
// if not nil, once the server accepts connections.
func run(ctx context.Context, addr, redisURL string, listening chan<- string) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	var checks []health.Check
	backend := "memory"
	if redisURL != "" {
		opt, err := redis.ParseURL(redisURL)
		if err != nil {
			return fmt.Errorf("REDIS_URL: %w", err)
		}
		rdb := redis.NewClient(opt)
		defer rdb.Close()
		checks = append(checks, health.Check{Name: "redis", Func: health.RedisCheck(rdb)})
		backend = "redis"
	}

	hc, err := health.New(health.Config{Logger: logger, DrainDelay: 2 * time.Second}, checks...)
	if err != nil {
		return err
	}
	defer hc.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"service\":\"outgrow example\",\"backend\":%q}\n", backend)
	})

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: hc.Middleware(mux), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("api listening", "addr", ln.Addr().String(), "backend", backend)
	if listening != nil {
		listening <- ln.Addr().String()
	}

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	shutdown := make(chan error, 1)
	go func() { shutdown <- hc.ShutdownOnSignal(ctx, srv) }()
	// Serve returns http.ErrServerClosed as soon as the shutdown starts; the shutdown itself ends
	// when in-flight requests have finished, so wait for it.
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err // the listener failed on its own; nothing to drain
	}
	err = <-shutdown
	logger.Info("api stopped")
	return err
}
