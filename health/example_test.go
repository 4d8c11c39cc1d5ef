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

	"github.com/redis/go-redis/v9"

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
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
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
