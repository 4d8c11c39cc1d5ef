package balancer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// backendServer is a test backend that answers with its name and records the bodies it read.
type backendServer struct {
	*httptest.Server
	name   string
	mu     sync.Mutex
	bodies []string
	hits   atomic.Int64
}

func newBackend(t *testing.T, name string) *backendServer {
	t.Helper()
	b := &backendServer{name: name}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.bodies = append(b.bodies, string(body))
		b.mu.Unlock()
		w.Header().Set("X-Backend", name)
		fmt.Fprintf(w, "%s %s %s host=%s xff=%s", name, r.Method, r.URL.Path, r.Host, r.Header.Get("X-Forwarded-For"))
	}))
	t.Cleanup(b.Close)
	return b
}

// deadURL returns the URL of a port that refuses connections.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return "http://" + addr
}

// newProxy returns a proxy over a balancer of urls, and a client-side transport it closes.
func newProxy(t *testing.T, cfg Config, pcfg ProxyConfig, urls ...string) (*Proxy, *Balancer) {
	t.Helper()
	b := newBalancer(t, cfg, ids(urls...)...)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	if pcfg.Transport == nil {
		pcfg.Transport = tr
	}
	p, err := NewProxy(b, pcfg)
	require.NoError(t, err)
	return p, b
}

func serve(p http.Handler, method, target, body string, header http.Header) *httptest.ResponseRecorder {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	req.RemoteAddr = "198.51.100.9:4000"
	for k, v := range header {
		req.Header[k] = v
	}
	w := httptest.NewRecorder()
	p.ServeHTTP(w, req)
	return w
}

func TestProxyRoutes(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	p, _ := newProxy(t, Config{}, ProxyConfig{}, a.URL, b.URL+"/base")
	seen := map[string]string{}
	for range 4 {
		w := serve(p, "GET", "http://example.com/dir", "", nil)
		require.Equal(t, http.StatusOK, w.Code)
		seen[w.Header().Get("X-Backend")] = w.Body.String()
	}
	assert.Equal(t, "a GET /dir host="+strings.TrimPrefix(a.URL, "http://")+" xff=198.51.100.9", seen["a"])
	assert.Equal(t, "b GET /base/dir host="+strings.TrimPrefix(b.URL, "http://")+" xff=198.51.100.9", seen["b"], "the base path joined, the backend's host")

	keep, _ := newProxy(t, Config{}, ProxyConfig{PreserveHost: true}, a.URL)
	assert.Contains(t, serve(keep, "GET", "http://example.com/", "", nil).Body.String(), "host=example.com")
}

// TestProxyRetriesRefusedConnections: a request whose connection was refused goes to another
// backend, whatever its method, with its body whole.
func TestProxyRetriesRefusedConnections(t *testing.T) {
	a := newBackend(t, "a")
	var failed []string
	var mu sync.Mutex
	p, b := newProxy(t, Config{}, ProxyConfig{Hooks: ProxyHooks{OnAttemptFailed: func(_ context.Context, id string, err error, retried bool) {
		mu.Lock()
		defer mu.Unlock()
		failed = append(failed, fmt.Sprint(retried))
	}}}, deadURL(t), a.URL)
	for i := range 6 {
		w := serve(p, "POST", "http://example.com/mail", fmt.Sprint("body ", i), nil)
		require.Equal(t, http.StatusOK, w.Code, w.Body.String())
		assert.Equal(t, "a", w.Header().Get("X-Backend"))
	}
	a.mu.Lock()
	assert.Equal(t, []string{"body 0", "body 1", "body 2", "body 3", "body 4", "body 5"}, a.bodies)
	a.mu.Unlock()
	st := p.Stats()
	assert.Equal(t, uint64(3), st.Retries, "the dead backend's turns")
	var picked uint64
	for _, be := range b.Stats().Backends {
		picked += be.Picks
	}
	assert.Equal(t, uint64(9), picked, "6 requests, 3 of them retried: 9 picks")
	assert.Equal(t, []string{"true", "true", "true"}, failed)
}

// hangup is a backend that reads the request, then closes the connection without a response:
// the request reached it.
func hangup(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var reached atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err == nil {
					_, _ = io.Copy(io.Discard, req.Body)
					reached.Add(1)
				}
			})
		}
	})
	return "http://" + ln.Addr().String(), &reached
}

// TestProxyNeverReplaysPostThatReached: a POST whose connection failed after it was sent is
// not sent again (502); a GET, or a POST with an Idempotency-Key, is.
func TestProxyNeverReplaysPostThatReached(t *testing.T) {
	a := newBackend(t, "a")
	hung, reached := hangup(t)
	// Weighted so that every request goes to the hang-up backend first.
	b := newBalancer(t, Config{Algorithm: WeightedRoundRobin}, Backend{ID: hung, Weight: 1000}, Backend{ID: a.URL, Weight: 1})
	b.next.Store(0) // the cycle's first picks are all the heavy one's (a's one pick is mid-cycle)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	p, err := NewProxy(b, ProxyConfig{Transport: tr})
	require.NoError(t, err)

	w := serve(p, "POST", "http://example.com/charge", "amount=10", nil)
	assert.Equal(t, http.StatusBadGateway, w.Code)
	assert.JSONEq(t, `{"error":"Bad gateway."}`, w.Body.String())
	assert.Equal(t, int64(1), reached.Load())
	assert.Zero(t, a.hits.Load(), "the POST was not sent to another backend")

	w = serve(p, "POST", "http://example.com/charge", "amount=10", http.Header{"Idempotency-Key": {"k1"}})
	assert.Equal(t, http.StatusOK, w.Code)
	w = serve(p, "GET", "http://example.com/report", "", nil)
	assert.Equal(t, http.StatusOK, w.Code)
	assert.Equal(t, int64(3), reached.Load())
	a.mu.Lock()
	assert.Equal(t, []string{"amount=10", ""}, a.bodies)
	a.mu.Unlock()
}

// TestProxyLargeBodyNotReplayed: a body larger than MaxReplayBody goes to one backend, whole.
func TestProxyLargeBodyNotReplayed(t *testing.T) {
	a := newBackend(t, "a")
	big := strings.Repeat("x", 100)
	p, _ := newProxy(t, Config{}, ProxyConfig{MaxReplayBody: 10}, a.URL)
	w := serve(p, "POST", "http://example.com/", big, nil)
	require.Equal(t, http.StatusOK, w.Code)
	a.mu.Lock()
	assert.Equal(t, []string{big}, a.bodies)
	a.mu.Unlock()

	dead, _ := newProxy(t, Config{Algorithm: WeightedRoundRobin}, ProxyConfig{MaxReplayBody: 10}, deadURL(t), a.URL)
	codes := map[int]int{}
	for range 4 {
		codes[serve(dead, "PUT", "http://example.com/", big, nil).Code]++
	}
	assert.Equal(t, map[int]int{200: 2, 502: 2}, codes, "no retry without a replayable body")
	assert.Equal(t, uint64(2), dead.Stats().RetriesRefused)
}

func TestProxyNoBackend(t *testing.T) {
	p, b := newProxy(t, Config{WhenNoneUp: FailClosed}, ProxyConfig{}, "http://10.255.255.1:1")
	require.NoError(t, b.SetUp("http://10.255.255.1:1", false))
	w := serve(p, "GET", "http://example.com/", "", nil)
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.JSONEq(t, `{"error":"Service temporarily unavailable."}`, w.Body.String())
	assert.Equal(t, "1", w.Header().Get("Retry-After"))
	assert.Equal(t, uint64(1), p.Stats().NoBackend)

	all, _ := newProxy(t, Config{}, ProxyConfig{}, deadURL(t), deadURL(t))
	w = serve(all, "GET", "http://example.com/", "", nil)
	assert.Equal(t, http.StatusBadGateway, w.Code)
	assert.NotContains(t, w.Body.String(), "refused", "the backends' errors stay inside")
	assert.Equal(t, uint64(1), all.Stats().BadGateway)
}

// TestProxyStreamsAndCountsUntilClose: a streamed response reaches the client as it is
// written, and LeastConnections counts the request in flight until its body is done.
func TestProxyStreamsAndCountsUntilClose(t *testing.T) {
	release := make(chan struct{})
	stream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, "data: last\n\n")
	}))
	t.Cleanup(stream.Close)
	p, b := newProxy(t, Config{Algorithm: LeastConnections}, ProxyConfig{}, stream.URL)
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	client := front.Client()
	t.Cleanup(client.CloseIdleConnections)

	resp, err := client.Get(front.URL)
	require.NoError(t, err)
	r := bufio.NewReader(resp.Body)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "data: first\n", line, "the first event arrived while the backend still writes")
	assert.Equal(t, int64(1), b.Stats().Backends[0].InFlight, "in flight while streaming")
	close(release)
	rest, err := io.ReadAll(r)
	require.NoError(t, err)
	assert.Equal(t, "\ndata: last\n\n", string(rest))
	require.NoError(t, resp.Body.Close())
	require.Eventually(t, func() bool { return b.Stats().Backends[0].InFlight == 0 }, time.Second, time.Millisecond)
}

// TestProxyBackendKilledUnderLoad: killing a backend while requests flow fails no idempotent
// request: those cut off are retried on the others.
func TestProxyBackendKilledUnderLoad(t *testing.T) {
	backends := []*backendServer{newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")}
	p, _ := newProxy(t, Config{}, ProxyConfig{}, backends[0].URL, backends[1].URL, backends[2].URL)
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	client := front.Client()
	t.Cleanup(client.CloseIdleConnections)

	var ok, failed atomic.Int64
	ctx, stop := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer stop()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for ctx.Err() == nil {
				resp, err := client.Get(front.URL + "/item")
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	backends[1].CloseClientConnections()
	backends[1].Close()
	wg.Wait()
	assert.Zero(t, failed.Load(), "failed requests of %d", ok.Load()+failed.Load())
	assert.Positive(t, p.Stats().Retries, "the killed backend's requests were retried")
	t.Logf("%d requests, %d retries", ok.Load(), p.Stats().Retries)
}

func TestProxyConfigErrors(t *testing.T) {
	b := newBalancer(t, Config{}, ids("http://a")...)
	for name, cfg := range map[string]ProxyConfig{
		"MaxAttempts":   {MaxAttempts: -1},
		"RetryBudget":   {RetryBudget: 2},
		"MaxReplayBody": {MaxReplayBody: -1},
	} {
		_, err := NewProxy(b, cfg)
		require.ErrorIs(t, err, ErrInvalidConfig, name)
		assert.Contains(t, err.Error(), name)
	}
	_, err := NewProxy(nil, ProxyConfig{})
	assert.ErrorIs(t, err, ErrInvalidConfig)

	bad, _ := newProxy(t, Config{}, ProxyConfig{}, "not a url")
	assert.Equal(t, http.StatusBadGateway, serve(bad, "GET", "http://example.com/", "", nil).Code)
}

func TestRetryBudget(t *testing.T) {
	p, _ := newProxy(t, Config{}, ProxyConfig{}, "http://a")
	p.retrying.Store(2)
	assert.True(t, p.budget(), "3 retries are always allowed")
	p.retrying.Store(3)
	assert.False(t, p.budget())
	p.inflight.Store(100)
	assert.True(t, p.budget(), "20% of 100 in flight")
	p.retrying.Store(20)
	assert.False(t, p.budget())
	assert.Equal(t, uint64(2), p.Stats().RetriesRefused)
	assert.False(t, retryable(httptest.NewRequest("POST", "/", nil), errors.New("connection reset")))
	assert.True(t, neverSent(fmt.Errorf("proxy: %w", &net.OpError{Op: "dial", Err: errors.New("refused")})))
	assert.False(t, neverSent(&net.OpError{Op: "read", Err: errors.New("reset")}))
	assert.True(t, retryable(httptest.NewRequest("DELETE", "/", nil), errors.New("connection reset")))
	assert.False(t, retryable(httptest.NewRequest("GET", "/", nil), context.Canceled))
}

// TestProxyForwardsTrustedChain: a trusted proxy's X-Forwarded-For chain reaches the backends
// with the peer appended, and IPHash hashes the client it names; an untrusted client's chain
// and Forwarded header are dropped.
func TestProxyForwardsTrustedChain(t *testing.T) {
	a := newBackend(t, "a")
	p, _ := newProxy(t, Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, ProxyConfig{}, a.URL)
	send := func(peer, xff, forwarded string) string {
		req := httptest.NewRequest("GET", "http://example.com/", nil)
		req.RemoteAddr = peer
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		if forwarded != "" {
			req.Header.Set("Forwarded", forwarded)
		}
		w := httptest.NewRecorder()
		p.ServeHTTP(w, req)
		require.Equal(t, http.StatusOK, w.Code)
		return w.Body.String()
	}
	assert.Contains(t, send("10.1.1.1:5000", "203.0.113.7", ""), "xff=203.0.113.7, 10.1.1.1")
	assert.Contains(t, send("198.51.100.9:5000", "6.6.6.6", "for=6.6.6.6"), "xff=198.51.100.9")

	// IPHash through the proxy hashes the clients behind the trusted proxy, not the proxy.
	backends := []*backendServer{newBackend(t, "x"), newBackend(t, "y"), newBackend(t, "z")}
	hp, _ := newProxy(t, Config{Algorithm: IPHash, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		ProxyConfig{}, backends[0].URL, backends[1].URL, backends[2].URL)
	seen := map[string]string{}
	for i := range 60 {
		client := fmt.Sprintf("203.0.113.%d", i)
		for range 2 {
			req := httptest.NewRequest("GET", "http://example.com/", nil)
			req.RemoteAddr = "10.1.1.1:5000"
			req.Header.Set("X-Forwarded-For", client)
			w := httptest.NewRecorder()
			hp.ServeHTTP(w, req)
			got := w.Header().Get("X-Backend")
			if prev, ok := seen[client]; ok {
				require.Equal(t, prev, got, "a client's backend changed")
			}
			seen[client] = got
		}
	}
	spread := map[string]int{}
	for _, b := range seen {
		spread[b]++
	}
	assert.Len(t, spread, 3, "60 clients behind one proxy spread: %v", spread)
}

// TestProxyUpgradeRefusedEndsPick: an upgrade that httputil.ReverseProxy refuses (here the
// ResponseWriter cannot hijack) still ends the pick.
func TestProxyUpgradeRefusedEndsPick(t *testing.T) {
	ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		w.WriteHeader(http.StatusSwitchingProtocols)
	}))
	t.Cleanup(ws.Close)
	p, b := newProxy(t, Config{}, ProxyConfig{}, ws.URL)
	w := serve(p, "GET", "http://example.com/", "", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}})
	assert.Equal(t, http.StatusBadGateway, w.Code)
	assert.Zero(t, b.Stats().Backends[0].InFlight, "Done ran")
}

// errAfter is a request body that fails after n bytes, as a broken chunked encoding does.
type errAfter struct{ n int }

func (e *errAfter) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, errors.New("invalid byte in chunk length")
	}
	k := min(len(p), e.n)
	e.n -= k
	return k, nil
}

// TestProxyBrokenClientBody: a client whose body cannot be read gets 400, and its requests do
// not count against the backend.
func TestProxyBrokenClientBody(t *testing.T) {
	a := newBackend(t, "a")
	p, b := newProxy(t, Config{}, ProxyConfig{MaxReplayBody: 10}, a.URL, newBackend(t, "b").URL)
	for range 12 {
		req := httptest.NewRequest("POST", "http://example.com/", io.NopCloser(&errAfter{n: 100}))
		req.ContentLength = -1
		w := httptest.NewRecorder()
		p.ServeHTTP(w, req)
		require.Equal(t, http.StatusBadRequest, w.Code, w.Body.String())
	}
	assert.Zero(t, b.Stats().Ejections)
	assert.Zero(t, p.Stats().BadGateway)
}

// TestProxyTriesDistinctBackends: every attempt goes to a backend not tried yet, however many.
func TestProxyTriesDistinctBackends(t *testing.T) {
	var urls []string
	for range 11 {
		urls = append(urls, deadURL(t))
	}
	a := newBackend(t, "a")
	var mu sync.Mutex
	var failed []string
	p, _ := newProxy(t, Config{Eject: EjectConfig{Disable: true}}, ProxyConfig{MaxAttempts: 12, Hooks: ProxyHooks{
		OnAttemptFailed: func(_ context.Context, id string, _ error, _ bool) {
			mu.Lock()
			failed = append(failed, id)
			mu.Unlock()
		},
	}}, append(urls, a.URL)...)
	for range 5 {
		mu.Lock()
		failed = nil
		mu.Unlock()
		w := serve(p, "GET", "http://example.com/", "", nil)
		require.Equal(t, http.StatusOK, w.Code)
		mu.Lock()
		distinct := map[string]bool{}
		for _, id := range failed {
			require.False(t, distinct[id], "%s tried twice: %v", id, failed)
			distinct[id] = true
		}
		mu.Unlock()
	}
}

// TestProxyRewriteHostAndInFlight: a Host set by Rewrite reaches the backend; requests count
// in flight under round robin too.
func TestProxyRewriteHostAndInFlight(t *testing.T) {
	a := newBackend(t, "a")
	p, _ := newProxy(t, Config{}, ProxyConfig{Rewrite: func(pr *httputil.ProxyRequest) { pr.Out.Host = "internal.example" }}, a.URL)
	assert.Contains(t, serve(p, "GET", "http://example.com/", "", nil).Body.String(), "host=internal.example")

	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-release
	}))
	t.Cleanup(slow.Close)
	rr, b := newProxy(t, Config{}, ProxyConfig{}, slow.URL)
	done := make(chan struct{})
	go func() { serve(rr, "GET", "http://example.com/", "", nil); close(done) }()
	require.Eventually(t, func() bool { return b.Stats().Backends[0].InFlight == 1 }, 5*time.Second, time.Millisecond)
	close(release)
	<-done
	assert.Zero(t, b.Stats().Backends[0].InFlight)

	own, err := NewProxy(b, ProxyConfig{})
	require.NoError(t, err)
	assert.Equal(t, 60*time.Second, own.owned.ResponseHeaderTimeout, "a hung backend fails its requests")
	require.NoError(t, own.Close())
}

// TestProxyRetryPath: a retry goes to the next backend's base path, not the first's.
func TestProxyRetryPath(t *testing.T) {
	a := newBackend(t, "a")
	p, _ := newProxy(t, Config{Algorithm: WeightedRoundRobin}, ProxyConfig{}, deadURL(t)+"/first", a.URL+"/second")
	for range 2 {
		w := serve(p, "GET", "http://example.com/dir?q=1", "", nil)
		require.Equal(t, http.StatusOK, w.Code)
		assert.Contains(t, w.Body.String(), "a GET /second/dir ")
	}
}
