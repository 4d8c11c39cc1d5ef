package otel_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/balancer"
	outgrowotel "github.com/outgrow/outgrow/otel"
)

// TestBalancer: backends counted by state, state changes by the state entered, and a Proxy's
// retries and errors.
func TestBalancer(t *testing.T) {
	h := newHarness(t)
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(ok.Close)
	dead := "http://127.0.0.1:1"
	b, err := balancer.New(balancer.Config{Logger: quiet, WhenNoneUp: balancer.FailClosed, Hooks: h.tel.BalancerHooks("api", balancer.Hooks{})},
		balancer.Backend{ID: ok.URL}, balancer.Backend{ID: dead})
	require.NoError(t, err)
	p, err := balancer.NewProxy(b, balancer.ProxyConfig{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	reg, err := h.tel.ObserveBalancer("api", b, p)
	require.NoError(t, err)
	t.Cleanup(func() { _ = reg.Unregister() })
	_, err = h.tel.ObserveBalancer("api", b, nil)
	assert.ErrorIs(t, err, outgrowotel.ErrObserved)

	for range 4 {
		w := httptest.NewRecorder()
		p.ServeHTTP(w, httptest.NewRequest("GET", "http://example.com/", nil))
		require.Equal(t, http.StatusOK, w.Code)
	}
	require.NoError(t, b.Drain(dead, true))
	require.NoError(t, b.SetUp(ok.URL, false))
	w := httptest.NewRecorder()
	p.ServeHTTP(w, httptest.NewRequest("GET", "http://example.com/", nil))
	require.Equal(t, http.StatusServiceUnavailable, w.Code)

	ms := h.collect(t)
	assert.Equal(t, 1.0, value(t, ms, "outgrow.balancer.backends", "outgrow.balancer.name", "api", "outgrow.balancer.state", "down"))
	assert.Equal(t, 1.0, value(t, ms, "outgrow.balancer.backends", "outgrow.balancer.name", "api", "outgrow.balancer.state", "draining"))
	assert.Equal(t, 0.0, value(t, ms, "outgrow.balancer.backends", "outgrow.balancer.name", "api", "outgrow.balancer.state", "up"))
	assert.Equal(t, 1.0, value(t, ms, "outgrow.balancer.state_changes", "outgrow.balancer.name", "api", "outgrow.balancer.state", "down"))
	assert.Equal(t, 2.0, value(t, ms, "outgrow.balancer.proxy.retries", "outgrow.balancer.name", "api"), "the dead backend's turns")
	assert.Equal(t, 1.0, value(t, ms, "outgrow.balancer.proxy.errors", "outgrow.balancer.name", "api", "outgrow.balancer.status", "503"))
	assert.Equal(t, 0.0, value(t, ms, "outgrow.balancer.in_flight", "outgrow.balancer.name", "api"))
}
