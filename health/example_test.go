package health_test

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/breaker"
	"github.com/outgrow/outgrow/health"
)

// get serves one GET through h and prints the status code and body.
func get(h http.Handler, target string) {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, target, nil))
	fmt.Print(w.Code, " ", w.Body.String())
}

func ExampleNew() {
	hc, err := health.New(health.Config{}, health.Check{
		Name: "db",
		Func: func(ctx context.Context) error { return nil }, // e.g. health.SQLCheck(db)
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hc.Close()

	// Wait for the first pass; a service would just start serving.
	if _, err := hc.Refresh(context.Background()); err != nil {
		log.Fatal(err)
	}
	get(hc.ReadinessHandler(), "/api/ready")
	// Output: 200 {"status":"ok","checks":{"db":{"status":"ok"}}}
}

// Middleware answers the liveness path and the readiness path in front of the
// application's own handler.
func ExampleChecker_Middleware() {
	hc, err := health.New(health.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer hc.Close()
	_, _ = hc.Refresh(context.Background())

	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") })
	handler := hc.Middleware(mux)

	get(handler, "/api/ready")
	get(handler, "/hello")
	// Output:
	// 200 {"status":"ok"}
	// 200 hello
}

// A non-critical dependency that fails degrades the service but keeps it ready; a critical one
// takes it out of rotation.
func ExampleCheck_nonCritical() {
	down := func(ctx context.Context) error { return errors.New("connection refused") }
	up := func(ctx context.Context) error { return nil }
	hc, err := health.New(health.Config{},
		health.Check{Name: "db", Func: up},
		health.Check{Name: "recommendations", Func: down, NonCritical: true},
	)
	if err != nil {
		log.Fatal(err)
	}
	defer hc.Close()
	_, _ = hc.Refresh(context.Background())
	get(hc.ReadinessHandler(), "/api/ready")
	// Output: 200 {"status":"degraded","checks":{"db":{"status":"ok"},"recommendations":{"status":"fail"}}}
}

// A circuit breaker's state is a Local check: each readiness probe reads it, so readiness
// follows the breaker on the next probe, with no background pass and no threshold in between
// (the breaker counted the failures before it opened). As a NonCritical check, an open breaker
// degrades readiness (still 200) instead of taking the instance out of the pool.
func ExampleCheck_local() {
	payments, err := breaker.New(breaker.Config{Name: "payments"}) // opens after 5 failures
	if err != nil {
		log.Fatal(err)
	}
	hc, err := health.New(health.Config{},
		health.Check{Name: "payments-breaker", Func: payments.Check, NonCritical: true, Local: true})
	if err != nil {
		log.Fatal(err)
	}
	defer hc.Close()
	ctx := context.Background()
	_, _ = hc.Refresh(ctx) // wait for the first pass; a service would just start serving

	get(hc.ReadinessHandler(), "/api/ready")
	for range 5 {
		_ = payments.Do(ctx, func(context.Context) error { return errors.New("connection refused") })
	}
	get(hc.ReadinessHandler(), "/api/ready")
	// Output:
	// 200 {"status":"ok","checks":{"payments-breaker":{"status":"ok"}}}
	// 200 {"status":"degraded","checks":{"payments-breaker":{"status":"fail"}}}
}

// HTTPCheck expects a 2xx from another service's health endpoint; here a test server that starts
// failing. Refresh runs a pass at once; the service itself would wait for the background passes.
func ExampleHTTPCheck() {
	var status atomic.Int64
	status.Store(http.StatusOK)
	search := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
	}))
	defer search.Close()

	hc, err := health.New(health.Config{HealthyThreshold: 1, UnhealthyThreshold: 1},
		health.Check{Name: "search", Func: health.HTTPCheck(search.Client(), search.URL+"/health")})
	if err != nil {
		log.Fatal(err)
	}
	defer hc.Close()
	ctx := context.Background()
	st, _ := hc.Refresh(ctx)
	fmt.Println(st.Status, st.Checks[0].LastError)

	status.Store(http.StatusServiceUnavailable)
	st, _ = hc.Refresh(ctx)
	fmt.Println(st.Status, st.Checks[0].LastError)
	// Output:
	// pass <nil>
	// fail health: unexpected HTTP status 503
}

// Details (error strings, durations, counters) are shown only to requests that
// Config.AllowVerbose accepts, here those bearing an operator token.
func ExampleConfig_allowVerbose() {
	token := os.Getenv("HEALTH_TOKEN")
	hc, err := health.New(health.Config{
		AllowVerbose: func(r *http.Request) bool {
			got := r.Header.Get("Authorization")
			return token != "" && subtle.ConstantTimeCompare([]byte(got), []byte("Bearer "+token)) == 1
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer hc.Close()
	http.Handle("GET /api/ready", hc.ReadinessHandler()) // GET /api/ready?verbose with the token
}

// RedisCheck PINGs any go-redis client: a standalone client, a Sentinel failover client, or a
// Cluster client (every master).
func ExampleRedisCheck() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
	defer rdb.Close()
	hc, err := health.New(health.Config{}, health.Check{Name: "redis", Func: health.RedisCheck(rdb)})
	if err != nil {
		log.Fatal(err)
	}
	defer hc.Close()
}

// A main that drains on SIGTERM: readiness fails, the server keeps serving for DrainDelay while
// load balancers stop routing to it, then shuts down gracefully.
func ExampleChecker_ShutdownOnSignal() {
	hc, err := health.New(health.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer hc.Close()

	mux := http.NewServeMux()
	srv := &http.Server{Addr: ":8080", Handler: hc.Middleware(mux)}
	go func() {
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	}()
	if err := hc.ShutdownOnSignal(context.Background(), srv); err != nil {
		log.Print(err)
	}
}
