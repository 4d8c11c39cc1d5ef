package health

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func serve(h http.Handler, method, target, accept string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	if accept != "" {
		r.Header.Set("Accept", accept)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestLivenessIsTheArticlesEndpoint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var dep switchable
		dep.set(errDown) // liveness never looks at checks
		c := newChecker(t, Config{}, Check{Name: "db", Func: dep.check})
		time.Sleep(90*time.Second + 250*time.Millisecond)
		w := serve(c.LivenessHandler(), http.MethodGet, "/api/health", "")
		assert.Equal(t, http.StatusOK, w.Code)
		assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
		assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
		assert.Equal(t, `{"status":"ok","uptime":90.250}`+"\n", w.Body.String())
		assert.Equal(t, "32", w.Header().Get("Content-Length"))

		var doc struct {
			Status string  `json:"status"`
			Uptime float64 `json:"uptime"`
		}
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &doc))
		assert.Equal(t, "ok", doc.Status)
		assert.InDelta(t, 90.25, doc.Uptime, 1e-9)

		c.Drain()
		assert.Equal(t, http.StatusOK, serve(c.LivenessHandler(), http.MethodGet, "/", "").Code,
			"liveness while draining")
	})
}

func TestLivenessHealthJSON(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newChecker(t, Config{})
		time.Sleep(2 * time.Second)
		w := serve(c.LivenessHandler(), http.MethodGet, "/api/health", "application/health+json")
		assert.Equal(t, "application/health+json", w.Header().Get("Content-Type"))
		var doc struct {
			Status string `json:"status"`
			Checks map[string][]struct {
				ComponentType string  `json:"componentType"`
				ObservedValue float64 `json:"observedValue"`
				ObservedUnit  string  `json:"observedUnit"`
				Status        string  `json:"status"`
				Time          string  `json:"time"`
			} `json:"checks"`
		}
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &doc), w.Body.String())
		assert.Equal(t, "pass", doc.Status)
		require.Len(t, doc.Checks["uptime"], 1)
		up := doc.Checks["uptime"][0]
		assert.Equal(t, "system", up.ComponentType)
		assert.Equal(t, 2.0, up.ObservedValue)
		assert.Equal(t, "s", up.ObservedUnit)
		_, err := time.Parse(time.RFC3339, up.Time)
		assert.NoError(t, err, "time %q", up.Time)
	})
}

func TestReadinessResponses(t *testing.T) {
	tests := []struct {
		name               string
		critical, optional error
		drain              bool
		code               int
		plain              string
		ietfStatus         string
		ietfOutput         string
	}{
		{"healthy", nil, nil, false, 200,
			`{"status":"ok","checks":{"db":{"status":"ok"},"search":{"status":"ok"}}}`, "pass", ""},
		{"degraded", nil, errDown, false, 200,
			`{"status":"degraded","checks":{"db":{"status":"ok"},"search":{"status":"fail"}}}`, "warn", ""},
		{"unavailable", errDown, nil, false, 503,
			`{"status":"unavailable","checks":{"db":{"status":"fail"},"search":{"status":"ok"}}}`, "fail", ""},
		{"draining", nil, nil, true, 503,
			`{"status":"draining","checks":{"db":{"status":"ok"},"search":{"status":"ok"}}}`, "fail", "draining"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var crit, opt switchable
				crit.set(tt.critical)
				opt.set(tt.optional)
				c := newChecker(t, Config{}, Check{Name: "db", Func: crit.check},
					Check{Name: "search", Func: opt.check, NonCritical: true})
				if tt.drain {
					c.Drain()
				}
				h := c.ReadinessHandler()

				w := serve(h, http.MethodGet, "/api/ready", "")
				assert.Equal(t, tt.code, w.Code)
				assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
				assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
				assert.Equal(t, "Accept", w.Header().Get("Vary"))
				assert.JSONEq(t, tt.plain, w.Body.String())
				assert.NotContains(t, w.Body.String(), errDown.Error(), "error text without verbose")

				w = serve(h, http.MethodGet, "/api/ready", "application/health+json")
				assert.Equal(t, tt.code, w.Code)
				assert.Equal(t, "application/health+json", w.Header().Get("Content-Type"))
				var doc ietfDoc
				require.NoError(t, json.Unmarshal(w.Body.Bytes(), &doc))
				assert.Equal(t, Status(tt.ietfStatus), doc.Status)
				assert.Equal(t, tt.ietfOutput, doc.Output)
				require.Len(t, doc.Checks["db:responseTime"], 1)
				require.Len(t, doc.Checks["search:responseTime"], 1)
				db := doc.Checks["db:responseTime"][0]
				assert.Nil(t, db.ObservedValue, "durations without verbose")
				assert.Empty(t, db.Output)
				assert.NotEmpty(t, db.Time)
				assert.NotContains(t, w.Body.String(), errDown.Error())

				head := serve(h, http.MethodHead, "/api/ready", "")
				assert.Equal(t, tt.code, head.Code)
				assert.Empty(t, head.Body.String(), "HEAD has no body")
			})
		})
	}
}

func TestReadinessStartingAndClosed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		c, err := New(Config{Logger: quiet}, Check{Name: "db", Func: func(ctx context.Context) error {
			<-release
			return nil
		}})
		require.NoError(t, err)
		synctest.Wait()
		w := serve(c.ReadinessHandler(), http.MethodGet, "/", "")
		assert.Equal(t, 503, w.Code)
		assert.JSONEq(t, `{"status":"starting","checks":{"db":{"status":"unknown"}}}`, w.Body.String())
		close(release)
		waitPass(c)
		assert.Equal(t, 200, serve(c.ReadinessHandler(), http.MethodGet, "/", "").Code)
		require.NoError(t, c.Close())
		w = serve(c.ReadinessHandler(), http.MethodGet, "/", "")
		assert.Equal(t, 503, w.Code)
		assert.Contains(t, w.Body.String(), `"status":"closed"`)
	})
}

func TestVerboseNeedsAllowVerbose(t *testing.T) {
	allowToken := func(r *http.Request) bool { return r.Header.Get("X-Token") == "secret" }
	tests := []struct {
		name    string
		allow   func(*http.Request) bool
		target  string
		token   string
		details bool
	}{
		{"no guard ignores verbose", nil, "/api/ready?verbose", "secret", false},
		{"guard refuses", allowToken, "/api/ready?verbose", "wrong", false},
		{"guard accepts", allowToken, "/api/ready?verbose", "secret", true},
		{"guard accepts, verbose=1", allowToken, "/api/ready?a=b&verbose=1", "secret", true},
		{"verbose=0 is off", allowToken, "/api/ready?verbose=0", "secret", false},
		{"no verbose parameter", allowToken, "/api/ready?verbosely", "secret", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newChecker(t, Config{AllowVerbose: tt.allow},
					Check{Name: "db", Func: func(context.Context) error { time.Sleep(1500 * time.Microsecond); return errDown }})
				for _, accept := range []string{"", "application/health+json"} {
					r := httptest.NewRequest(http.MethodGet, tt.target, nil)
					r.Header.Set("X-Token", tt.token)
					r.Header.Set("Accept", accept)
					w := httptest.NewRecorder()
					c.ReadinessHandler().ServeHTTP(w, r)
					assert.Equal(t, 503, w.Code)
					body := w.Body.String()
					assert.Equal(t, tt.details, strings.Contains(body, errDown.Error()), "error text in %s", body)
					assert.Equal(t, tt.details, strings.Contains(body, "1.5"), "duration in %s", body)
				}
			})
		})
	}
}

func TestVerbosePlainFields(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newChecker(t, Config{AllowVerbose: func(*http.Request) bool { return true }},
			Check{Name: "db", Func: func(context.Context) error { return errDown }, NonCritical: true})
		w := serve(c.ReadinessHandler(), http.MethodGet, "/api/ready?verbose", "")
		var doc struct {
			Status string `json:"status"`
			Passes int    `json:"passes"`
			Checks map[string]struct {
				Status              string  `json:"status"`
				Critical            bool    `json:"critical"`
				State               string  `json:"state"`
				Error               string  `json:"error"`
				DurationMS          float64 `json:"duration_ms"`
				ConsecutiveFailures int     `json:"consecutive_failures"`
				Runs                int     `json:"runs"`
				Failures            int     `json:"failures"`
			} `json:"checks"`
		}
		require.NoError(t, json.Unmarshal(w.Body.Bytes(), &doc), w.Body.String())
		assert.Equal(t, "degraded", doc.Status)
		assert.Equal(t, 1, doc.Passes)
		db := doc.Checks["db"]
		assert.Equal(t, "fail", db.Status)
		assert.False(t, db.Critical)
		assert.Equal(t, "unhealthy", db.State)
		assert.Equal(t, errDown.Error(), db.Error)
		assert.Equal(t, 1, db.ConsecutiveFailures)
		assert.Equal(t, 1, db.Runs)
		assert.Equal(t, 1, db.Failures)
	})
}

func TestMethodNotAllowed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newChecker(t, Config{})
		for _, h := range []http.Handler{c.LivenessHandler(), c.ReadinessHandler()} {
			w := serve(h, http.MethodPost, "/api/health", "")
			assert.Equal(t, http.StatusMethodNotAllowed, w.Code)
			assert.Equal(t, "GET, HEAD", w.Header().Get("Allow"))
			assert.JSONEq(t, `{"error":"method not allowed"}`, w.Body.String())
		}
	})
}

func TestMiddlewareRoutes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var dep switchable
		dep.set(errDown)
		c := newChecker(t, Config{Path: "/livez", ReadyPath: "/readyz"}, Check{Name: "db", Func: dep.check})
		app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusTeapot)
		})
		h := c.Middleware(app)
		assert.Equal(t, 200, serve(h, http.MethodGet, "/livez", "").Code)
		assert.Equal(t, 503, serve(h, http.MethodGet, "/readyz", "").Code)
		assert.Equal(t, http.StatusTeapot, serve(h, http.MethodGet, "/api/health", "").Code)
		assert.Equal(t, http.StatusTeapot, serve(h, http.MethodGet, "/livez/x", "").Code)
	})
}

func TestMiddlewareClosesConnectionsWhileDraining(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newChecker(t, Config{})
		h := c.Middleware(http.NotFoundHandler())
		assert.Empty(t, serve(h, http.MethodGet, "/app", "").Header().Get("Connection"))
		c.Drain()
		for _, path := range []string{"/app", "/api/health", "/api/ready"} {
			assert.Equal(t, "close", serve(h, http.MethodGet, path, "").Header().Get("Connection"), path)
		}
	})
}

func TestHeadersOfOuterMiddlewareAreKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newChecker(t, Config{})
		outer := func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Vary", "Origin")
				w.Header().Set("Cache-Control", "private, max-age=0")
				next.ServeHTTP(w, r)
			})
		}
		for _, h := range []http.Handler{c.LivenessHandler(), c.ReadinessHandler()} {
			w := serve(outer(h), http.MethodGet, "/", "")
			assert.Equal(t, []string{"Origin", "Accept"}, w.Header().Values("Vary"))
			assert.Equal(t, "private, max-age=0", w.Header().Get("Cache-Control"))
		}
	})
}

func TestAcceptOnSeveralLines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newChecker(t, Config{})
		r := httptest.NewRequest(http.MethodGet, "/api/ready", nil)
		r.Header.Add("Accept", "text/html")
		r.Header.Add("Accept", "application/health+json")
		w := httptest.NewRecorder()
		c.ReadinessHandler().ServeHTTP(w, r)
		assert.Equal(t, contentTypeHealthJSON, w.Header().Get("Content-Type"))
	})
}

func TestWantsHealthJSON(t *testing.T) {
	tests := []struct {
		accept string
		want   bool
	}{
		{"", false},
		{"*/*", false},
		{"application/json", false},
		{"application/*", false},
		{"text/html, */*;q=0.8", false},
		{"application/health+json", true},
		{"Application/Health+JSON", true},
		{"application/json, application/health+json", true},
		{"application/health+json, application/json", true},
		{"application/health+json;q=0.5, application/json", false},
		{"application/health+json;q=0.9, application/json;q=0.5", true},
		{"application/health+json;q=0.5, */*;q=0.4", true},
		{"application/health+json;q=0.5, application/*;q=0.9, */*;q=0.1", false},
		{"application/health+json;q=0", false},
		{"application/health+json; q=1.000", true},
		{"application/health+json;q=1.0001", false},
		{"application/health+json;q=2", false},
		{"application/health+json;q=abc", false},
		{"text/plain, application/health+json;charset=utf-8", true},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, wantsHealthJSON(tt.accept), "wantsHealthJSON(%q)", tt.accept)
	}
}

func TestParseQ(t *testing.T) {
	for in, want := range map[string]int{
		"1": 1000, "1.": 1000, "1.0": 1000, "1.000": 1000, "0": 0, "0.5": 500, "0.25": 250, "0.001": 1,
		"": 0, "1.5": 0, "2": 0, "0.0001": 0, "-1": 0, ".5": 0, "0,5": 0, "0.a": 0,
	} {
		assert.Equal(t, want, parseQ(in), "parseQ(%q)", in)
	}
}

// FuzzWantsHealthJSON checks the Accept negotiation on arbitrary headers: it never panics, never
// picks the IETF format unless the header names it, and an explicit preference decides.
func FuzzWantsHealthJSON(f *testing.F) {
	for _, s := range []string{"", "*/*", "application/json", "application/health+json;q=0.5, application/json",
		"text/html;level=1;q=0.3, application/*", ";;,,q=,", "application/json;q=0.999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, accept string) {
		got := wantsHealthJSON(accept)
		if strings.Contains(strings.ToLower(accept), "health+json") {
			return
		}
		if got {
			t.Fatalf("wantsHealthJSON(%q) = true without naming application/health+json", accept)
		}
		if !wantsHealthJSON("application/health+json," + accept) {
			t.Fatalf("an explicit application/health+json (q=1) before %q was not chosen", accept)
		}
		if wantsHealthJSON(accept + ",application/health+json;q=0") {
			t.Fatalf("application/health+json;q=0 after %q was chosen", accept)
		}
	})
}
