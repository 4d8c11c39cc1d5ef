package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outgrow/outgrow/internal/redistest"
)

// TestRun starts the example in memory and on Redis, checks its endpoints, and stops it through
// its context.
func TestRun(t *testing.T) {
	urls := map[string]string{"memory": ""}
	if u := os.Getenv(redistest.EnvURL); u != "" {
		urls["redis"] = u
	}
	for name, redisURL := range urls {
		t.Run(name, func(t *testing.T) {
			if redisURL != "" {
				// The example's rate-limit keys go under a prefix of this test, removed at the end.
				t.Setenv("KEY_PREFIX", redistest.Prefix(t, redistest.Open(t, redistest.Redis).Client))
			}
			t.Setenv("COOKIE_INSECURE", "1") // the test server is plain HTTP
			var downstreamCalls atomic.Int32
			flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				downstreamCalls.Add(1)
				w.WriteHeader(http.StatusBadGateway)
			}))
			defer flaky.Close()
			t.Setenv("DOWNSTREAM_URL", flaky.URL)
			ctx, cancel := context.WithCancel(context.Background())
			listening := make(chan string, 1)
			done := make(chan error, 1)
			go func() { done <- run(ctx, "127.0.0.1:0", redisURL, listening) }()
			var addr string
			select {
			case addr = <-listening:
			case err := <-done:
				t.Fatalf("run: %v", err)
			}
			jar, err := cookiejar.New(nil)
			if err != nil {
				t.Fatal(err)
			}
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}, Jar: jar}
			defer client.CloseIdleConnections()

			var live struct {
				Status string  `json:"status"`
				Uptime float64 `json:"uptime"`
			}
			getJSON(t, client, "http://"+addr+"/api/health", http.StatusOK, &live)
			if live.Status != "ok" {
				t.Errorf("liveness status %q", live.Status)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				resp, err := client.Get("http://" + addr + "/api/ready")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("readiness still %d after 5s", resp.StatusCode)
				}
				time.Sleep(10 * time.Millisecond)
			}
			var root struct{ Backend string }
			getJSON(t, client, "http://"+addr+"/", http.StatusOK, &root)
			if want := map[bool]string{true: "redis", false: "memory"}[redisURL != ""]; root.Backend != want {
				t.Errorf("backend %q, want %q", root.Backend, want)
			}

			// Sessions: anonymous, logged in, logged out.
			var me map[string]string
			getJSON(t, client, "http://"+addr+"/api/me", http.StatusUnauthorized, &me)
			post(t, client, "http://"+addr+"/api/login?user=ada", http.StatusOK)
			getJSON(t, client, "http://"+addr+"/api/me", http.StatusOK, &me)
			if me["user"] != "ada" {
				t.Errorf("me: %v", me)
			}
			post(t, client, "http://"+addr+"/api/logout", http.StatusNoContent)
			getJSON(t, client, "http://"+addr+"/api/me", http.StatusUnauthorized, &me)

			// Two devices of one user; "sign out everywhere" from the first ends both.
			other, err := cookiejar.New(nil)
			if err != nil {
				t.Fatal(err)
			}
			phone := &http.Client{Timeout: 5 * time.Second, Transport: client.Transport, Jar: other}
			post(t, client, "http://"+addr+"/api/login?user=bob", http.StatusOK)
			post(t, phone, "http://"+addr+"/api/login?user=bob", http.StatusOK)
			var ended map[string]int
			resp, err := client.Post("http://"+addr+"/api/logout-everywhere", "application/json", nil)
			if err != nil {
				t.Fatal(err)
			}
			_ = json.NewDecoder(resp.Body).Decode(&ended)
			resp.Body.Close()
			if ended["ended"] != 2 {
				t.Errorf("logout-everywhere ended %v, want 2", ended)
			}
			getJSON(t, phone, "http://"+addr+"/api/me", http.StatusUnauthorized, &me)

			// The article's login limit: the sixth attempt within a minute is refused (three
			// were made above), until the first of them is a minute old.
			for i := 4; i <= 6; i++ {
				resp, err := client.Post("http://"+addr+"/api/login", "application/json", nil)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				want := map[bool]int{true: http.StatusTooManyRequests, false: http.StatusOK}[i == 6]
				if resp.StatusCode != want {
					t.Fatalf("login attempt %d: %d %s, want %d", i, resp.StatusCode, b, want)
				}
				if i == 6 && string(b) != `{"error":"Too many login attempts. Try again in 1 minute.","policy":"login","retry_after":60}`+"\n" {
					t.Errorf("429 body %s", b)
				}
			}
			var items struct{ Items []string }
			getJSON(t, client, "http://"+addr+"/api/items", http.StatusOK, &items)

			// The downstream fails: five calls reach it, then the breaker answers alone.
			var quote map[string]string
			for range 5 {
				getJSON(t, client, "http://"+addr+"/api/quote", http.StatusBadGateway, &quote)
			}
			h := getJSON(t, client, "http://"+addr+"/api/quote", http.StatusServiceUnavailable, &quote)
			if got := h.Get("Retry-After"); got != "30" {
				t.Errorf("Retry-After %q while the breaker is open for 30 s", got)
			}
			if n := downstreamCalls.Load(); n != 5 {
				t.Errorf("the downstream got %d calls, want 5", n)
			}
			// The breaker is a Local check: the very next probe shows it open, as degraded.
			var ready struct {
				Status string
				Checks map[string]struct{ Status string }
			}
			getJSON(t, client, "http://"+addr+"/api/ready", http.StatusOK, &ready)
			if ready.Status != "degraded" || ready.Checks["downstream-breaker"].Status != "fail" {
				t.Errorf("readiness right after the breaker opened: %+v, want degraded with downstream-breaker failing", ready)
			}

			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("run returned %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("run did not stop after its context ended")
			}
		})
	}
}

func TestRunRejectsBadRedisURL(t *testing.T) {
	if err := run(context.Background(), "127.0.0.1:0", "not a url", nil); err == nil {
		t.Fatal("run accepted an invalid REDIS_URL")
	}
}

func post(t *testing.T, c *http.Client, url string, code int) {
	t.Helper()
	resp, err := c.Post(url, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != code {
		t.Fatalf("POST %s: %d %s", url, resp.StatusCode, b)
	}
}

func getJSON(t *testing.T, c *http.Client, url string, code int, v any) http.Header {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != code {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, b)
	}
	return resp.Header
}
