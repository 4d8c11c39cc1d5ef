package cache

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/cachecontrol"
)

const page = "<h1>hello, world</h1>"

// text answers page with a Content-Type, as most handlers do.
func text(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, body)
	}
}

func wrap(t testing.TB, cfg MiddlewareConfig, h http.Handler) http.Handler {
	t.Helper()
	mw, err := Middleware(cfg)
	require.NoError(t, err)
	return mw(h)
}

// req builds a request with header name/value pairs.
func req(method, target string, header ...string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return r
}

// do serves r and returns what the client would see: the status, the header as it was when the
// status was sent, and the body.
func do(h http.Handler, r *http.Request) *http.Response {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec.Result()
}

func body(t testing.TB, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return string(b)
}

func TestMiddlewareDefaults(t *testing.T) {
	h := wrap(t, MiddlewareConfig{}, text(page))
	res := do(h, req("GET", "/"))
	assert.Equal(t, 200, res.StatusCode)
	assert.Equal(t, page, body(t, res))
	assert.Equal(t, "private, max-age=300", res.Header.Get("Cache-Control"))
	assert.Regexp(t, `^"[A-Za-z0-9_-]{22}"$`, res.Header.Get("ETag"))
	assert.Equal(t, fmt.Sprint(len(page)), res.Header.Get("Content-Length"))
	assert.Empty(t, res.Header.Values("Vary"))

	// The same body gives the same tag; another body another one.
	assert.Equal(t, res.Header.Get("ETag"), do(h, req("GET", "/")).Header.Get("ETag"))
	other := do(wrap(t, MiddlewareConfig{}, text(page+"!")), req("GET", "/"))
	assert.NotEqual(t, res.Header.Get("ETag"), other.Header.Get("ETag"))
}

func TestMiddlewareDirectives(t *testing.T) {
	tests := []struct {
		name string
		cfg  MiddlewareConfig
		want string
	}{
		{"ttl", MiddlewareConfig{Policy: Policy{TTL: 90 * time.Second}}, "private, max-age=90"},
		{"sub-second rounds down", MiddlewareConfig{Policy: Policy{TTL: 1500 * time.Millisecond}}, "private, max-age=1"},
		{"public everything", MiddlewareConfig{
			Policy:    Policy{TTL: time.Minute, StaleWhileRevalidate: 30 * time.Second, StaleIfError: 24 * time.Hour},
			SharedTTL: time.Hour, Public: true, Immutable: true,
		}, "public, max-age=60, s-maxage=3600, stale-while-revalidate=30, stale-if-error=86400, immutable"},
		{"private keeps stale windows", MiddlewareConfig{
			Policy: Policy{StaleWhileRevalidate: time.Minute, StaleIfError: time.Hour}, Immutable: true,
		}, "private, max-age=300, stale-while-revalidate=60, stale-if-error=3600, immutable"},
		{"no-store alone", MiddlewareConfig{NoStore: true, Policy: Policy{TTL: time.Hour, StaleIfError: time.Hour}}, "no-store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := do(wrap(t, tt.cfg, text(page)), req("GET", "/"))
			assert.Equal(t, tt.want, res.Header.Get("Cache-Control"))
			// What a cache reads back is what the config says.
			d := cachecontrol.Parse(res.Header.Values("Cache-Control")...)
			assert.Equal(t, tt.cfg.Public, d.Public)
			assert.Equal(t, !tt.cfg.Public && !tt.cfg.NoStore, d.Private)
			assert.Equal(t, tt.cfg.Immutable, d.Immutable)
			assert.Equal(t, tt.cfg.SharedTTL.Truncate(time.Second), d.SMaxAge.Duration())
			assert.Equal(t, tt.cfg.StaleWhileRevalidate.Truncate(time.Second), d.StaleWhileRevalidate.Duration())
		})
	}
}

func TestMiddlewareConditionalGET(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html")
		h.Set("Content-Encoding", "gzip")
		h.Set("Content-Location", "/index.html")
		h.Set("Date", "Tue, 03 Jun 2025 10:00:00 GMT")
		h.Set("Expires", "Tue, 03 Jun 2025 10:05:00 GMT")
		h.Set("Vary", "Origin")
		h.Set("X-Request-Id", "7")
		_, _ = io.WriteString(w, "gzipped bytes")
	})
	h := wrap(t, MiddlewareConfig{Public: true, SharedTTL: time.Hour}, handler)
	first := do(h, req("GET", "/"))
	require.Equal(t, 200, first.StatusCode)
	etag := first.Header.Get("ETag")
	require.NotEmpty(t, etag)

	res := do(h, req("GET", "/", "If-None-Match", etag))
	assert.Equal(t, http.StatusNotModified, res.StatusCode)
	assert.Empty(t, body(t, res))
	for _, k := range []string{"ETag", "Cache-Control", "Vary", "Expires", "Date", "Content-Location", "X-Request-Id"} {
		assert.Equal(t, first.Header.Values(k), res.Header.Values(k), k)
		assert.NotEmpty(t, res.Header.Values(k), k)
	}
	for _, k := range []string{"Content-Length", "Content-Type", "Content-Encoding"} {
		assert.NotEmpty(t, first.Header.Values(k), k)
		assert.Empty(t, res.Header.Values(k), k)
	}
}

func TestMiddlewareIfNoneMatch(t *testing.T) {
	h := wrap(t, MiddlewareConfig{}, text(page))
	etag := do(h, req("GET", "/")).Header.Get("ETag")
	tests := []struct {
		inm  []string
		want int
	}{
		{[]string{etag}, 304},
		{[]string{"W/" + etag}, 304}, // weak comparison ignores W/
		{[]string{`"other", ` + etag + `, "third"`}, 304},
		{[]string{`"other"`, etag}, 304}, // several lines
		{[]string{`W/"a,b", ` + etag}, 304},
		{[]string{`garbage, ` + etag}, 304},
		{[]string{"*"}, 304},
		{[]string{` * `}, 304},
		{[]string{`"other"`}, 200},
		{[]string{`"other", W/"x"`}, 200},
		{[]string{strings.Trim(etag, `"`)}, 200}, // unquoted is not an entity-tag
		{[]string{`"` + strings.Trim(etag, `"`)}, 200},
		{[]string{`*x`}, 200},
		{[]string{""}, 200},
	}
	for _, tt := range tests {
		r := req("GET", "/")
		r.Header["If-None-Match"] = tt.inm
		res := do(h, r)
		assert.Equal(t, tt.want, res.StatusCode, "If-None-Match: %q", tt.inm)
		if tt.want == 200 {
			assert.Equal(t, page, body(t, res))
		} else {
			assert.Empty(t, body(t, res))
			assert.Equal(t, etag, res.Header.Get("ETag"))
		}
	}
}

func TestMiddlewareHandlerETag(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `W/"v1"`)
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = io.WriteString(w, page)
	})
	for _, cfg := range []MiddlewareConfig{{Public: true}, {DisableETag: true}} {
		h := wrap(t, cfg, handler)
		res := do(h, req("GET", "/"))
		assert.Equal(t, `W/"v1"`, res.Header.Get("ETag"), "the handler's ETag wins")
		assert.Equal(t, "no-cache", res.Header.Get("Cache-Control"), "the handler's Cache-Control wins")
		assert.Equal(t, page, body(t, res))

		res = do(h, req("GET", "/", "If-None-Match", `"v1"`))
		assert.Equal(t, 304, res.StatusCode)
		assert.Equal(t, `W/"v1"`, res.Header.Get("ETag"))
		assert.Equal(t, "no-cache", res.Header.Get("Cache-Control"))
	}

	// A handler's Cache-Control does not stop the computed ETag.
	h := wrap(t, MiddlewareConfig{Public: true}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=5")
		_, _ = io.WriteString(w, page)
	}))
	res := do(h, req("GET", "/"))
	assert.Equal(t, "public, max-age=5", res.Header.Get("Cache-Control"))
	etag := res.Header.Get("ETag")
	require.NotEmpty(t, etag)
	assert.Equal(t, 304, do(h, req("GET", "/", "If-None-Match", etag)).StatusCode)
}

func TestMiddlewareDisableETag(t *testing.T) {
	h := wrap(t, MiddlewareConfig{DisableETag: true}, text(page))
	res := do(h, req("GET", "/", "If-None-Match", "*"))
	assert.Equal(t, 304, res.StatusCode, "* matches any current representation")
	res = do(h, req("GET", "/"))
	assert.Empty(t, res.Header.Get("ETag"))
	assert.Equal(t, "private, max-age=300", res.Header.Get("Cache-Control"))
	assert.Equal(t, page, body(t, res))
}

func TestMiddlewareIfModifiedSince(t *testing.T) {
	mod := time.Date(2025, 6, 3, 10, 0, 0, 0, time.UTC)
	lastModified := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Last-Modified", mod.Format(http.TimeFormat))
		_, _ = io.WriteString(w, page)
	}
	h := wrap(t, MiddlewareConfig{}, http.HandlerFunc(lastModified))
	etag := do(h, req("GET", "/")).Header.Get("ETag")
	tests := []struct {
		name   string
		header []string
		want   int
	}{
		{"same second", []string{"If-Modified-Since", mod.Format(http.TimeFormat)}, 304},
		{"later", []string{"If-Modified-Since", mod.Add(time.Hour).Format(http.TimeFormat)}, 304},
		{"earlier", []string{"If-Modified-Since", mod.Add(-time.Second).Format(http.TimeFormat)}, 200},
		{"RFC 850 date", []string{"If-Modified-Since", mod.Format(time.RFC850)}, 304},
		{"unparsable", []string{"If-Modified-Since", "yesterday"}, 200},
		{"If-None-Match takes precedence", []string{"If-Modified-Since", mod.Format(http.TimeFormat), "If-None-Match", `"other"`}, 200},
		{"both match", []string{"If-Modified-Since", mod.Format(http.TimeFormat), "If-None-Match", etag}, 304},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := do(h, req("GET", "/", tt.header...))
			assert.Equal(t, tt.want, res.StatusCode)
			if tt.want == 304 {
				assert.Empty(t, body(t, res))
				assert.Equal(t, mod.Format(http.TimeFormat), res.Header.Get("Last-Modified"))
				assert.Equal(t, etag, res.Header.Get("ETag"))
			}
		})
	}

	// Without Last-Modified, If-Modified-Since has nothing to compare with.
	h = wrap(t, MiddlewareConfig{}, text(page))
	assert.Equal(t, 200, do(h, req("GET", "/", "If-Modified-Since", mod.Format(http.TimeFormat))).StatusCode)

	// Last-Modified is enough when no ETag is computed; the decision comes before the body.
	h = wrap(t, MiddlewareConfig{DisableETag: true}, http.HandlerFunc(lastModified))
	res := do(h, req("GET", "/", "If-Modified-Since", mod.Format(http.TimeFormat)))
	assert.Equal(t, 304, res.StatusCode)
	assert.Empty(t, body(t, res))
}

func TestMiddlewareHEAD(t *testing.T) {
	// A HEAD handler that writes nothing: headers only, no tag made up from the empty body.
	h := wrap(t, MiddlewareConfig{Public: true}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, page)
		}
	}))
	res := do(h, req("HEAD", "/"))
	assert.Equal(t, 200, res.StatusCode)
	assert.Equal(t, "public, max-age=300", res.Header.Get("Cache-Control"))
	assert.Empty(t, res.Header.Get("ETag"))
	assert.Empty(t, res.Header.Get("Content-Length"))
	assert.Equal(t, "text/html", res.Header.Get("Content-Type"))

	// A handler that writes its body for HEAD too (as net/http allows) gets GET's ETag and
	// Content-Length, and no body is passed on.
	h = wrap(t, MiddlewareConfig{}, text(page))
	get := do(h, req("GET", "/"))
	res = do(h, req("HEAD", "/"))
	assert.Equal(t, get.Header.Get("ETag"), res.Header.Get("ETag"))
	assert.Equal(t, get.Header.Get("Content-Length"), res.Header.Get("Content-Length"))
	assert.Empty(t, body(t, res))
	assert.Equal(t, 304, do(h, req("HEAD", "/", "If-None-Match", get.Header.Get("ETag"))).StatusCode)
}

func TestMiddlewareVary(t *testing.T) {
	handler := func(vary, encoding string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if vary != "" {
				w.Header().Add("Vary", vary)
			}
			if encoding != "" {
				w.Header().Set("Content-Encoding", encoding)
			}
			_, _ = io.WriteString(w, page)
		})
	}
	tests := []struct {
		name      string
		cfg       []string
		handler   string
		encoding  string
		want      string
		wantLines int
	}{
		{"none", nil, "", "", "", 0},
		{"config only", []string{"Accept-Language", "Origin"}, "", "", "Accept-Language, Origin", 1},
		{"handler only", nil, "Origin", "", "Origin", 1},
		{"merged without duplicates", []string{"accept-language", "origin"}, "Origin, Accept-Encoding", "gzip",
			"Origin, Accept-Encoding, accept-language", 1},
		{"encoding adds Accept-Encoding", nil, "", "br", "Accept-Encoding", 1},
		{"identity is no encoding", nil, "", "identity", "", 0},
		{"star wins", []string{"Origin"}, "*", "gzip", "*", 1},
		{"star in config", []string{"*", "Origin"}, "", "", "*", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := wrap(t, MiddlewareConfig{Vary: tt.cfg}, handler(tt.handler, tt.encoding))
			res := do(h, req("GET", "/"))
			assert.Len(t, res.Header.Values("Vary"), tt.wantLines)
			assert.Equal(t, tt.want, res.Header.Get("Vary"))
		})
	}

	// ETags differ per Content-Encoding, even for the same bytes.
	plain := do(wrap(t, MiddlewareConfig{}, handler("", "")), req("GET", "/")).Header.Get("ETag")
	gzip := do(wrap(t, MiddlewareConfig{}, handler("", "gzip")), req("GET", "/")).Header.Get("ETag")
	br := do(wrap(t, MiddlewareConfig{}, handler("", "br")), req("GET", "/")).Header.Get("ETag")
	assert.NotEqual(t, plain, gzip)
	assert.NotEqual(t, gzip, br)
	assert.NotEqual(t, plain, br)
}

func TestMiddlewareCredentials(t *testing.T) {
	public := MiddlewareConfig{Public: true, SharedTTL: time.Hour}
	const pub, priv = "public, max-age=300, s-maxage=3600", "private, max-age=300"
	setCookie := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: "x"})
		_, _ = io.WriteString(w, page)
	})
	withSessions := public
	withSessions.SessionCookies = []string{"sid", "__Host-sid"}
	allow := public
	allow.AllowCredentialed = true
	allow.Vary = []string{"Accept-Language"}

	tests := []struct {
		name     string
		cfg      MiddlewareConfig
		handler  http.Handler
		header   []string
		want     string
		wantVary string
	}{
		{"anonymous", public, text(page), nil, pub, ""},
		{"authorization", public, text(page), []string{"Authorization", "Bearer t"}, priv, ""},
		{"empty authorization", public, text(page), []string{"Authorization", ""}, priv, ""},
		{"any cookie", public, text(page), []string{"Cookie", "theme=dark"}, priv, ""},
		{"blank cookie header", public, text(page), []string{"Cookie", " "}, pub, ""},
		{"other cookie", withSessions, text(page), []string{"Cookie", "theme=dark; sidx=1"}, pub, ""},
		{"session cookie", withSessions, text(page), []string{"Cookie", "theme=dark; sid=abc"}, priv, ""},
		{"second cookie line", withSessions, text(page), []string{"Cookie", "theme=dark", "Cookie", "__Host-sid=abc"}, priv, ""},
		{"cookie names are case-sensitive", withSessions, text(page), []string{"Cookie", "SID=abc"}, pub, ""},
		{"set-cookie", public, setCookie, nil, priv, ""},
		{"set-cookie with allow", allow, setCookie, nil, priv, "Accept-Language"},
		{"allow: anonymous", allow, text(page), nil, pub, "Accept-Language, Authorization, Cookie"},
		{"allow: authorization", allow, text(page), []string{"Authorization", "Bearer t"}, pub, "Accept-Language, Authorization, Cookie"},
		{"allow: cookie", allow, text(page), []string{"Cookie", "sid=1"}, pub, "Accept-Language, Authorization, Cookie"},
		{"not public", MiddlewareConfig{}, text(page), []string{"Authorization", "Bearer t"}, priv, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := do(wrap(t, tt.cfg, tt.handler), req("GET", "/", tt.header...))
			assert.Equal(t, tt.want, res.Header.Get("Cache-Control"))
			assert.Equal(t, tt.wantVary, res.Header.Get("Vary"))
		})
	}
}

// A session cookie sent with a __Host- or __Secure- prefix (as session.Config.HostPrefix makes
// it) is still the session cookie named without the prefix: the page must not be marked
// public. Naming the prefixed form matches the bare one too.
func TestMiddlewareSessionCookiePrefixes(t *testing.T) {
	const pub, priv = "public, max-age=300", "private, max-age=300"
	for _, tt := range []struct {
		configured, sent string
		want             string
	}{
		{"session", "session=abc", priv},
		{"session", "__Host-session=abc", priv},
		{"session", "__Secure-session=abc", priv},
		{"session", "theme=dark; __Host-session=abc", priv},
		{"session", "__host-session=abc", priv}, // browsers compare prefixes in any case
		{"__Host-session", "__Host-session=abc", priv},
		{"__Host-session", "session=abc", priv},
		{"__Secure-session", "__Host-session=abc", priv},
		{"session", "__Host-sessions=abc", pub},
		{"session", "x__Host-session=abc", pub},
		{"session", "__Host-=abc", pub},
	} {
		cfg := MiddlewareConfig{Public: true, SessionCookies: []string{tt.configured}}
		res := do(wrap(t, cfg, text(page)), req("GET", "/", "Cookie", tt.sent))
		assert.Equal(t, tt.want, res.Header.Get("Cache-Control"), "SessionCookies %q, Cookie: %s", tt.configured, tt.sent)
	}
}

func TestMiddlewarePassesThrough(t *testing.T) {
	status := func(code int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			w.WriteHeader(code)
			_, _ = io.WriteString(w, "body")
		})
	}
	for _, code := range []int{201, 204, 206, 301, 404, 500} {
		res := do(wrap(t, MiddlewareConfig{Public: true, Vary: []string{"Origin"}}, status(code)), req("GET", "/", "If-None-Match", "*"))
		assert.Equal(t, code, res.StatusCode)
		assert.Empty(t, res.Header.Get("Cache-Control"), code)
		assert.Empty(t, res.Header.Get("ETag"), code)
		assert.Empty(t, res.Header.Get("Vary"), code)
		if code != 204 {
			assert.Equal(t, "body", body(t, res), code)
		}
	}
	// Other methods are not touched, whatever the status.
	for _, method := range []string{"POST", "PUT", "DELETE", "OPTIONS"} {
		res := do(wrap(t, MiddlewareConfig{Public: true}, text(page)), req(method, "/", "If-None-Match", "*"))
		assert.Equal(t, 200, res.StatusCode, method)
		assert.Empty(t, res.Header.Get("Cache-Control"), method)
		assert.Empty(t, res.Header.Get("ETag"), method)
		assert.Equal(t, page, body(t, res))
	}
}

// A 304 the handler sends itself (http.ServeContent does) stands for a 200 and carries its
// Cache-Control and Vary.
func TestMiddlewareHandler304(t *testing.T) {
	mod := time.Date(2025, 6, 3, 10, 0, 0, 0, time.UTC)
	h := wrap(t, MiddlewareConfig{Public: true, Vary: []string{"Accept-Language"}}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "a.txt", mod, strings.NewReader(page))
	}))
	res := do(h, req("GET", "/", "If-Modified-Since", mod.Format(http.TimeFormat)))
	assert.Equal(t, 304, res.StatusCode)
	assert.Equal(t, "public, max-age=300", res.Header.Get("Cache-Control"))
	assert.Equal(t, "Accept-Language", res.Header.Get("Vary"))
	assert.Empty(t, body(t, res))

	res = do(h, req("GET", "/"))
	assert.Equal(t, 200, res.StatusCode)
	assert.Equal(t, page, body(t, res))
	assert.NotEmpty(t, res.Header.Get("ETag"))
}

func TestMiddlewareEmptyBody(t *testing.T) {
	h := wrap(t, MiddlewareConfig{}, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	res := do(h, req("GET", "/"))
	assert.Equal(t, 200, res.StatusCode)
	etag := res.Header.Get("ETag")
	assert.NotEmpty(t, etag)
	assert.Equal(t, "0", res.Header.Get("Content-Length"))
	assert.Equal(t, "private, max-age=300", res.Header.Get("Cache-Control"))
	assert.Equal(t, 304, do(h, req("GET", "/", "If-None-Match", etag)).StatusCode)
}

func TestMiddlewareMaxBody(t *testing.T) {
	chunks := func(n int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for range n {
				_, _ = io.WriteString(w, "0123456789")
			}
		})
	}
	cfg := MiddlewareConfig{MaxBody: 20}

	res := do(wrap(t, cfg, chunks(2)), req("GET", "/"))
	assert.NotEmpty(t, res.Header.Get("ETag"), "exactly MaxBody is buffered")
	assert.Equal(t, "20", res.Header.Get("Content-Length"))

	res = do(wrap(t, cfg, chunks(3)), req("GET", "/", "If-None-Match", `"x"`))
	assert.Equal(t, 200, res.StatusCode)
	assert.Empty(t, res.Header.Get("ETag"), "a larger body streams without a tag")
	assert.Empty(t, res.Header.Get("Content-Length"))
	assert.Equal(t, "private, max-age=300", res.Header.Get("Cache-Control"))
	assert.Equal(t, strings.Repeat("0123456789", 3), body(t, res))

	// The default keeps 1 MiB, not more.
	res = do(wrap(t, MiddlewareConfig{}, chunks(1<<20/10)), req("GET", "/"))
	assert.NotEmpty(t, res.Header.Get("ETag"))
	res = do(wrap(t, MiddlewareConfig{}, chunks(1<<20/10+1)), req("GET", "/"))
	assert.Empty(t, res.Header.Get("ETag"))
	assert.Len(t, body(t, res), 1<<20+1-(1<<20)%10+9)

	// io.Copy (ReadFrom) goes through the same path.
	h := wrap(t, cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, strings.NewReader(strings.Repeat("x", 50)))
	}))
	res = do(h, req("GET", "/"))
	assert.Empty(t, res.Header.Get("ETag"))
	assert.Equal(t, strings.Repeat("x", 50), body(t, res))
	h = wrap(t, cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, strings.NewReader("small"))
	}))
	assert.NotEmpty(t, do(h, req("GET", "/")).Header.Get("ETag"))
}

// streamRecorder is a ResponseRecorder that also supports what http.ResponseController asks of
// a server's writer, and counts the calls.
type streamRecorder struct {
	*httptest.ResponseRecorder
	deadline time.Time
	hijacked bool
	codes    []int // every status written, informational ones too
}

func (s *streamRecorder) WriteHeader(code int) {
	s.codes = append(s.codes, code)
	if code >= 200 { // ResponseRecorder would take a 1xx for the final status
		s.ResponseRecorder.WriteHeader(code)
	}
}

func (s *streamRecorder) SetWriteDeadline(t time.Time) error {
	s.deadline = t
	return nil
}

func (s *streamRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	s.hijacked = true
	c1, c2 := net.Pipe()
	_ = c2.Close()
	return c1, nil, nil
}

func TestMiddlewareFlush(t *testing.T) {
	for _, how := range []string{"Flusher", "ResponseController"} {
		t.Run(how, func(t *testing.T) {
			rec := &streamRecorder{ResponseRecorder: httptest.NewRecorder()}
			h := wrap(t, MiddlewareConfig{Public: true}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = io.WriteString(w, "data: 1\n\n")
				if how == "Flusher" {
					w.(http.Flusher).Flush()
				} else {
					require.NoError(t, http.NewResponseController(w).Flush())
				}
				// The first event has reached the client while the handler still runs.
				assert.True(t, rec.Flushed)
				assert.Equal(t, "data: 1\n\n", rec.Body.String())
				assert.Equal(t, 200, rec.Code)
				_, _ = io.WriteString(w, "data: 2\n\n")
				assert.Equal(t, "data: 1\n\ndata: 2\n\n", rec.Body.String(), "after a flush, writes go straight through")
			}))
			h.ServeHTTP(rec, req("GET", "/events"))
			res := rec.Result()
			assert.Equal(t, "public, max-age=300", res.Header.Get("Cache-Control"))
			assert.Empty(t, res.Header.Get("ETag"))
			assert.Equal(t, []int{200}, rec.codes)
		})
	}
}

func TestMiddlewareResponseController(t *testing.T) {
	rec := &streamRecorder{ResponseRecorder: httptest.NewRecorder()}
	when := time.Now().Add(time.Minute)
	h := wrap(t, MiddlewareConfig{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, http.NewResponseController(w).SetWriteDeadline(when))
		_, _ = io.WriteString(w, page)
	}))
	h.ServeHTTP(rec, req("GET", "/"))
	assert.Equal(t, when, rec.deadline, "reached through Unwrap")
	assert.NotEmpty(t, rec.Result().Header.Get("ETag"), "no flush, so still buffered")

	// A WebSocket upgrade hijacks the connection: the middleware writes nothing after it.
	rec = &streamRecorder{ResponseRecorder: httptest.NewRecorder()}
	h = wrap(t, MiddlewareConfig{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "held back")
		conn, _, err := http.NewResponseController(w).Hijack()
		require.NoError(t, err)
		_ = conn.Close()
		_, err = w.Write([]byte("x"))
		assert.ErrorIs(t, err, http.ErrHijacked)
		assert.ErrorIs(t, http.NewResponseController(w).Flush(), http.ErrHijacked)
	}))
	h.ServeHTTP(rec, req("GET", "/ws"))
	assert.True(t, rec.hijacked)
	assert.Empty(t, rec.codes)
	assert.Empty(t, rec.Body.String())

	// Without support underneath, Hijack fails and the response goes on as usual.
	rec2 := httptest.NewRecorder()
	h = wrap(t, MiddlewareConfig{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _, err := w.(http.Hijacker).Hijack()
		assert.True(t, errors.Is(err, http.ErrNotSupported))
		_, _ = io.WriteString(w, page)
	}))
	h.ServeHTTP(rec2, req("GET", "/"))
	assert.Equal(t, page, rec2.Body.String())
	assert.NotEmpty(t, rec2.Result().Header.Get("ETag"))
}

func TestMiddlewareTrailer(t *testing.T) {
	h := wrap(t, MiddlewareConfig{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		_, _ = io.WriteString(w, page)
		w.Header().Set("X-Checksum", "abc")
	}))
	res := do(h, req("GET", "/"))
	assert.Empty(t, res.Header.Get("ETag"), "a response with trailers streams")
	assert.Empty(t, res.Header.Get("X-Checksum"), "trailers stay trailers")
	assert.Equal(t, page, body(t, res))
}

func TestMiddlewareWriteHeaderTwice(t *testing.T) {
	rec := &streamRecorder{ResponseRecorder: httptest.NewRecorder()}
	h := wrap(t, MiddlewareConfig{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusEarlyHints) // informational: passes through
		w.WriteHeader(200)
		w.WriteHeader(500) // superfluous: ignored, as net/http does
		_, _ = io.WriteString(w, page)
	}))
	h.ServeHTTP(rec, req("GET", "/"))
	assert.Equal(t, 200, rec.Code)
	assert.Equal(t, []int{103, 200}, rec.codes)
	assert.NotEmpty(t, rec.Result().Header.Get("ETag"))
}

func TestMiddlewareInvalidConfig(t *testing.T) {
	for _, cfg := range []MiddlewareConfig{
		{Policy: Policy{TTL: -1}},
		{Policy: Policy{StaleWhileRevalidate: -time.Second}},
		{Policy: Policy{StaleIfError: -time.Second}},
		{SharedTTL: -time.Second, Public: true},
		{SharedTTL: time.Second}, // s-maxage without public
		{MaxBody: -1},
		{NoStore: true, Public: true},
		{NoStore: true, Immutable: true},
		{Vary: []string{"Accept Language"}},
		{Vary: []string{""}},
		{Vary: []string{"Origin, Accept"}},
		{SessionCookies: []string{"sid;"}},
		{SessionCookies: []string{"__Host-"}},
	} {
		mw, err := Middleware(cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, "%+v", cfg)
		assert.Nil(t, mw)
	}
}

func BenchmarkMiddleware(b *testing.B) {
	body := []byte(strings.Repeat("x", 4<<10))
	h := wrap(b, MiddlewareConfig{Public: true, SharedTTL: time.Hour, Vary: []string{"Accept-Language"}},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = []string{"text/plain"}
			_, _ = w.Write(body)
		}))
	etag := do(h, req("GET", "/")).Header.Get("ETag")
	for _, bc := range []struct {
		name string
		r    *http.Request
	}{
		{"200", req("GET", "/")},
		{"304", req("GET", "/", "If-None-Match", etag)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			b.RunParallel(func(pb *testing.PB) {
				w := &discard{h: http.Header{}}
				for pb.Next() {
					clear(w.h)
					h.ServeHTTP(w, bc.r)
				}
			})
		})
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		w := &discard{h: http.Header{}}
		r := req("GET", "/")
		for b.Loop() {
			clear(w.h)
			h.ServeHTTP(w, r)
		}
	})
}

// discard is a ResponseWriter that keeps nothing, so that the benchmark measures the middleware.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// FuzzSessionCookie: whenever net/http parses a cookie named as the session cookie (with or
// without its prefix) out of a Cookie header, the request counts as credentialed, so a page
// the application renders for a logged-in user is never marked public.
func FuzzSessionCookie(f *testing.F) {
	f.Add("sid=1")
	f.Add("theme=dark; __Host-sid=abc")
	f.Add(" __secure-sid = x ;")
	f.Add("sid")
	m := newMiddleware(MiddlewareConfig{Public: true, SessionCookies: []string{"sid"}})
	f.Fuzz(func(t *testing.T, line string) {
		r := req("GET", "/", "Cookie", line)
		for _, c := range r.Cookies() {
			if unprefixed(c.Name) == "sid" && !m.credentialed(r) {
				t.Fatalf("Cookie: %q holds %q, not seen as a session", line, c.Name)
			}
		}
	})
}
