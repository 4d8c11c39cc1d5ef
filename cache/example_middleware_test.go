package cache_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/outgrow/outgrow/cache"
)

// A product page that browsers keep for a minute and the CDN for an hour, served stale for up
// to 30 s while the CDN refetches it. A browser that revalidates gets 304 and no body; a
// logged-in user's page never lands in the CDN.
func ExampleMiddleware() {
	mw, err := cache.Middleware(cache.MiddlewareConfig{
		Policy:         cache.Policy{TTL: time.Minute, StaleWhileRevalidate: 30 * time.Second},
		SharedTTL:      time.Hour,
		Public:         true,
		Vary:           []string{"Accept-Language"},
		SessionCookies: []string{"sid"},
	})
	if err != nil { // only an invalid config fails, matching cache.ErrInvalidConfig
		fmt.Println(err)
		return
	}
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<h1>Teapot, 1.5 l</h1>")
	}))

	get := func(header ...string) *http.Response {
		r := httptest.NewRequest("GET", "/products/42", nil)
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Set(header[i], header[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Result()
	}

	res := get()
	fmt.Println(res.StatusCode, res.Header.Get("Cache-Control"))
	fmt.Println("Vary:", res.Header.Get("Vary"))

	again := get("If-None-Match", res.Header.Get("ETag"))
	b, _ := io.ReadAll(again.Body)
	fmt.Println(again.StatusCode, len(b), "bytes,", again.Header.Get("Cache-Control"))

	user := get("Cookie", "sid=abc123")
	fmt.Println(user.StatusCode, user.Header.Get("Cache-Control"))
	// Output:
	// 200 public, max-age=60, s-maxage=3600, stale-while-revalidate=30
	// Vary: Accept-Language
	// 304 0 bytes, public, max-age=60, s-maxage=3600, stale-while-revalidate=30
	// 200 private, max-age=60, stale-while-revalidate=30
}
