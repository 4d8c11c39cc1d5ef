package queue

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// get serves one request and decodes its JSON body.
func get(t *testing.T, h http.Handler, method, target string, header http.Header) (int, map[string]any) {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
	assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
	var body map[string]any
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body), w.Body.String())
	return w.Code, body
}

var operator = http.Header{"Authorization": {"Bearer ops"}}

func isOperator(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer ops" }

func TestHandler(t *testing.T) {
	s, q := newMemQueue(t)
	ctx := context.Background()
	_, err := q.Handler(HandlerConfig{})
	require.ErrorIs(t, err, ErrInvalidConfig, "Authorize is required")
	_, err = q.Handler(HandlerConfig{Authorize: isOperator, DeadLimit: -1})
	require.ErrorIs(t, err, ErrInvalidConfig)

	enqueue(t, q, Job{Queue: "mail", ID: "m1", Payload: []byte("to: ann")}, Job{Queue: "mail", ID: "m2"},
		Job{Queue: "pdf", Delay: time.Hour})
	for _, id := range []string{"d1", "d2", "d3"} {
		enqueue(t, q, Job{Queue: "reports", ID: id, Payload: []byte("secret " + id)})
		c := claimIDs(t, s, "reports", 1)
		ok, err := s.backend().settle(ctx, []op{{kind: opDead, queue: "reports", id: c[0].ID, token: c[0].token, err: "boom " + id}})
		require.NoError(t, err)
		require.True(t, ok[0])
	}
	require.NoError(t, q.Pause(ctx, "pdf"))

	h, err := q.Handler(HandlerConfig{Authorize: isOperator})
	require.NoError(t, err)
	code, body := get(t, h, "GET", "/", nil)
	assert.Equal(t, http.StatusForbidden, code)
	assert.Equal(t, "Forbidden.", body["error"])

	code, body = get(t, h, "GET", "/", operator)
	require.Equal(t, http.StatusOK, code)
	queues := body["queues"].([]any)
	require.Len(t, queues, 3)
	assert.Equal(t, map[string]any{"name": "mail", "due": 2.0, "scheduled": 0.0, "running": 0.0, "dead": 0.0,
		"lag_seconds": queues[0].(map[string]any)["lag_seconds"], "paused": false}, queues[0])
	assert.Equal(t, "pdf", queues[1].(map[string]any)["name"])
	assert.Equal(t, true, queues[1].(map[string]any)["paused"])
	assert.Equal(t, 1.0, queues[1].(map[string]any)["scheduled"])
	assert.Equal(t, 3.0, queues[2].(map[string]any)["dead"])

	code, body = get(t, h, "GET", "/pdf", operator)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, true, body["paused"])

	code, body = get(t, h, "GET", "/reports/dead?limit=2", operator)
	require.Equal(t, http.StatusOK, code)
	jobs := body["jobs"].([]any)
	require.Len(t, jobs, 2, "?limit=2")
	first := jobs[0].(map[string]any)
	assert.Equal(t, "d3", first["id"], "the most recent first")
	assert.Equal(t, "boom d3", first["last_error"])
	assert.Equal(t, 1.0, first["attempts"])
	assert.NotContains(t, first, "payload", "payloads are hidden by default")

	shown, err := q.Handler(HandlerConfig{Authorize: isOperator, ShowPayloads: true, DeadLimit: 1})
	require.NoError(t, err)
	code, body = get(t, shown, "GET", "/reports/dead?limit=50", operator)
	require.Equal(t, http.StatusOK, code)
	jobs = body["jobs"].([]any)
	require.Len(t, jobs, 1, "DeadLimit caps ?limit")
	assert.Equal(t, "c2VjcmV0IGQz", jobs[0].(map[string]any)["payload"], "base64 of the payload")

	for target, want := range map[string]int{
		"/reports/dead?limit=0":  http.StatusBadRequest,
		"/reports/dead?limit=x":  http.StatusBadRequest,
		"/bad%20name":            http.StatusBadRequest,
		"/reports/other":         http.StatusNotFound,
		"/a/b/c":                 http.StatusNotFound,
		"/nothing-enqueued-here": http.StatusOK,
	} {
		code, body = get(t, h, "GET", target, operator)
		assert.Equal(t, want, code, target)
		if want != http.StatusOK {
			assert.NotEmpty(t, body["error"], target)
		}
	}
	code, _ = get(t, h, "POST", "/", operator)
	assert.Equal(t, http.StatusMethodNotAllowed, code)
	code, _ = get(t, h, "DELETE", "/", nil)
	assert.Equal(t, http.StatusForbidden, code, "authorization comes first")
}

// TestHandlerStoreDown: a store that cannot be reached makes 503, without its error.
func TestHandlerStoreDown(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	s, err := NewRedisStore(rdb, RedisConfig{Logger: quiet})
	require.NoError(t, err)
	q := newQueue(t, s)
	h, err := q.Handler(HandlerConfig{Authorize: isOperator})
	require.NoError(t, err)
	for _, target := range []string{"/", "/mail", "/mail/dead"} {
		code, body := get(t, h, "GET", target, operator)
		assert.Equal(t, http.StatusServiceUnavailable, code, target)
		assert.Equal(t, "Service temporarily unavailable.", body["error"], target)
	}
}
