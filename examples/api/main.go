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
// On SIGINT or SIGTERM it drains (readiness 503, liveness 200), keeps serving for a short delay so
// that load balancers stop routing to it, and shuts down gracefully. Packages land here as they
// are built: rate limits, breakers, caches, sessions and queues.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/breaker"
	"github.com/outgrow/outgrow/health"
	"github.com/outgrow/outgrow/ratelimit"
	"github.com/outgrow/outgrow/session"
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
	var store ratelimit.Store
	var sessions session.Store
	var breakers breaker.Store
	prefix := os.Getenv("KEY_PREFIX")
	if redisURL != "" {
		opt, err := redis.ParseURL(redisURL)
		if err != nil {
			return fmt.Errorf("REDIS_URL: %w", err)
		}
		// go-redis then stops every call at its context's deadline: each store's Timeout holds
		// without a goroutine per call.
		opt.ContextTimeoutEnabled = true
		rdb := redis.NewClient(opt)
		defer rdb.Close()
		checks = append(checks, health.Check{Name: "redis", Func: health.RedisCheck(rdb)})
		backend = "redis"
		if store, err = ratelimit.NewRedisStore(rdb, ratelimit.RedisConfig{Prefix: prefix + "ratelimit:"}); err != nil {
			return err
		}
		if sessions, err = session.NewRedisStore(rdb, session.RedisConfig{Prefix: prefix + "session:", Logger: logger}); err != nil {
			return err
		}
		shared, err := breaker.NewRedisStore(rdb, breaker.RedisConfig{Prefix: prefix + "breaker:", Logger: logger})
		if err != nil {
			return err
		}
		defer shared.Close() // before rdb.Close: sends the outcomes still waiting
		breakers = shared
	} else {
		mem, err := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
		if err != nil {
			return err
		}
		store = mem
		if sessions, err = session.NewMemoryStore(session.MemoryConfig{}); err != nil {
			return err
		}
	}
	limit, err := rateLimits(store)
	if err != nil {
		return err
	}
	downstream, err := breaker.New(breaker.Config{Name: "downstream", Store: breakers, Logger: logger})
	if err != nil {
		return err
	}
	// An open breaker is degraded readiness (warn, still 200), not a reason to leave the pool.
	// Its state is in-process, so it is a Local check: each probe reads it, with no delay.
	checks = append(checks, health.Check{Name: "downstream-breaker", Func: downstream.Check, NonCritical: true, Local: true})
	client := &http.Client{Timeout: 2 * time.Second, Transport: downstream.Transport(nil)}

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
	sm, err := session.New(sessions, session.Config{Insecure: os.Getenv("COOKIE_INSECURE") == "1", Logger: logger})
	if err != nil {
		return err
	}
	mux.HandleFunc("POST /api/login", func(w http.ResponseWriter, r *http.Request) {
		// A real service checks a password here. Login gives the session a new ID, so that an
		// ID seen before logging in is worth nothing after.
		user := r.FormValue("user")
		if user == "" {
			user = "demo"
		}
		if err := session.FromContext(r.Context()).Login(user); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "Bad request."})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"user": user})
	})
	mux.HandleFunc("GET /api/me", func(w http.ResponseWriter, r *http.Request) {
		user := session.FromContext(r.Context()).User()
		if user == "" {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "Not logged in."})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"user": user})
	})
	mux.HandleFunc("GET /api/quote", func(w http.ResponseWriter, r *http.Request) {
		url := os.Getenv("DOWNSTREAM_URL")
		if url == "" {
			writeJSON(w, http.StatusNotImplemented, map[string]string{"error": "DOWNSTREAM_URL is not set."})
			return
		}
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, url, nil)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "Bad DOWNSTREAM_URL."})
			return
		}
		resp, err := client.Do(req)
		var open *breaker.OpenError
		switch {
		case errors.As(err, &open):
			// Fail fast while the downstream recovers; tell the client when to come back, in
			// whole seconds rounded up (never before the breaker lets a call through).
			w.Header().Set("Retry-After", fmt.Sprint(max(1, int64((open.RetryAfter()+time.Second-1)/time.Second))))
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "Quotes are unavailable right now."})
			return
		case err != nil:
			writeJSON(w, http.StatusBadGateway, map[string]string{"error": "Quotes are unavailable right now."})
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			writeJSON(w, http.StatusBadGateway, map[string]string{"error": "Quotes are unavailable right now."})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.Copy(w, io.LimitReader(resp.Body, 1<<20))
	})
	mux.HandleFunc("POST /api/logout", func(w http.ResponseWriter, r *http.Request) {
		_ = session.FromContext(r.Context()).Destroy()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /api/logout-everywhere", func(w http.ResponseWriter, r *http.Request) {
		user := session.FromContext(r.Context()).User()
		if user == "" {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "Not logged in."})
			return
		}
		n, err := sm.DestroyAll(r.Context(), user)
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "Service temporarily unavailable."})
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"ended": n})
	})
	mux.HandleFunc("GET /api/items", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintln(w, `{"items":[]}`)
	})

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	// Health probes answer before the rate limits, so load balancers are never limited.
	// Rate limits come before sessions, so refused requests cost no session load.
	srv := &http.Server{Handler: hc.Middleware(limit(sm.Middleware(mux))), ReadHeaderTimeout: 5 * time.Second}
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

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// rateLimits returns the article's three limits as one middleware. Behind a load balancer, set
// IPConfig.TrustedProxies to its networks so that the client address comes from
// X-Forwarded-For; without it, every client is keyed by the TCP peer, which is safe.
func rateLimits(store ratelimit.Store) (func(http.Handler) http.Handler, error) {
	global, err := ratelimit.New(store, ratelimit.PerMinute(1000), ratelimit.Config{Name: "global"})
	if err != nil {
		return nil, err
	}
	// At most 5 attempts in any minute (strict), and a Redis outage must not open a
	// brute-force window on login: fail closed (503).
	login, err := ratelimit.New(store, ratelimit.Limit{Rate: 5, Period: time.Minute, Strict: true},
		ratelimit.Config{Name: "login", FailurePolicy: ratelimit.FailClosed})
	if err != nil {
		return nil, err
	}
	// API keys are credentials: hooks would see digests, never the keys.
	apikey, err := ratelimit.New(store, ratelimit.PerMinute(100), ratelimit.Config{Name: "apikey", SecretKeys: true})
	if err != nil {
		return nil, err
	}
	byIP, err := ratelimit.KeyByIP(ratelimit.IPConfig{})
	if err != nil {
		return nil, err
	}
	loginRoute, err := ratelimit.Routes("POST /api/login")
	if err != nil {
		return nil, err
	}
	return ratelimit.Middleware(ratelimit.MiddlewareConfig{},
		ratelimit.Rule{Limiter: global, Key: byIP},
		ratelimit.Rule{Limiter: login, Key: byIP, Match: loginRoute, Message: "Too many login attempts. Try again in {retry}."},
		ratelimit.Rule{Limiter: apikey, Key: ratelimit.KeyByHeader("X-API-Key")},
	)
}
