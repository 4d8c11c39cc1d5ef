package session

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

// instances returns n Managers sharing be's Redis under one prefix, each with a client of its
// own, as n instances of a service have; no Secret is configured.
func instances(t *testing.T, be redistest.Backend, n int, cfg Config) []*Manager {
	t.Helper()
	ms := make([]*Manager, n)
	for i := range ms {
		st, err := NewRedisStore(be.NewClient(t), RedisConfig{Prefix: be.Prefix, Timeout: 5 * time.Second})
		require.NoError(t, err)
		ms[i] = newManager(t, st, cfg)
	}
	return ms
}

// TestStatelessInstances: two servers, each with its own Manager and its own Redis client, on
// one Redis (miniredis, and each real server configured: Redis, Cluster, Sentinel). A browser
// logs in on A, goes on on B, logs out on B, and is anonymous on A.
func TestStatelessInstances(t *testing.T) {
	for _, k := range redistest.Kinds()[1:] {
		t.Run(string(k), func(t *testing.T) {
			var servers []*httptest.Server
			for _, m := range instances(t, redistest.Open(t, k), 2, Config{Insecure: true}) { // plain-HTTP test servers
				srv := httptest.NewServer(m.Middleware(app()))
				t.Cleanup(srv.Close)
				servers = append(servers, srv)
			}
			a, b := servers[0], servers[1]
			jar, err := cookiejar.New(nil)
			require.NoError(t, err)
			browser := &http.Client{Jar: jar}
			t.Cleanup(browser.CloseIdleConnections)
			call := func(srv *httptest.Server, method, path string) string {
				t.Helper()
				req, err := http.NewRequest(method, srv.URL+path, nil)
				require.NoError(t, err)
				resp, err := browser.Do(req)
				require.NoError(t, err)
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
				return string(body)
			}
			// httptest servers differ only by port; cookies ignore ports, so the jar sends the
			// session to both, as a browser does behind a load balancer.
			call(a, "POST", "/login?user=ada")
			call(a, "POST", "/put?k=cart&v=3")
			assert.Equal(t, "3|1|ada", call(b, "GET", "/get?k=cart"), "B serves the session A created")
			call(b, "POST", "/put?k=cart&v=4")
			assert.Equal(t, "4|1|ada", call(a, "GET", "/get?k=cart"))
			call(b, "POST", "/logout")
			assert.Equal(t, "|0|", call(a, "GET", "/get?k=cart"), "logged out on B, anonymous on A")
		})
	}
}

// TestNoLostUpdatesAcrossInstances: concurrent requests on one session, spread over two
// instances with their own clients, each writing its own key: every key is there afterwards,
// as RedisStore promises ("concurrent requests changing different keys of one session all keep
// their changes").
func TestNoLostUpdatesAcrossInstances(t *testing.T) {
	for _, k := range redistest.Kinds()[1:] {
		t.Run(string(k), func(t *testing.T) {
			ms := instances(t, redistest.Open(t, k), 2, Config{})
			hs := []http.Handler{ms[0].Middleware(app()), ms[1].Middleware(app())}
			c := &client{t: t, h: hs[0]}
			c.do("POST", "/login?user=ada")
			require.NotNil(t, c.cookie)
			const n = 400
			var wg sync.WaitGroup
			codes := make([]int, n)
			for i := range n {
				wg.Go(func() {
					req := httptest.NewRequest("POST", fmt.Sprintf("/put?k=k%d&v=%d", i, i), nil)
					req.AddCookie(c.cookie)
					rec := httptest.NewRecorder()
					hs[i%2].ServeHTTP(rec, req)
					codes[i] = rec.Code
				})
			}
			wg.Wait()
			for i, code := range codes {
				require.Equal(t, http.StatusOK, code, "request %d", i)
			}
			for i, h := range hs {
				c.h = h
				assert.Equal(t, fmt.Sprintf("7|%d|ada", n), c.do("GET", "/get?k=k7").Body.String(), "read on instance %d", i)
			}
			assert.Zero(t, ms[0].Stats().Lost+ms[1].Stats().Lost)
		})
	}
}

// TestExpiryDeterministic: the idle and absolute deadlines on the memory store with fake time,
// through the middleware: a session used every 20 minutes lives until its 24 hours are over, and
// a save racing the deadline deletes it rather than writing it again.
func TestExpiryDeterministic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemoryStore(t)
		m := newManager(t, st, Config{})
		c := &client{t: t, h: m.Middleware(app())}
		c.do("POST", "/put?k=a&v=1")
		for range 71 { // 71 × 20 min = 23 h 40 min
			time.Sleep(20 * time.Minute)
			require.Equal(t, "1|1|", c.do("GET", "/get?k=a").Body.String())
		}
		time.Sleep(20 * time.Minute) // 24 h
		assert.Equal(t, "|0|", c.do("GET", "/get?k=a").Body.String(), "the absolute deadline ends it")

		c = &client{t: t, h: c.h}
		c.do("POST", "/put?k=a&v=1")
		time.Sleep(29 * time.Minute)
		assert.Equal(t, "1|1|", c.do("GET", "/get?k=a").Body.String())
		time.Sleep(30*time.Minute + time.Second)
		assert.Equal(t, "|0|", c.do("GET", "/get?k=a").Body.String(), "30 minutes unused end it")

		// A request that loads the session two minutes before its absolute deadline and saves
		// three minutes later: the save deletes the session instead of writing it again.
		m = newManager(t, st, Config{Lifetime: time.Hour})
		slow := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(3 * time.Minute)
			_ = FromContext(r.Context()).Put("b", "2")
		}))
		c = &client{t: t, h: m.Middleware(app())}
		c.do("POST", "/put?k=a&v=1")
		time.Sleep(20 * time.Minute)
		c.do("GET", "/get?k=a")
		time.Sleep(20 * time.Minute)
		c.do("GET", "/get?k=a")
		time.Sleep(18 * time.Minute) // two minutes left
		c.h = slow
		rec := c.do("POST", "/")
		assert.Equal(t, http.StatusOK, rec.Code)
		assert.Empty(t, rec.Header().Get("Set-Cookie"), "the cookie is left alone (the browser may hold a newer one)")
		assert.Equal(t, uint64(1), m.Stats().Lost)
		assert.Zero(t, st.count(), "no session outlives its deadline")
	})
}

// FuzzCookie: whatever the Cookie header, the middleware answers and never asks the store about
// a malformed ID.
func FuzzCookie(f *testing.F) {
	for _, s := range []string{"session=" + newID(), "session=", "session=\x00", "a=b; session=x; session=" + newID(), "session=%zz"} {
		f.Add(s)
	}
	m, err := New(&spy{Store: newMemoryStore(f)}, Config{})
	if err != nil {
		f.Fatal(err)
	}
	h := m.Middleware(app())
	f.Fuzz(func(t *testing.T, header string) {
		req := httptest.NewRequest("GET", "/get?k=a", nil)
		req.Header.Set("Cookie", header)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Fatalf("%q: %d", header, rec.Code)
		}
	})
}

// spy fails the test run if a store sees a malformed ID.
type spy struct{ Store }

func (s *spy) Load(ctx context.Context, id string) (Record, error) {
	if !validID(id) {
		panic(fmt.Sprintf("malformed ID %q reached the store", id))
	}
	return s.Store.Load(ctx, id)
}

// TestReadsFromPrimary: with a client that sends read-only commands to random nodes, replicas
// included, a session created is found at once, every time: the store's scripts run on the
// primary. It needs the Sentinel setup of scripts/test-services.sh.
func TestReadsFromPrimary(t *testing.T) {
	addrs, master := os.Getenv(redistest.EnvSentinel), os.Getenv(redistest.EnvSentinelMaster)
	if addrs == "" || master == "" {
		t.Skip("needs OUTGROW_REDIS_SENTINEL and OUTGROW_REDIS_SENTINEL_MASTER (a primary with a replica)")
	}
	rdb := redis.NewFailoverClusterClient(&redis.FailoverOptions{
		MasterName: master, SentinelAddrs: strings.Split(addrs, ","), RouteRandomly: true,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	st, err := NewRedisStore(rdb, RedisConfig{Prefix: redistest.Prefix(t, rdb), Timeout: 5 * time.Second})
	require.NoError(t, err)
	ctx := context.Background()
	for range 50 {
		id := create(t, st, map[string][]byte{"a": []byte("1")}, "")
		r, err := st.Load(ctx, id)
		require.NoError(t, err, "a session is read where it was written")
		require.Equal(t, []byte("1"), r.Values["a"])
	}
}

// TestRedisServerOutage stops a real redis-server and starts it again: requests get a quick 503
// (never a hang, never a panic) while it is down, and sessions work again once it is back.
func TestRedisServerOutage(t *testing.T) {
	srv := redistest.StartServer(t, 0)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	st, err := NewRedisStore(rdb, RedisConfig{})
	require.NoError(t, err)
	m := newManager(t, st, Config{})
	c := &client{t: t, h: m.Middleware(app())}
	require.Equal(t, http.StatusOK, c.do("POST", "/put?k=a&v=1").Code)

	srv.Stop()
	var slowest time.Duration
	for range 20 {
		start := time.Now()
		rec := c.do("GET", "/get?k=a")
		slowest = max(slowest, time.Since(start))
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	}
	assert.Less(t, slowest, 500*time.Millisecond, "bounded by the store's timeout (race detector on)")
	assert.Positive(t, m.Stats().StoreErrors)
	st1 := st.Stats()
	assert.True(t, st1.Down, "the store fails fast after FailFastAfter failures")
	assert.Positive(t, st1.FastFails, "most requests during the outage never reached Redis")
	assert.Less(t, st1.Failures, uint64(20), "only the probes reached the dead server")

	redistest.StartServer(t, srv.Port()) // empty: the session is gone with the old server
	require.Eventually(t, func() bool {
		return c.do("POST", "/put?k=b&v=2").Code == http.StatusOK
	}, 3*time.Second, 50*time.Millisecond, "back within RetryInterval of the restart")
	assert.Equal(t, "2|1|", c.do("GET", "/get?k=b").Body.String())
	assert.False(t, st.Stats().Down)
	t.Logf("slowest request during the outage %v", slowest)
}
