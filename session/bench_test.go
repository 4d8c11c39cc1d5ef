package session

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/outgrow/outgrow/internal/redistest"
)

// BenchmarkRequest: one request through the middleware reading, or changing, one value of a
// session of three values, anonymous or a logged-in user's (op=userwrite), on the memory store
// and on Redis (miniredis unless OUTGROW_REDIS_URL or OUTGROW_REDIS_CLUSTER is set).
func BenchmarkRequest(b *testing.B) {
	for _, kind := range []string{"memory", "redis"} {
		for _, op := range []string{"read", "write", "userwrite"} {
			b.Run("store="+kind+"/op="+op, func(b *testing.B) {
				var st Store = newMemoryStore(b)
				if kind == "redis" {
					rdb := redistest.New(b)
					rs, err := NewRedisStore(rdb, RedisConfig{Prefix: redistest.Prefix(b, rdb)})
					if err != nil {
						b.Fatal(err)
					}
					st = rs
				}
				m, err := New(st, Config{})
				if err != nil {
					b.Fatal(err)
				}
				seed := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					s := FromContext(r.Context())
					_ = s.Put("user", "ada")
					_ = s.Put("cart", 0)
					_ = s.Put("theme", "dark")
					if op == "userwrite" {
						_ = s.Login("ada")
					}
				}))
				rec := httptest.NewRecorder()
				seed.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
				cookie := rec.Result().Cookies()[0]
				h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					s := FromContext(r.Context())
					if op != "read" {
						_ = s.Put("cart", s.Int("cart")+1)
					} else if s.String("user") != "ada" {
						w.WriteHeader(http.StatusInternalServerError)
					}
				}))
				req := httptest.NewRequest("GET", "/", nil)
				req.AddCookie(cookie)
				b.ReportAllocs()
				for b.Loop() {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != http.StatusOK {
						b.Fatal(rec.Code)
					}
				}
			})
		}
	}
}
