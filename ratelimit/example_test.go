package ratelimit_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/outgrow/outgrow/ratelimit"
)

// The article's login limit: 5 attempts per minute per IP.
func ExampleLimiter_Allow() {
	store, _ := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
	login, _ := ratelimit.New(store, ratelimit.PerMinute(5), ratelimit.Config{Name: "login", FailurePolicy: ratelimit.FailClosed})
	ctx := context.Background()
	for i := 1; i <= 6; i++ {
		r, err := login.Allow(ctx, "203.0.113.9")
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		fmt.Printf("attempt %d: allowed=%v remaining=%d\n", i, r.Allowed, r.Remaining)
	}
	// Output:
	// attempt 1: allowed=true remaining=4
	// attempt 2: allowed=true remaining=3
	// attempt 3: allowed=true remaining=2
	// attempt 4: allowed=true remaining=1
	// attempt 5: allowed=true remaining=0
	// attempt 6: allowed=false remaining=0
}

// Three limits on one request, all or nothing: the denied login attempt does not use up the
// client's global budget.
func ExampleAllowAll() {
	store, _ := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
	global, _ := ratelimit.New(store, ratelimit.PerMinute(1000), ratelimit.Config{Name: "global"})
	login, _ := ratelimit.New(store, ratelimit.PerMinute(5), ratelimit.Config{Name: "login"})
	ctx := context.Background()
	ip := "203.0.113.9"
	for range 6 {
		d, _ := ratelimit.AllowAll(ctx, ratelimit.Layer{Limiter: global, Key: ip}, ratelimit.Layer{Limiter: login, Key: ip})
		if !d.Allowed {
			fmt.Println("denied by", d.Denied)
		}
	}
	r, _ := global.Peek(ctx, ip)
	fmt.Println("global remaining:", r.Remaining)
	// Output:
	// denied by [login]
	// global remaining: 995
}

// The article's three limits layered on one mux: 1000 requests per minute per IP, 5 login
// attempts per minute per IP, 100 calls per minute per API key. Swap the store for
// ratelimit.NewRedisStore(rdb, ratelimit.RedisConfig{}) to share the limits between instances.
func ExampleMiddleware() {
	store, _ := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
	global, _ := ratelimit.New(store, ratelimit.PerMinute(1000), ratelimit.Config{Name: "global"})
	login, _ := ratelimit.New(store, ratelimit.PerMinute(5), ratelimit.Config{Name: "login", FailurePolicy: ratelimit.FailClosed})
	apikey, _ := ratelimit.New(store, ratelimit.PerMinute(100), ratelimit.Config{Name: "apikey"})

	byIP, _ := ratelimit.KeyByIP(ratelimit.IPConfig{}) // behind a load balancer: set TrustedProxies
	loginRoute, _ := ratelimit.Routes("POST /api/login")
	limit, err := ratelimit.Middleware(ratelimit.MiddlewareConfig{},
		ratelimit.Rule{Limiter: global, Key: byIP},
		ratelimit.Rule{Limiter: login, Key: byIP, Match: loginRoute,
			Message: "Too many login attempts. Try again in {retry}."},
		ratelimit.Rule{Limiter: apikey, Key: ratelimit.KeyByHeader("X-API-Key")},
	)
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/login", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "welcome")
	})
	handler := limit(mux)

	for range 6 {
		r := httptest.NewRequest("POST", "/api/login", nil)
		r.RemoteAddr = "203.0.113.9:41000"
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			fmt.Print(w.Code, " Retry-After: ", w.Header().Get("Retry-After"), " ", w.Body.String())
		}
	}
	// Output:
	// 429 Retry-After: 12 {"error":"Too many login attempts. Try again in 12 seconds.","policy":"login","retry_after":12}
}
