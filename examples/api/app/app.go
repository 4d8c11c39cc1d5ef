// Package app is the service of examples/api as a package, so that a program can run it with
// more around it: examples/api serves it as it is, and otel/example instruments it with
// OpenTelemetry through Config.Hooks, Config.Wrap, Config.Routes and Config.Observe.
package app

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

// Config configures the service. The zero value serves in memory on :8080.
type Config struct {
	// Addr is the address to listen on. Default: ":8080".
	Addr string
	// RedisURL, when set, moves every piece of shared state to that Redis
	// (redis://host:port/db). Default: "" (in memory).
	RedisURL string
	// KeyPrefix starts every Redis key (then "ratelimit:", "session:" or "breaker:").
	KeyPrefix string
	// CookieInsecure lets session cookies travel over plain HTTP (local development).
	CookieInsecure bool
	// DownstreamURL is what GET /api/quote calls through the circuit breaker. Default: ""
	// (the route answers 501).
	DownstreamURL string
	// Logger receives the service's and its components' state changes. Default: text on
	// stderr.
	Logger *slog.Logger
	// Hooks instrument the components. Default: none.
	Hooks Hooks
	// Wrap wraps the whole handler, outermost: a tracing middleware, for example.
	// Default: none.
	Wrap func(http.Handler) http.Handler
	// Routes adds routes of the caller's (GET /metrics, for example), served under the same
	// middleware as the others. Default: none.
	Routes func(*http.ServeMux)
	// Observe is called once the components are built, before the service listens. An error
	// stops it. Default: none.
	Observe func(Components) error
}

// Hooks instrument the service: each component's field returns its Hooks from the Hooks it
// would have had, and the methods of an outgrow otel.Telemetry fit them as they are
// (LimiterHooks, BreakerHooks, SessionHooks, HealthHooks). A nil field changes nothing.
type Hooks struct {
	// Redis is called with the Redis client once it is made, before any store uses it: to
	// add go-redis hooks (redisotel, for example).
	Redis   func(rdb *redis.Client) error
	Limiter func(policy string, next ratelimit.Hooks) ratelimit.Hooks
	Breaker func(next breaker.Hooks) breaker.Hooks
	Session func(next session.Hooks) session.Hooks
	Health  func(next health.Hooks) health.Hooks
}

// Components are the service's parts, for Config.Observe.
type Components struct {
	Limiters []*ratelimit.Limiter // global, login, apikey
	Breaker  *breaker.Breaker     // the downstream's
	// BreakerStore shares the breaker's state on Redis; nil in memory.
	BreakerStore *breaker.RedisStore
	Sessions     *session.Manager
	Health       *health.Checker
}

// Run builds the service and serves until ctx ends or SIGINT or SIGTERM arrives, then drains
// and shuts down gracefully. It reports the listening address on listening, if not nil, once
// the server accepts connections.
func Run(ctx context.Context, cfg Config, listening chan<- string) error {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	addr := cfg.Addr
	if addr == "" {
		addr = ":8080"
	}
	hooks := cfg.Hooks

	var checks []health.Check
	backend := "memory"
	var store ratelimit.Store
	var sessions session.Store
	var breakers breaker.Store
	prefix := cfg.KeyPrefix
	var sharedBreakers *breaker.RedisStore
	if cfg.RedisURL != "" {
		opt, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return fmt.Errorf("REDIS_URL: %w", err)
		}
		// go-redis then stops every call at its context's deadline: each store's Timeout holds
		// without a goroutine per call.
		opt.ContextTimeoutEnabled = true
		rdb := redis.NewClient(opt)
		defer rdb.Close()
		if hooks.Redis != nil {
			if err := hooks.Redis(rdb); err != nil {
				return err
			}
		}
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
		breakers, sharedBreakers = shared, shared
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
	limit, limiters, err := rateLimits(store, hooks.Limiter)
	if err != nil {
		return err
	}
	bcfg := breaker.Config{Name: "downstream", Store: breakers, Logger: logger}
	if hooks.Breaker != nil {
		bcfg.Hooks = hooks.Breaker(bcfg.Hooks)
	}
	downstream, err := breaker.New(bcfg)
	if err != nil {
		return err
	}
	// An open breaker is degraded readiness (warn, still 200), not a reason to leave the pool.
	// Its state is in-process, so it is a Local check: each probe reads it, with no delay.
	checks = append(checks, health.Check{Name: "downstream-breaker", Func: downstream.Check, NonCritical: true, Local: true})
	client := &http.Client{Timeout: 2 * time.Second, Transport: downstream.Transport(nil)}

	hcfg := health.Config{Logger: logger, DrainDelay: 2 * time.Second}
	if hooks.Health != nil {
		hcfg.Hooks = hooks.Health(hcfg.Hooks)
	}
	hc, err := health.New(hcfg, checks...)
	if err != nil {
		return err
	}
	defer hc.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"service\":\"outgrow example\",\"backend\":%q}\n", backend)
	})
	scfg := session.Config{Insecure: cfg.CookieInsecure, Logger: logger}
	if hooks.Session != nil {
		scfg.Hooks = hooks.Session(scfg.Hooks)
	}
	sm, err := session.New(sessions, scfg)
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
		url := cfg.DownstreamURL
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

	if cfg.Routes != nil {
		cfg.Routes(mux)
	}
	if cfg.Observe != nil {
		err := cfg.Observe(Components{Limiters: limiters, Breaker: downstream, BreakerStore: sharedBreakers, Sessions: sm, Health: hc})
		if err != nil {
			return err
		}
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	// Health probes answer before the rate limits, so load balancers are never limited.
	// Rate limits come before sessions, so refused requests cost no session load.
	var handler http.Handler = hc.Middleware(limit(sm.Middleware(mux)))
	if cfg.Wrap != nil {
		handler = cfg.Wrap(handler)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
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
func rateLimits(store ratelimit.Store, hooks func(string, ratelimit.Hooks) ratelimit.Hooks) (func(http.Handler) http.Handler, []*ratelimit.Limiter, error) {
	config := func(cfg ratelimit.Config) ratelimit.Config {
		if hooks != nil {
			cfg.Hooks = hooks(cfg.Name, cfg.Hooks)
		}
		return cfg
	}
	global, err := ratelimit.New(store, ratelimit.PerMinute(1000), config(ratelimit.Config{Name: "global"}))
	if err != nil {
		return nil, nil, err
	}
	// At most 5 attempts in any minute (strict), and a Redis outage must not open a
	// brute-force window on login: fail closed (503).
	login, err := ratelimit.New(store, ratelimit.Limit{Rate: 5, Period: time.Minute, Strict: true},
		config(ratelimit.Config{Name: "login", FailurePolicy: ratelimit.FailClosed}))
	if err != nil {
		return nil, nil, err
	}
	// API keys are credentials: hooks would see digests, never the keys.
	apikey, err := ratelimit.New(store, ratelimit.PerMinute(100), config(ratelimit.Config{Name: "apikey", SecretKeys: true}))
	if err != nil {
		return nil, nil, err
	}
	byIP, err := ratelimit.KeyByIP(ratelimit.IPConfig{})
	if err != nil {
		return nil, nil, err
	}
	loginRoute, err := ratelimit.Routes("POST /api/login")
	if err != nil {
		return nil, nil, err
	}
	mw, err := ratelimit.Middleware(ratelimit.MiddlewareConfig{},
		ratelimit.Rule{Limiter: global, Key: byIP},
		ratelimit.Rule{Limiter: login, Key: byIP, Match: loginRoute, Message: "Too many login attempts. Try again in {retry}."},
		ratelimit.Rule{Limiter: apikey, Key: ratelimit.KeyByHeader("X-API-Key")},
	)
	return mw, []*ratelimit.Limiter{global, login, apikey}, err
}
