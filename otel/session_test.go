package otel_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/session"
)

// TestSessions: loads, changes, commits and store errors of a Manager on Redis are counted, and
// a store error adds an event to the request's span, saying its kind only.
func TestSessions(t *testing.T) {
	h := newHarness(t)
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	store, err := session.NewRedisStore(rdb, session.RedisConfig{Logger: quiet})
	require.NoError(t, err)
	sm, err := session.New(store, session.Config{Logger: quiet, Hooks: h.tel.SessionHooks(session.Hooks{})})
	require.NoError(t, err)
	reg, err := h.tel.ObserveSessions("web", sm)
	require.NoError(t, err)
	t.Cleanup(func() { _ = reg.Unregister() })

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(_ http.ResponseWriter, r *http.Request) {
		require.NoError(t, session.FromContext(r.Context()).Login("ada"))
	})
	mux.HandleFunc("GET /me", func(http.ResponseWriter, *http.Request) {})
	handler := sm.Middleware(mux)
	serve := func(method, path string, cookie *http.Cookie) *http.Cookie {
		ctx, span := h.request(context.Background())
		defer span.End()
		req := httptest.NewRequestWithContext(ctx, method, path, nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if cs := rec.Result().Cookies(); len(cs) > 0 {
			return cs[0]
		}
		return nil
	}
	cookie := serve("POST", "/login", nil)
	require.NotNil(t, cookie)
	serve("GET", "/me", cookie)
	serve("GET", "/me", &http.Cookie{Name: cookie.Name, Value: "forged"})

	ms := h.collect(t)
	web := []string{"outgrow.session.manager", "web"}
	assert.Equal(t, 1.0, value(t, ms, "outgrow.session.loads", append(web, "outgrow.session.result", "found")...))
	assert.Equal(t, 1.0, value(t, ms, "outgrow.session.loads", append(web, "outgrow.session.result", "miss")...))
	assert.Equal(t, 1.0, value(t, ms, "outgrow.session.changes", append(web, "outgrow.session.change", "created")...))
	assert.Equal(t, 1.0, value(t, ms, "outgrow.session.commits", web...))
	assert.Equal(t, 0.0, value(t, ms, "outgrow.session.store.errors", web...))
	assert.Equal(t, 0.0, value(t, ms, "outgrow.session.lost_writes", web...))

	mr.SetError("READONLY You can't write against a read only replica.")
	serve("GET", "/me", cookie)
	assert.Equal(t, 1.0, value(t, h.collect(t), "outgrow.session.store.errors", web...))
	evs := h.events(t, "request")
	require.Len(t, evs, 1)
	assert.Equal(t, map[string]string{"event": "outgrow.session.store_error", "error.type": "unavailable"}, evs[0].attrs)
	for _, v := range evs[0].attrs {
		assert.NotContains(t, v, cookie.Value, "never the session ID")
	}
}
