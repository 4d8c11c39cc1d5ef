package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

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
	hc, _ := health.New(health.Config{HealthyThreshold: 1, UnhealthyThreshold: 1},
		health.Check{Name: "payments-breaker", Func: b.Check, NonCritical: true})
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
