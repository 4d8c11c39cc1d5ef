package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

// app is a handler exercising the session API.
func app() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		fmt.Fprintf(w, "%s|%d|%s", s.String(r.FormValue("k")), len(s.Keys()), s.User())
	})
	mux.HandleFunc("POST /put", func(w http.ResponseWriter, r *http.Request) {
		if err := FromContext(r.Context()).Put(r.FormValue("k"), r.FormValue("v")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if err := FromContext(r.Context()).Login(r.FormValue("user")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		_ = FromContext(r.Context()).Destroy()
	})
	mux.HandleFunc("POST /late", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("started "))
		err := FromContext(r.Context()).Put("late", "x")
		_, perr := FromContext(r.Context()).PopString("a")
		_, _ = w.Write([]byte(fmt.Sprint(errors.Is(err, ErrCommitted) && errors.Is(perr, ErrCommitted))))
	})
	return mux
}

// appWith is app with one more route.
func appWith(pattern string, h http.HandlerFunc) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", app())
	mux.HandleFunc(pattern, h)
	return mux
}

// client carries one browser's session cookie.
type client struct {
	t      *testing.T
	h      http.Handler
	cookie *http.Cookie
}

func (c *client) do(method, target string) *httptest.ResponseRecorder {
	c.t.Helper()
	req := httptest.NewRequest(method, target, nil)
	if c.cookie != nil {
		req.AddCookie(c.cookie)
	}
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, req)
	for _, ck := range rec.Result().Cookies() {
		if ck.MaxAge < 0 {
			c.cookie = nil
		} else {
			c.cookie = ck
		}
	}
	return rec
}

func newManager(t *testing.T, st Store, cfg Config) *Manager {
	t.Helper()
	m, err := New(st, cfg)
	require.NoError(t, err)
	return m
}

func TestMiddlewareFlow(t *testing.T) {
	redistest.Each(t, func(t *testing.T, be redistest.Backend) {
		m := newManager(t, newBackend(t, be).store, Config{})
		c := &client{t: t, h: m.Middleware(app())}

		rec := c.do("GET", "/get?k=a")
		assert.Empty(t, rec.Result().Cookies(), "an empty new session is not stored and sets no cookie")
		assert.Equal(t, "|0|", rec.Body.String())

		rec = c.do("POST", "/put?k=a&v=1")
		require.Equal(t, http.StatusOK, rec.Code)
		require.NotNil(t, c.cookie)
		sc := rec.Header().Get("Set-Cookie")
		for _, attr := range []string{"session=", "Path=/", "HttpOnly", "Secure", "SameSite=Lax"} {
			assert.Contains(t, sc, attr)
		}
		assert.NotContains(t, sc, "Max-Age", "a browser-session cookie by default")
		assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
		assert.Contains(t, rec.Header().Values("Vary"), "Cookie")
		first := c.cookie.Value

		commits := m.Stats().Commits
		rec = c.do("GET", "/get?k=a")
		assert.Equal(t, "1|1|", rec.Body.String())
		assert.Empty(t, rec.Result().Cookies(), "reading sends no cookie")
		assert.Equal(t, commits, m.Stats().Commits, "and writes nothing")
		assert.Contains(t, rec.Header().Values("Vary"), "Cookie")

		rec = c.do("POST", "/login?user=ada")
		require.Equal(t, http.StatusOK, rec.Code)
		require.NotEqual(t, first, c.cookie.Value, "login renews the ID")
		assert.Equal(t, "1|1|ada", c.do("GET", "/get?k=a").Body.String(), "data and user follow")
		old := &client{t: t, h: c.h, cookie: &http.Cookie{Name: "session", Value: first}}
		assert.Equal(t, "|0|", old.do("GET", "/get?k=a").Body.String(), "the old ID is worthless")

		infos, err := m.List(context.Background(), "ada")
		require.NoError(t, err)
		assert.Len(t, infos, 1)

		rec = c.do("POST", "/late")
		assert.Equal(t, "started true", rec.Body.String(), "a change after the response started fails loudly")

		rec = c.do("POST", "/logout")
		assert.Contains(t, rec.Header().Get("Set-Cookie"), "Max-Age=0", "logout clears the cookie")
		assert.Nil(t, c.cookie)
		infos, err = m.List(context.Background(), "ada")
		require.NoError(t, err)
		assert.Empty(t, infos)
	})
}

func TestMiddlewareBadCookies(t *testing.T) {
	m := newManager(t, newMemoryStore(t), Config{})
	h := m.Middleware(app())
	for _, v := range []string{"", "x", strings.Repeat("a", idLen), strings.Repeat("a", idLen-2) + "é", strings.Repeat("a", idLen-1) + ".", newID() + "x"} {
		req := httptest.NewRequest("GET", "/get?k=a", nil)
		req.Header.Set("Cookie", "session="+v)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		assert.Equal(t, http.StatusOK, rec.Code, "cookie %q: a new session, never an error", v)
		assert.Equal(t, "|0|", rec.Body.String())
	}
	assert.Zero(t, m.Stats().StoreErrors)
}

// failing is a store that always fails.
type failing struct{}

var errStore = errors.New("connection refused")

func (failing) Load(context.Context, string) (Record, error) {
	return Record{}, fmt.Errorf("%w: %w", ErrUnavailable, errStore)
}
func (failing) Commit(context.Context, *Change) (Record, error) {
	return Record{}, fmt.Errorf("%w: %w", ErrUnavailable, errStore)
}
func (failing) User(context.Context, UserQuery) ([]Info, error) { return nil, ErrUnavailable }

func TestStoreFailure(t *testing.T) {
	m := newManager(t, failing{}, Config{})
	c := &client{t: t, h: m.Middleware(app()), cookie: &http.Cookie{Name: "session", Value: newID()}}
	rec := c.do("GET", "/get?k=a")
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code, "fails closed by default")
	assert.JSONEq(t, `{"error":"Service temporarily unavailable."}`, rec.Body.String())
	assert.NotContains(t, rec.Body.String(), "refused", "no internal error in the body")

	c.cookie = nil
	rec = c.do("POST", "/put?k=a&v=1")
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code, "a save that fails answers 503, not the handler's 200")

	open := newManager(t, failing{}, Config{FailOpen: true})
	c = &client{t: t, h: open.Middleware(app()), cookie: &http.Cookie{Name: "session", Value: newID()}}
	rec = c.do("GET", "/get?k=a")
	assert.Equal(t, http.StatusOK, rec.Code, "FailOpen serves without a session")
	rec = c.do("POST", "/put?k=a&v=1")
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Empty(t, rec.Result().Cookies())
	assert.Equal(t, uint64(2), open.Stats().StoreErrors)
}

// switchable is a store that fails while down is set.
type switchable struct {
	Store
	down atomic.Bool
}

func (s *switchable) Load(ctx context.Context, id string) (Record, error) {
	if s.down.Load() {
		return failing{}.Load(ctx, id)
	}
	return s.Store.Load(ctx, id)
}

func (s *switchable) Commit(ctx context.Context, c *Change) (Record, error) {
	if s.down.Load() {
		return failing{}.Commit(ctx, c)
	}
	return s.Store.Commit(ctx, c)
}

// records keeps what a slog.Logger logged.
type records struct {
	mu    sync.Mutex
	lines []string
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, rec.Level.String()+" "+rec.Message)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func (r *records) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.lines
	r.lines = nil
	return out
}

// TestStoreStateLogged: the Manager logs when the store starts failing (3 failed requests in a
// row) and when it answers again, once each however many requests pass, and nothing for a
// failure or two among successes. The hook sees every failure, with the request's context.
func TestStoreStateLogged(t *testing.T) {
	type ctxKey struct{}
	st := &switchable{Store: newMemoryStore(t)}
	var logged records
	var hooked atomic.Int64
	m := newManager(t, st, Config{
		Logger: slog.New(&logged),
		Hooks: Hooks{OnStoreError: func(ctx context.Context, err error) {
			if ctx.Value(ctxKey{}) == "request" && errors.Is(err, ErrUnavailable) {
				hooked.Add(1)
			}
		}},
	})
	h := m.Middleware(app())
	c := &client{t: t, h: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, "request")))
	})}
	require.Equal(t, http.StatusOK, c.do("POST", "/put?k=a&v=1").Code)

	for range 2 {
		st.down.Store(true)
		for range 2 {
			assert.Equal(t, http.StatusServiceUnavailable, c.do("GET", "/get?k=a").Code)
		}
		st.down.Store(false)
		assert.Equal(t, http.StatusOK, c.do("GET", "/get?k=a").Code)
	}
	assert.Empty(t, logged.take(), "two failures in a row are not an outage")

	st.down.Store(true)
	for range 20 {
		assert.Equal(t, http.StatusServiceUnavailable, c.do("GET", "/get?k=a").Code)
	}
	assert.Equal(t, []string{"WARN session: store failing; requests are answered by Config.OnError"}, logged.take())
	st.down.Store(false)
	for range 20 {
		assert.Equal(t, http.StatusOK, c.do("GET", "/get?k=a").Code)
	}
	assert.Equal(t, []string{"INFO session: store answers again"}, logged.take())
	assert.Equal(t, int64(24), hooked.Load(), "the hook sees each failure, with the request's context")
	assert.Equal(t, uint64(24), m.Stats().StoreErrors)

	// A request that reaches no store says nothing about it: no "answers again" while it fails.
	st.down.Store(true)
	for range 3 {
		c.do("GET", "/get?k=a")
	}
	logged.take()
	anonymous := &client{t: t, h: h}
	assert.Equal(t, http.StatusOK, anonymous.do("GET", "/get?k=a").Code)
	assert.Empty(t, logged.take())
}

// TestRedisOutageLoggedOnce: a RedisStore logs its outages itself, so a Manager over it adds no
// line of its own: with one logger for both, an outage is one Warn and its end one Info.
func TestRedisOutageLoggedOnce(t *testing.T) {
	be := redistest.Open(t, redistest.Miniredis)
	var logged records
	logger := slog.New(&logged)
	st, err := NewRedisStore(be.Client, RedisConfig{Prefix: be.Prefix, Logger: logger, RetryInterval: 10 * time.Millisecond,
		Timeout: 30 * time.Second}) // no timeout on a busy machine: only SetError fails
	require.NoError(t, err)
	m := newManager(t, st, Config{Logger: logger})
	c := &client{t: t, h: m.Middleware(app())}
	require.Equal(t, http.StatusOK, c.do("POST", "/put?k=a&v=1").Code)

	be.Mini.SetError("LOADING Redis is loading the dataset in memory")
	for range 10 {
		assert.Equal(t, http.StatusServiceUnavailable, c.do("GET", "/get?k=a").Code)
	}
	assert.Equal(t, []string{"WARN session: Redis unavailable; failing fast"}, logged.take())
	assert.Equal(t, uint64(10), m.Stats().StoreErrors, "the Manager still counts every failed request")
	be.Mini.SetError("")
	require.Eventually(t, func() bool { return c.do("GET", "/get?k=a").Code == http.StatusOK },
		time.Second, 20*time.Millisecond)
	for range 10 {
		assert.Equal(t, http.StatusOK, c.do("GET", "/get?k=a").Code)
	}
	assert.Equal(t, []string{"INFO session: Redis answers again"}, logged.take())
}

func TestMaxSize(t *testing.T) {
	m := newManager(t, newMemoryStore(t), Config{MaxSize: 100})
	c := &client{t: t, h: m.Middleware(app())}
	assert.Equal(t, http.StatusOK, c.do("POST", "/put?k=a&v="+strings.Repeat("x", 50)).Code)
	rec := c.do("POST", "/put?k=b&v="+strings.Repeat("x", 60))
	assert.Equal(t, http.StatusBadRequest, rec.Code)
	assert.Contains(t, rec.Body.String(), "data too large")
	assert.Equal(t, http.StatusOK, c.do("POST", "/put?k=a&v="+strings.Repeat("y", 90)).Code, "replacing counts the new size only")
}

func TestConfig(t *testing.T) {
	st := newMemoryStore(t)
	_, err := New(nil, Config{})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	_, err = New(st, Config{HostPrefix: true, Insecure: true})
	assert.ErrorIs(t, err, ErrInvalidConfig, "__Host- needs Secure")
	_, err = New(st, Config{HostPrefix: true, Domain: "example.com"})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	_, err = New(st, Config{CookieName: "a;b"})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	_, err = New(st, Config{SameSite: http.SameSiteNoneMode, Insecure: true})
	assert.ErrorIs(t, err, ErrInvalidConfig)

	m := newManager(t, st, Config{HostPrefix: true, Persist: true, Lifetime: time.Hour})
	c := &client{t: t, h: m.Middleware(app())}
	sc := c.do("POST", "/put?k=a&v=1").Header().Get("Set-Cookie")
	assert.True(t, strings.HasPrefix(sc, "__Host-session="), sc)
	assert.Contains(t, sc, "Max-Age=3600")
	assert.NotContains(t, sc, "Domain")
}

func TestTypedValues(t *testing.T) {
	m := newManager(t, newMemoryStore(t), Config{})
	type prefs struct {
		Theme string
		Size  int
	}
	when := time.Date(2026, 11, 27, 10, 0, 0, 123, time.UTC)
	var s *Session
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s = FromContext(r.Context())
		require.NoError(t, s.Put("s", "str"))
		require.NoError(t, s.Put("i", 42))
		require.NoError(t, s.Put("b", true))
		require.NoError(t, s.Put("t", when))
		require.NoError(t, s.Put("p", prefs{"dark", 3}))
		require.NoError(t, s.Put("flash", "saved"))
	}))
	c := &client{t: t, h: h}
	c.do("GET", "/")
	h2 := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		assert.Equal(t, "str", s.String("s"))
		assert.Equal(t, 42, s.Int("i"))
		assert.Equal(t, "", s.String("i"), "a value of another kind reads as zero")
		assert.True(t, s.Bool("b"))
		assert.True(t, when.Equal(s.Time("t")))
		var p prefs
		ok, err := s.Get("p", &p)
		assert.True(t, ok)
		assert.NoError(t, err)
		assert.Equal(t, prefs{"dark", 3}, p)
		var n int64
		ok, err = s.Get("i", &n)
		assert.True(t, ok && err == nil && n == 42)
		ok, err = s.Get("missing", &p)
		assert.False(t, ok)
		assert.NoError(t, err)
		flash, err := s.PopString("flash")
		assert.Equal(t, "saved", flash)
		assert.NoError(t, err)
		flash, err = s.PopString("flash")
		assert.Equal(t, "", flash)
		assert.NoError(t, err)
		assert.Equal(t, []string{"b", "i", "p", "s", "t"}, s.Keys())
	}))
	c.h = h2
	c.do("GET", "/")
	c.h = m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		assert.False(t, FromContext(r.Context()).Has("flash"), "a popped value is gone for good")
	}))
	c.do("GET", "/")

	var nilSession *Session
	assert.ErrorIs(t, nilSession.Put("a", 1), ErrNoSession)
	assert.Equal(t, "", nilSession.String("a"))
	assert.Nil(t, FromContext(context.Background()))
}

// TestNoLostUpdates: 1,000 concurrent requests on one session, each writing its own key: all
// 1,000 are there afterwards.
func TestNoLostUpdates(t *testing.T) {
	redistest.Each(t, func(t *testing.T, be redistest.Backend) {
		m := newManager(t, newBackend(t, be).store, Config{})
		h := m.Middleware(app())
		c := &client{t: t, h: h}
		c.do("POST", "/put?k=seed&v=1")
		require.NotNil(t, c.cookie)
		var wg sync.WaitGroup
		var mu sync.Mutex
		codes := map[int]int{}
		for i := range 1000 {
			wg.Go(func() {
				req := httptest.NewRequest("POST", fmt.Sprintf("/put?k=k%d&v=%d", i, i), nil)
				req.AddCookie(c.cookie)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				mu.Lock()
				codes[rec.Code]++
				mu.Unlock()
			})
		}
		wg.Wait()
		require.Equal(t, map[int]int{200: 1000}, codes)
		assert.Equal(t, "1|1001|", c.do("GET", "/get?k=seed").Body.String(), "1,000 keys and the seed")
	})
}

// TestRenewUnderConcurrency: one request logs in (renewing the ID) while others write with the
// old cookie. Afterwards the old ID opens nothing, the new one has the login, and no request
// failed: a write that lost the race to the renewal is counted as lost, never resurrected under
// the old ID.
func TestRenewUnderConcurrency(t *testing.T) {
	redistest.Each(t, func(t *testing.T, be redistest.Backend) {
		m := newManager(t, newBackend(t, be).store, Config{})
		h := m.Middleware(app())
		c := &client{t: t, h: h}
		c.do("POST", "/put?k=seed&v=1")
		old := c.cookie
		var wg sync.WaitGroup
		var renewed *http.Cookie
		for i := range 50 {
			wg.Go(func() {
				target := fmt.Sprintf("/put?k=k%d&v=1", i)
				if i == 25 {
					target = "/login?user=ada"
				}
				req := httptest.NewRequest("POST", target, nil)
				req.AddCookie(old)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				assert.Equal(t, http.StatusOK, rec.Code)
				if i == 25 {
					renewed = rec.Result().Cookies()[0]
				}
			})
		}
		wg.Wait()
		stale := &client{t: t, h: h, cookie: old}
		assert.Equal(t, "|0|", stale.do("GET", "/get?k=seed").Body.String())
		fresh := &client{t: t, h: h, cookie: renewed}
		body := fresh.do("GET", "/get?k=seed").Body.String()
		assert.True(t, strings.HasPrefix(body, "1|") && strings.HasSuffix(body, "|ada"), body)
		t.Logf("%d writes lost to the renewal", m.Stats().Lost)
	})
}

// TestLostWriteKeepsTheCookie: a request loads the session, a login replaces it meanwhile, then
// the request writes. Its write is dropped, and its response sends no cookie: arriving after
// the login's response, a cleared or new cookie would log the user out.
func TestLostWriteKeepsTheCookie(t *testing.T) {
	redistest.Each(t, func(t *testing.T, be redistest.Backend) {
		m := newManager(t, newBackend(t, be).store, Config{})
		loaded, proceed := make(chan struct{}), make(chan struct{})
		slow := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(loaded)
			<-proceed
			assert.NoError(t, FromContext(r.Context()).Put("late", "1"))
		}))
		c := &client{t: t, h: m.Middleware(app())}
		c.do("POST", "/put?k=a&v=1")
		old := c.cookie
		done := make(chan *httptest.ResponseRecorder)
		go func() {
			req := httptest.NewRequest("POST", "/", nil)
			req.AddCookie(old)
			rec := httptest.NewRecorder()
			slow.ServeHTTP(rec, req)
			done <- rec
		}()
		<-loaded
		c.do("POST", "/login?user=ada")
		close(proceed)
		rec := <-done
		assert.Equal(t, http.StatusOK, rec.Code)
		assert.Empty(t, rec.Result().Cookies(), "a lost write sends no cookie")
		assert.Equal(t, uint64(1), m.Stats().Lost)
		assert.Equal(t, "1|1|ada", c.do("GET", "/get?k=a").Body.String(), "the login stands")
	})
}

// failingCommit loads from a MemoryStore but cannot save.
type failingCommit struct{ *MemoryStore }

func (failingCommit) Commit(context.Context, *Change) (Record, error) {
	return Record{}, fmt.Errorf("%w: %w", ErrUnavailable, errStore)
}

func TestFailedSaveDropsHandlerHeaders(t *testing.T) {
	m := newManager(t, failingCommit{newMemoryStore(t)}, Config{})
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = FromContext(r.Context()).Put("a", "1")
		w.Header().Set("Location", "/next")
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(http.StatusSeeOther)
		_, _ = w.Write([]byte("gzipped bytes"))
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/", nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Empty(t, rec.Header().Get("Location"))
	assert.Empty(t, rec.Header().Get("Content-Encoding"))
	assert.JSONEq(t, `{"error":"Service temporarily unavailable."}`, rec.Body.String())
}

func TestEarlyHintsDoNotCommit(t *testing.T) {
	m := newManager(t, newMemoryStore(t), Config{})
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		assert.NoError(t, FromContext(r.Context()).Put("a", "1"), "the response has not started")
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
	srv.Client().CloseIdleConnections()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Len(t, resp.Cookies(), 1, "the session is saved with the final response")
}

func TestCookieNamesAreChecked(t *testing.T) {
	for _, name := range []string{"app:session", "a b", "a;b", "é"} {
		_, err := New(newMemoryStore(t), Config{CookieName: name})
		assert.ErrorIs(t, err, ErrInvalidConfig, name)
	}
	_, err := New(newMemoryStore(t), Config{Path: "/a;b"})
	assert.ErrorIs(t, err, ErrInvalidConfig)
}

func TestRevokeOneDevice(t *testing.T) {
	redistest.Each(t, func(t *testing.T, be redistest.Backend) {
		m := newManager(t, newBackend(t, be).store, Config{})
		var handle string
		h := m.Middleware(appWith("GET /handle", func(w http.ResponseWriter, r *http.Request) {
			handle = FromContext(r.Context()).Handle()
		}))
		laptop, phone := &client{t: t, h: h}, &client{t: t, h: h}
		laptop.do("POST", "/login?user=ada")
		phone.do("POST", "/login?user=ada")
		phone.do("GET", "/handle")
		require.NotEmpty(t, handle)

		infos, err := m.List(context.Background(), "ada")
		require.NoError(t, err)
		require.Len(t, infos, 2)
		ok, err := m.Revoke(context.Background(), "ada", handle)
		require.NoError(t, err)
		assert.True(t, ok)
		assert.Equal(t, "|0|", phone.do("GET", "/get?k=a").Body.String(), "the phone is signed out")
		assert.Equal(t, "|0|ada", laptop.do("GET", "/get?k=a").Body.String(), "the laptop is not")
		ok, err = m.Revoke(context.Background(), "ada", handle)
		require.NoError(t, err)
		assert.False(t, ok, "already gone")
	})
}
