package ratelimit_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/ratelimit"
)

// At most 5 login attempts in any minute per IP: a strict limit. The sixth attempt waits until
// the first is a minute old.
func ExampleLimiter_Allow() {
	store, _ := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
	login, _ := ratelimit.New(store, ratelimit.Limit{Rate: 5, Period: time.Minute, Strict: true},
		ratelimit.Config{Name: "login", FailurePolicy: ratelimit.FailClosed})
	ctx := context.Background()
	for i := 1; i <= 6; i++ {
		r, err := login.Allow(ctx, "203.0.113.9")
		if err != nil {
			fmt.Println("error:", err)
			return
		}
		fmt.Printf("attempt %d: allowed=%v remaining=%d retry after about %v\n", i, r.Allowed, r.Remaining, r.RetryAfter.Round(time.Second))
	}
	// Output:
	// attempt 1: allowed=true remaining=4 retry after about 0s
	// attempt 2: allowed=true remaining=3 retry after about 0s
	// attempt 3: allowed=true remaining=2 retry after about 0s
	// attempt 4: allowed=true remaining=1 retry after about 0s
	// attempt 5: allowed=true remaining=0 retry after about 0s
	// attempt 6: allowed=false remaining=0 retry after about 1m0s
}

// Three limits on one request, all or nothing: the denied login attempt does not use up the
// client's global budget.
func ExampleAllowAll() {
	store, _ := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
	global, _ := ratelimit.New(store, ratelimit.PerMinute(1000), ratelimit.Config{Name: "global"})
	login, _ := ratelimit.New(store, ratelimit.Limit{Rate: 5, Period: time.Minute, Strict: true}, ratelimit.Config{Name: "login"})
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

// Two limits layered on one mux: 1000 requests per minute per IP everywhere, and at most 5
// login attempts in any minute per IP on the login route. The sixth attempt gets a 429 naming
// the login policy. Swap the store for ratelimit.NewRedisStore(rdb, ratelimit.RedisConfig{}) to
// share the limits between instances (see NewRedisStore).
func ExampleMiddleware() {
	store, _ := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
	global, _ := ratelimit.New(store, ratelimit.PerMinute(1000), ratelimit.Config{Name: "global"})
	login, _ := ratelimit.New(store, ratelimit.Limit{Rate: 5, Period: time.Minute, Strict: true},
		ratelimit.Config{Name: "login"})

	byIP, _ := ratelimit.KeyByIP(ratelimit.IPConfig{}) // behind a load balancer: set TrustedProxies
	loginRoute, _ := ratelimit.Routes("POST /api/login")
	limit, err := ratelimit.Middleware(ratelimit.MiddlewareConfig{},
		ratelimit.Rule{Limiter: global, Key: byIP},
		ratelimit.Rule{Limiter: login, Key: byIP, Match: loginRoute, Message: "Too many login attempts. Try again in {retry}."},
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
	// 429 Retry-After: 60 {"error":"Too many login attempts. Try again in 1 minute.","policy":"login","retry_after":60}
}

// The three limits of a typical API, shared by every instance through Redis, behind a load
// balancer: 1000 requests per minute per IP, at most 5 login attempts in any minute per IP on
// the login routes, 100 calls per minute per API key. The client address comes from
// X-Forwarded-For only when the TCP peer is one of the balancer's networks. Create the client
// with ContextTimeoutEnabled, so that RedisConfig.Timeout bounds every call.
func ExampleNewRedisStore() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
	defer rdb.Close()
	store, err := ratelimit.NewRedisStore(rdb, ratelimit.RedisConfig{})
	if err != nil {
		log.Fatal(err)
	}
	global, _ := ratelimit.New(store, ratelimit.PerMinute(1000), ratelimit.Config{Name: "global"})
	login, _ := ratelimit.New(store, ratelimit.Limit{Rate: 5, Period: time.Minute, Strict: true},
		ratelimit.Config{Name: "login", FailurePolicy: ratelimit.FailClosed})
	apikey, _ := ratelimit.New(store, ratelimit.PerMinute(100), ratelimit.Config{Name: "apikey", SecretKeys: true})

	byIP, err := ratelimit.KeyByIP(ratelimit.IPConfig{
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	})
	if err != nil {
		log.Fatal(err)
	}
	loginRoute, err := ratelimit.Routes("POST /api/login", "POST /api/password-reset")
	if err != nil {
		log.Fatal(err)
	}
	limit, err := ratelimit.Middleware(ratelimit.MiddlewareConfig{},
		ratelimit.Rule{Limiter: global, Key: byIP},
		ratelimit.Rule{Limiter: login, Key: byIP, Match: loginRoute,
			Message: "Too many login attempts. Try again in {retry}."},
		ratelimit.Rule{Limiter: apikey, Key: ratelimit.KeyByHeader("X-API-Key")},
	)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	log.Fatal(http.ListenAndServe(":8080", limit(mux)))
}

// Hooks of a Limiter whose keys are secrets receive a digest of the key, the same on every
// instance: compute the digest of a known key to find its decisions in logs or metrics.
func ExampleConfig_secretKeys() {
	store, _ := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
	apikey, _ := ratelimit.New(store, ratelimit.PerMinute(1), ratelimit.Config{
		Name:       "apikey",
		SecretKeys: true,
		Hooks: ratelimit.Hooks{OnLimited: func(_ context.Context, key string, r ratelimit.Result) {
			fmt.Println("limited:", key)
		}},
	})
	ctx := context.Background()
	for range 2 {
		_, _ = apikey.Allow(ctx, "sk_live_8f2c41a9")
	}
	fmt.Println("digest of the key:", apikey.KeyDigest("sk_live_8f2c41a9"))
	// Output:
	// limited: SZmXT4m3djma9f7f5K_Szw
	// digest of the key: SZmXT4m3djma9f7f5K_Szw
}
