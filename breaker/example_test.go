package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/breaker"
	"github.com/outgrow/outgrow/health"
)

// Wrapping an HTTP client to a flaky downstream: after 5 failing responses the breaker opens and
// requests fail fast without reaching the downstream.
func ExampleBreaker_Transport() {
	downstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer downstream.Close()

	b, _ := breaker.New(breaker.Config{Name: "downstream"})
	client := &http.Client{Transport: b.Transport(nil)}
	for i := 1; i <= 6; i++ {
		resp, err := client.Get(downstream.URL)
		if err != nil {
			fmt.Printf("call %d: %v (open: %v)\n", i, errors.Unwrap(err), errors.Is(err, breaker.ErrOpen))
			continue
		}
		resp.Body.Close()
		fmt.Printf("call %d: %d\n", i, resp.StatusCode)
	}
	client.CloseIdleConnections()
	// Output:
	// call 1: 502
	// call 2: 502
	// call 3: 502
	// call 4: 502
	// call 5: 502
	// call 6: breaker downstream: open (open: true)
}

// Wrapping a database call, with a fallback while the breaker is open.
func ExampleDo() {
	b, _ := breaker.New(breaker.Config{Name: "db", Failures: 2})
	query := func(ctx context.Context) (string, error) { return "", errors.New("connection refused") }
	for range 3 {
		name, err := breaker.Do(context.Background(), b, query)
		if errors.Is(err, breaker.ErrOpen) {
			name = "(cached name)"
		}
		fmt.Println(name, err)
	}
	fmt.Println(b.State())
	// Output:
	//  connection refused
	//  connection refused
	// (cached name) breaker db: open
	// open
}

// An open breaker shows in readiness as degraded (warn, still 200), not as down: the instance
// itself is fine and keeps serving what does not need the dependency.
func ExampleBreaker_Check() {
	b, _ := breaker.New(breaker.Config{Name: "payments", Failures: 1})
	hc, _ := health.New(health.Config{},
		health.Check{Name: "payments-breaker", Func: b.Check, NonCritical: true, Local: true})
	defer hc.Close()

	ctx := context.Background()
	st, _ := hc.Refresh(ctx)
	fmt.Println(st.Status)
	_ = b.Do(ctx, func(context.Context) error { return errors.New("payments down") })
	st, _ = hc.Refresh(ctx)
	fmt.Println(st.Status)
	// Output:
	// pass
	// warn
}

// Two instances of a service share one breaker through a store: a MemoryStore here, a
// RedisStore in production (NewRedisStore(rdb, breaker.RedisConfig{})). Failures on either
// instance add up, and when one opens the breaker the other refuses calls too.
func ExampleNewMemoryStore() {
	store, _ := breaker.NewMemoryStore(breaker.MemoryConfig{})
	defer store.Close()
	a, _ := breaker.New(breaker.Config{Name: "payments", Store: store})
	b, _ := breaker.New(breaker.Config{Name: "payments", Store: store})

	down := func(context.Context) error { return errors.New("payments down") }
	ctx := context.Background()
	for range 5 {
		_ = a.Do(ctx, down)
	}
	fmt.Println("a:", a.State())
	for deadline := time.Now().Add(time.Second); b.State() != breaker.StateOpen && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond) // the announcement reaches b within a flush
	}
	fmt.Println("b:", b.State())
	err := b.Do(ctx, func(context.Context) error { return nil })
	fmt.Println(errors.Is(err, breaker.ErrOpen))
	// Output:
	// a: open
	// b: open
	// true
}

// In production every instance creates one RedisStore on its Redis client and passes it to the
// breakers it wants shared.
func ExampleNewRedisStore() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", ContextTimeoutEnabled: true})
	defer rdb.Close()
	store, err := breaker.NewRedisStore(rdb, breaker.RedisConfig{Prefix: "myapp:breaker:"})
	if err != nil {
		panic(err)
	}
	defer store.Close() // sends the outcomes still waiting

	payments, _ := breaker.New(breaker.Config{Name: "payments", Store: store})
	client := &http.Client{Transport: payments.Transport(nil)}
	_ = client
}

// Protecting a handler whose backend fails: after 5 server errors the middleware answers 503
// itself, with Retry-After, without calling the handler.
func ExampleBreaker_Middleware() {
	b, _ := breaker.New(breaker.Config{Name: "reports"})
	calls := 0
	handler := b.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		http.Error(w, "database unavailable", http.StatusInternalServerError)
	}))
	for i := 1; i <= 6; i++ {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/reports", nil))
		fmt.Printf("request %d: %d %q %s", i, rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	fmt.Println("handler calls:", calls)
	// Output:
	// request 1: 500 "" database unavailable
	// request 2: 500 "" database unavailable
	// request 3: 500 "" database unavailable
	// request 4: 500 "" database unavailable
	// request 5: 500 "" database unavailable
	// request 6: 503 "30" {"error":"Service temporarily unavailable."}
	// handler calls: 5
}

// One breaker per downstream host: the breaker of a failing host opens, while requests to a
// healthy host go through.
func ExampleRegistry() {
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer healthy.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer failing.Close()

	hosts, _ := breaker.NewRegistry(breaker.RegistryConfig{Config: breaker.Config{Failures: 3}})
	client := &http.Client{Transport: hosts.Transport(nil)}
	get := func(name, url string) {
		resp, err := client.Get(url)
		if err != nil {
			fmt.Printf("%s: open: %v\n", name, errors.Is(err, breaker.ErrOpen))
			return
		}
		resp.Body.Close()
		fmt.Printf("%s: %d\n", name, resp.StatusCode)
	}
	for range 4 {
		get("failing", failing.URL)
	}
	get("healthy", healthy.URL)
	fmt.Println("breakers:", hosts.Len())
	client.CloseIdleConnections()
	// Output:
	// failing: 502
	// failing: 502
	// failing: 502
	// failing: open: true
	// healthy: 200
	// breakers: 2
}
