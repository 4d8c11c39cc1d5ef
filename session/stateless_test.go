package session

import (
	"context"
	"fmt"
	"io"
	"log/slog"
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
// own, as n instances of a service have; no Secret is configured. Their stores wait long for
// Redis: these tests are about what instances share, not about a slow Redis (a few timeouts on
// a busy machine would make a store fail fast and answer 503).
func instances(t *testing.T, be redistest.Backend, n int, cfg Config) []*Manager {
	t.Helper()
	ms := make([]*Manager, n)
	for i := range ms {
		st, err := NewRedisStore(be.NewClient(t), RedisConfig{Prefix: be.Prefix, Timeout: 30 * time.Second})
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
			const n = 200
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

// TestRedisServerOutage stops a real redis-server under two instances and starts it again, empty,
// on the same port: while it is down every request on either instance gets a quick 503 (never a
// hang, never a panic), and once it is back sessions created on one instance work on the other,
// users included. Instance A's client has ContextTimeoutEnabled, B's has not: both ways of
// bounding a call are covered.
func TestRedisServerOutage(t *testing.T) {
	ctx := context.Background()
	srv := redistest.StartServer(t, 0)
	newStore := func(ctxTimeouts bool) *RedisStore {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 100 * time.Millisecond,
			ContextTimeoutEnabled: ctxTimeouts})
		t.Cleanup(func() { _ = rdb.Close() })
		st, err := NewRedisStore(rdb, RedisConfig{Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		return st
	}
	stores := []*RedisStore{newStore(true), newStore(false)}
	var ms []*Manager
	var hs []http.Handler
	for _, st := range stores {
		m := newManager(t, st, Config{})
		ms, hs = append(ms, m), append(hs, m.Middleware(app()))
	}
	c := &client{t: t, h: hs[0]}
	require.Equal(t, http.StatusOK, c.do("POST", "/login?user=ada").Code)
	for _, m := range ms {
		infos, err := m.List(ctx, "ada") // both instances have read the shared secret
		require.NoError(t, err)
		require.Len(t, infos, 1)
	}

	srv.Stop()
	var slowest time.Duration
	for i := range 40 {
		c.h = hs[i%2]
		start := time.Now()
		rec := c.do("GET", "/get?k=a")
		slowest = max(slowest, time.Since(start))
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	}
	assert.Less(t, slowest, 500*time.Millisecond, "bounded by the store's timeout (race detector on)")
	for i, st := range stores {
		stats := st.Stats()
		assert.Positive(t, ms[i].Stats().StoreErrors, "instance %d", i)
		assert.True(t, stats.Down, "instance %d fails fast after FailFastAfter failures", i)
		assert.Positive(t, stats.FastFails, "instance %d: most requests during the outage never reached Redis", i)
		assert.Less(t, stats.Failures, uint64(20), "instance %d: only the probes reached the dead server", i)
	}

	redistest.StartServer(t, srv.Port()) // empty: the sessions are gone with the old server
	fresh := make([]*client, len(hs))
	for i, h := range hs {
		fresh[i] = &client{t: t, h: h}
		require.Eventually(t, func() bool {
			return fresh[i].do("POST", fmt.Sprintf("/put?k=b&v=%d", i)).Code == http.StatusOK
		}, 3*time.Second, 50*time.Millisecond, "instance %d back within RetryInterval of the restart", i)
		assert.False(t, stores[i].Stats().Down)
	}
	for i, c := range fresh {
		c.h = hs[1-i]
		assert.Equal(t, fmt.Sprintf("%d|1|", i), c.do("GET", "/get?k=b").Body.String(),
			"a session made on instance %d after the restart, read on the other", i)
	}
	assert.Equal(t, "|0|", c.do("GET", "/get?k=a").Body.String(), "the session from before the restart is gone")
	c.h = hs[1]
	require.Equal(t, http.StatusOK, c.do("POST", "/login?user=bob").Code)
	infos, err := ms[0].List(ctx, "bob")
	require.NoError(t, err)
	assert.Len(t, infos, 1, "a login on B after the restart is listed on A")

	// The restart lost the shared secret with everything else; the running instances wrote
	// theirs back at their first call after the outage (RedisConfig.Secret), so an instance
	// started now reads the same one and its logins are listed everywhere.
	late := newManager(t, newStore(true), Config{})
	c = &client{t: t, h: late.Middleware(app())}
	require.Equal(t, http.StatusOK, c.do("POST", "/login?user=bob").Code)
	infos, err = ms[0].List(ctx, "bob")
	require.NoError(t, err)
	assert.Len(t, infos, 2, "A lists bob's login on B and on an instance started after the data loss")
	t.Logf("slowest request during the outage %v", slowest)
}
