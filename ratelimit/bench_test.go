package ratelimit

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outgrow/outgrow/internal/redistest"
)

func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "10.0." + strconv.Itoa(i>>8) + "." + strconv.Itoa(i&255)
	}
	return keys
}

// grantAll is a limit that grants every benchmark decision while keeping each key throttled
// (not back to a full burst), so the steady state is measured: no key is swept and re-created.
var grantAll = Limit{Rate: 1000, Period: time.Second, Burst: 1_000_000}

// BenchmarkMemoryAllow: parallel decisions over 10k keys, all grants.
func BenchmarkMemoryAllow(b *testing.B) {
	s, _ := NewMemoryStore(MemoryConfig{})
	l, _ := New(s, grantAll, Config{})
	keys := benchKeys(10_000)
	ctx := context.Background()
	for _, k := range keys {
		_, _ = l.Allow(ctx, k)
	}
	benchParallel(b, l, keys)
}

// benchParallel decides keys in parallel, each goroutine starting at its own place.
func benchParallel(b *testing.B, l *Limiter, keys []string) {
	ctx := context.Background()
	var seq atomic.Uint32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1)) * 7919
		for pb.Next() {
			_, _ = l.Allow(ctx, keys[i%len(keys)])
			i++
		}
	})
}

// BenchmarkMemoryAllowAll: three layers on one memory store.
func BenchmarkMemoryAllowAll(b *testing.B) {
	s, _ := NewMemoryStore(MemoryConfig{})
	global, _ := New(s, grantAll, Config{Name: "global"})
	login, _ := New(s, grantAll, Config{Name: "login"})
	apikey, _ := New(s, grantAll, Config{Name: "apikey"})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = AllowAll(ctx, Layer{Limiter: global, Key: "ip"}, Layer{Limiter: login, Key: "ip"}, Layer{Limiter: apikey, Key: "key"})
	}
}

// BenchmarkRedisAllow: parallel decisions on the test Redis (miniredis unless
// OUTGROW_REDIS_URL or OUTGROW_REDIS_CLUSTER is set).
func BenchmarkRedisAllow(b *testing.B) {
	rdb := redistest.New(b)
	s, _ := NewRedisStore(rdb, RedisConfig{Prefix: redistest.Prefix(b, rdb)})
	l, _ := New(s, grantAll, Config{})
	benchParallel(b, l, benchKeys(1000))
}

// BenchmarkMiddleware: the three layered rules of the article on one request, in memory.
func BenchmarkMiddleware(b *testing.B) {
	s, _ := NewMemoryStore(MemoryConfig{})
	global, _ := New(s, grantAll, Config{Name: "global"})
	login, _ := New(s, grantAll, Config{Name: "login"})
	apikey, _ := New(s, grantAll, Config{Name: "apikey"})
	byIP, _ := KeyByIP(IPConfig{})
	route, _ := Routes("POST /login")
	mw, _ := Middleware(MiddlewareConfig{},
		Rule{Limiter: global, Key: byIP},
		Rule{Limiter: login, Key: byIP, Match: route},
		Rule{Limiter: apikey, Key: KeyByHeader("X-API-Key")})
	h := mw(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := httptest.NewRequest("POST", "/login", nil)
	r.RemoteAddr = "203.0.113.9:1000"
	r.Header.Set("X-API-Key", "key-1")
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		clear(w.Header())
		h.ServeHTTP(w, r)
	}
}
