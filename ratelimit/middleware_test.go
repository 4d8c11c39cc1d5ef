package ratelimit

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

// site is the article's three layered limits on one mux.
type site struct {
	handler        http.Handler
	global, login  *Limiter
	apikey         *Limiter
	reachedHandler int
}

func newSite(t *testing.T, cfg MiddlewareConfig, ip IPConfig) *site {
	t.Helper()
	return newSiteOn(t, memStore(t), cfg, ip)
}

func newSiteOn(t *testing.T, store Store, cfg MiddlewareConfig, ip IPConfig) *site {
	t.Helper()
	s := &site{}
	s.global = newLimiter(t, store, PerMinute(1000), Config{Name: "global"})
	s.login = newLimiter(t, store, PerMinute(5), Config{Name: "login", FailurePolicy: FailClosed})
	s.apikey = newLimiter(t, store, PerMinute(100), Config{Name: "apikey"})
	byIP, err := KeyByIP(ip)
	require.NoError(t, err)
	loginRoute, err := Routes("POST /login")
	require.NoError(t, err)
	mw, err := Middleware(cfg,
		Rule{Limiter: s.global, Key: byIP},
		Rule{Limiter: s.login, Key: byIP, Match: loginRoute, Message: "Too many login attempts. Try again in {retry}."},
		Rule{Limiter: s.apikey, Key: KeyByHeader("X-API-Key")},
	)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.reachedHandler++
		w.WriteHeader(http.StatusNoContent)
	})
	s.handler = mw(mux)
	return s
}

func (s *site) do(method, path, remote string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	s.handler.ServeHTTP(w, r)
	return w
}

func TestMiddlewareLoginLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSite(t, MiddlewareConfig{}, IPConfig{})
		for i := range 5 {
			w := s.do("POST", "/login", "192.0.2.1:5000")
			require.Equal(t, http.StatusNoContent, w.Code, "attempt %d", i)
		}
		w := s.do("POST", "/login", "192.0.2.1:5000")
		assert.Equal(t, http.StatusTooManyRequests, w.Code)
		assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
		assert.Equal(t, "12", w.Header().Get("Retry-After"), "one attempt comes back every 12 s")
		var body map[string]any
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body))
		assert.Equal(t, map[string]any{"error": "Too many login attempts. Try again in 12 seconds.", "policy": "login", "retry_after": 12.0}, body)
		assert.Equal(t, `"global";q=1000;w=60, "login";q=5;w=60`, w.Header().Get("RateLimit-Policy"))
		assert.Equal(t, `"login";r=0;t=60`, w.Header().Get("RateLimit"), "a denial lists the policies that denied")
		assert.Equal(t, 5, s.reachedHandler)

		p, _ := s.global.Peek(t.Context(), "192.0.2.1")
		assert.Equal(t, 995, p.Remaining, "all or nothing: the denied login did not charge global")

		w = s.do("GET", "/items", "192.0.2.1:5000")
		assert.Equal(t, http.StatusNoContent, w.Code, "other routes are only under the global limit")
		assert.Equal(t, `"global";q=1000;w=60`, w.Header().Get("RateLimit-Policy"))
		w = s.do("POST", "/login", "192.0.2.2:5000")
		assert.Equal(t, http.StatusNoContent, w.Code, "another client has its own budget")
	})
}

func TestMiddlewareAPIKeyLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSite(t, MiddlewareConfig{LegacyHeaders: true}, IPConfig{})
		for i := range 100 {
			w := s.do("GET", "/api/items", "192.0.2.1:1", "X-API-Key", "key-1")
			require.Equal(t, http.StatusNoContent, w.Code, "call %d", i)
		}
		w := s.do("GET", "/api/items", "192.0.2.1:1", "X-API-Key", "key-1")
		assert.Equal(t, http.StatusTooManyRequests, w.Code)
		assert.Equal(t, "1", w.Header().Get("Retry-After"), "0.6 s rounds up to 1")
		assert.Contains(t, w.Body.String(), `"error":"Too many requests. Try again in 1 second."`)
		assert.NotContains(t, w.Body.String(), "key-1", "keys are never echoed")
		assert.NotContains(t, w.Body.String(), "192.0.2.1")
		assert.Equal(t, "100", w.Header().Get("X-RateLimit-Limit"))
		assert.Equal(t, "0", w.Header().Get("X-RateLimit-Remaining"))
		w = s.do("GET", "/api/items", "192.0.2.1:1", "X-API-Key", "key-2")
		assert.Equal(t, http.StatusNoContent, w.Code)
		w = s.do("GET", "/api/items", "192.0.2.1:1")
		assert.Equal(t, http.StatusNoContent, w.Code, "no key: the API key rule does not apply")
	})
}

// TestMiddlewareClientIP: the security vectors of client identification.
func TestMiddlewareClientIP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newSite(t, MiddlewareConfig{}, IPConfig{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
		// A client that is not a trusted proxy cannot pick its key with X-Forwarded-For.
		for i := range 5 {
			w := s.do("POST", "/login", "203.0.113.9:1", "X-Forwarded-For", "198.51.100."+string(rune('1'+i)))
			require.Equal(t, http.StatusNoContent, w.Code)
		}
		assert.Equal(t, http.StatusTooManyRequests, s.do("POST", "/login", "203.0.113.9:1", "X-Forwarded-For", "198.51.100.99").Code)

		// Behind the trusted proxy, the rightmost untrusted hop is the client, whatever it prepends.
		for i := range 5 {
			w := s.do("POST", "/login", "10.0.0.2:1", "X-Forwarded-For", "1.1.1."+string(rune('1'+i))+", 198.51.100.7")
			require.Equal(t, http.StatusNoContent, w.Code)
		}
		assert.Equal(t, http.StatusTooManyRequests, s.do("POST", "/login", "10.0.0.2:1", "X-Forwarded-For", "198.51.100.7").Code)

		// IPv6 addresses rotated inside one /56 share a budget; IPv4-mapped is IPv4.
		for i := range 5 {
			w := s.do("POST", "/login", "[2001:db8:1:2"+string(rune('0'+i))+"::"+string(rune('1'+i))+"]:1")
			require.Equal(t, http.StatusNoContent, w.Code)
		}
		assert.Equal(t, http.StatusTooManyRequests, s.do("POST", "/login", "[2001:db8:1:ff::1]:1").Code)
		assert.Equal(t, http.StatusNoContent, s.do("POST", "/login", "[2001:db8:1:100::1]:1").Code, "another /56")
		assert.Equal(t, http.StatusTooManyRequests, s.do("POST", "/login", "[::ffff:203.0.113.9]:1").Code)

		// No usable address is refused, never let through unlimited.
		w := s.do("POST", "/login", "")
		assert.Equal(t, http.StatusBadRequest, w.Code)
		assert.JSONEq(t, `{"error":"Could not identify the client."}`, w.Body.String())
		assert.Equal(t, http.StatusBadRequest, s.do("GET", "/", "not-an-ip").Code)
	})
}

func TestMiddlewareOptions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memStore(t)
		strict := newLimiter(t, store, PerMinute(2), Config{Name: "strict"})
		trial := newLimiter(t, store, PerMinute(1), Config{Name: "trial"})
		byIP, _ := KeyByIP(IPConfig{})
		denied := 0
		mw, err := Middleware(MiddlewareConfig{
			Skip: func(r *http.Request) bool { return r.URL.Path == "/health" },
			OnDenied: func(w http.ResponseWriter, r *http.Request, d Decision) {
				denied++
				assert.Equal(t, []string{"strict"}, d.Denied)
				w.WriteHeader(http.StatusTeapot)
			},
		},
			Rule{Limiter: strict, Key: func(r *http.Request) (string, error) {
				ip, err := byIP(r)
				return r.URL.Path + " " + ip, err
			}, Cost: func(r *http.Request) int {
				if r.Method == http.MethodPost {
					return 2
				}
				return 1
			}},
			Rule{Limiter: trial, Key: byIP, DryRun: true},
		)
		require.NoError(t, err)
		h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		do := func(method, path string) *httptest.ResponseRecorder {
			r := httptest.NewRequest(method, path, nil)
			r.RemoteAddr = "192.0.2.1:1"
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w
		}
		for range 5 {
			assert.Equal(t, http.StatusOK, do("GET", "/health").Code, "skipped")
		}
		w := do("POST", "/a")
		assert.Equal(t, http.StatusOK, w.Code, "costs 2 of 2")
		assert.Equal(t, `"strict";r=0;t=60`, w.Header().Get("RateLimit"), "dry-run rules stay out of headers")
		w = do("GET", "/b")
		assert.Equal(t, http.StatusOK, w.Code, "another endpoint, another key; the dry-run rule never blocks")
		assert.Equal(t, http.StatusTeapot, do("POST", "/a").Code)
		assert.Equal(t, 1, denied)
		assert.Equal(t, uint64(2), trial.Stats().Limited, "dry-run denials are counted")

		_, err = Middleware(MiddlewareConfig{})
		assert.Error(t, err)
		_, err = Middleware(MiddlewareConfig{}, Rule{Limiter: strict})
		assert.Error(t, err)
		_, err = Routes("GET /a", "BAD PATTERN WITH SPACES x")
		assert.Error(t, err)
		_, err = KeyByIP(IPConfig{IPv6Prefix: 200})
		assert.Error(t, err)
	})
}

// TestMiddlewareEdgeCases: a dry-run rule without a key never refuses; a cost above the burst
// is a 429 without Retry-After.
func TestMiddlewareEdgeCases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memStore(t)
		small := newLimiter(t, store, PerMinute(2), Config{Name: "small"})
		trial := newLimiter(t, store, PerMinute(1), Config{Name: "trial"})
		byIP, _ := KeyByIP(IPConfig{})
		mw, err := Middleware(MiddlewareConfig{},
			Rule{Limiter: small, Key: KeyByHeader("X-Key"), Cost: func(r *http.Request) int { return len(r.URL.Path) - 1 }},
			Rule{Limiter: trial, Key: byIP, DryRun: true})
		require.NoError(t, err)
		h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		do := func(path, remote string) *httptest.ResponseRecorder {
			r := httptest.NewRequest("GET", path, nil)
			r.RemoteAddr = remote
			r.Header.Set("X-Key", "k")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w
		}
		assert.Equal(t, http.StatusOK, do("/", "").Code, "no client address: the dry-run rule is skipped; cost 0 counts as 1")
		w := do("/abc", "192.0.2.1:1")
		assert.Equal(t, http.StatusTooManyRequests, w.Code, "cost 3 exceeds the burst of 2")
		assert.Empty(t, w.Header().Get("Retry-After"), "waiting would not help")
	})
}

func TestMiddlewareFailClosed(t *testing.T) {
	m, s := miniStore(t, RedisConfig{})
	login := newLimiter(t, s, PerMinute(5), Config{Name: "login", FailurePolicy: FailClosed})
	byIP, _ := KeyByIP(IPConfig{})
	mw, err := Middleware(MiddlewareConfig{}, Rule{Limiter: login, Key: byIP})
	require.NoError(t, err)
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	m.SetError("ERR secret-internal-detail")
	r := httptest.NewRequest("POST", "/login", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Equal(t, "1", w.Header().Get("Retry-After"))
	assert.NotContains(t, w.Body.String(), "secret")
	assert.False(t, strings.Contains(w.Body.String(), "ratelimit:"), "no key or prefix in the body")
}

// TestMiddlewareSameResponsesOnEveryStore: one request sequence gets the same status, RateLimit,
// RateLimit-Policy, Retry-After and legacy fields and the same body from the memory store and
// from every Redis, deny cache on: refusals by the deny cache answer like refusals by the store.
func TestMiddlewareSameResponsesOnEveryStore(t *testing.T) {
	type response struct {
		code   int
		header http.Header
		body   string
	}
	sequence := func(t *testing.T, store Store) []response {
		s := newSiteOn(t, store, MiddlewareConfig{LegacyHeaders: true}, IPConfig{})
		var out []response
		record := func(w *httptest.ResponseRecorder) {
			h := http.Header{}
			for _, k := range []string{"Ratelimit", "Ratelimit-Policy", "Retry-After", "X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset"} {
				h[k] = w.Header()[k]
			}
			out = append(out, response{w.Code, h, w.Body.String()})
		}
		for range 8 { // 5 granted, then the store denies, then (on Redis) the deny cache
			record(s.do("POST", "/login", "192.0.2.1:5000", "X-API-Key", "key-1"))
		}
		record(s.do("GET", "/items", "192.0.2.1:5000", "X-API-Key", "key-1"))
		record(s.do("POST", "/login", "192.0.2.2:5000"))
		return out
	}
	var want []response
	synctest.Test(t, func(t *testing.T) { want = sequence(t, memStore(t)) })
	require.Equal(t, http.StatusTooManyRequests, want[7].code)

	redistest.Each(t, func(t *testing.T, b redistest.Backend) {
		if !b.IsRedis() {
			return
		}
		if b.Mini != nil {
			b.Mini.SetTime(time.Now().Truncate(time.Second))
		}
		store, err := NewRedisStore(b.Client, RedisConfig{Prefix: b.Prefix, Timeout: 5 * time.Second})
		require.NoError(t, err)
		got := sequence(t, store)
		for i := range want {
			assert.Equal(t, want[i], got[i], "response %d", i)
		}
	})
}

func TestHumanSeconds(t *testing.T) {
	for s, want := range map[int64]string{0: "1 second", 1: "1 second", 12: "12 seconds", 60: "1 minute",
		120: "2 minutes", 90: "90 seconds", 3600: "1 hour", 7200: "2 hours"} {
		assert.Equal(t, want, humanSeconds(s))
	}
}
