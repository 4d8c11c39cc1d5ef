package balancer

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// healthServer serves /api/health with the status it is set to, and counts the probes.
type healthServer struct {
	*httptest.Server
	status atomic.Int32
	probes atomic.Int32
	hang   atomic.Bool
}

func newHealthServer(t *testing.T) *healthServer {
	t.Helper()
	h := &healthServer{}
	h.status.Store(http.StatusOK)
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/health" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		h.probes.Add(1)
		if h.hang.Load() {
			<-r.Context().Done()
			return
		}
		w.WriteHeader(int(h.status.Load()))
	}))
	t.Cleanup(h.Close)
	return h
}

func isUp(b *Balancer, id string) bool {
	for _, s := range b.Stats().Backends {
		if s.ID == id {
			return s.Up
		}
	}
	return false
}

// runChecker runs c until the test ends.
func runChecker(t *testing.T, c *Checker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { assert.NoError(t, c.Run(ctx)) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// TestCheckerThresholds: a backend goes down after 3 failed probes in a row, never after one
// or two, and comes back after 2 successful ones (rounds of probes run one by one).
func TestCheckerThresholds(t *testing.T) {
	h, other := newHealthServer(t), newHealthServer(t)
	b := newBalancer(t, Config{}, Backend{ID: h.URL}, Backend{ID: other.URL})
	c, err := NewChecker(b, CheckConfig{})
	require.NoError(t, err)
	t.Cleanup(c.owned.CloseIdleConnections)
	ctx := context.Background()
	rounds := func(n int) {
		for range n {
			c.round(ctx)
		}
	}

	rounds(1)
	h.status.Store(http.StatusInternalServerError)
	rounds(2)
	assert.True(t, isUp(b, h.URL), "two failed probes do not take it down")
	h.status.Store(http.StatusOK)
	rounds(1)
	h.status.Store(http.StatusServiceUnavailable)
	rounds(2)
	assert.True(t, isUp(b, h.URL), "a success in between: two failures again")
	rounds(1)
	assert.False(t, isUp(b, h.URL), "the third failure in a row")
	got := picks(t, b, 10)
	assert.Equal(t, 10, got[other.URL], "a down backend gets no picks")

	h.status.Store(http.StatusOK)
	rounds(1)
	assert.False(t, isUp(b, h.URL), "one success does not bring it back")
	rounds(1)
	assert.True(t, isUp(b, h.URL), "two do")
	assert.True(t, isUp(b, other.URL))
	assert.Equal(t, CheckerStats{Probes: 18, Failed: 5}, c.Stats())

	// A backend that starts failing at once goes down after 3 probes too, not 1.
	fresh := newHealthServer(t)
	fresh.status.Store(http.StatusBadGateway)
	require.NoError(t, b.Update(Backend{ID: h.URL}, Backend{ID: fresh.URL}))
	rounds(2)
	assert.True(t, isUp(b, fresh.URL))
	rounds(1)
	assert.False(t, isUp(b, fresh.URL))
}

// TestCheckerRuns: Run probes every backend every Interval until ctx ends.
func TestCheckerRuns(t *testing.T) {
	h := newHealthServer(t)
	b := newBalancer(t, Config{}, Backend{ID: h.URL})
	c, err := NewChecker(b, CheckConfig{Interval: 10 * time.Millisecond, Timeout: 5 * time.Millisecond})
	require.NoError(t, err)
	runChecker(t, c)
	require.Eventually(t, func() bool { return h.probes.Load() >= 5 }, 5*time.Second, time.Millisecond)
	assert.ErrorIs(t, c.Run(context.Background()), ErrInvalidConfig, "one Run at a time")
}

// TestCheckerTimeout: a health endpoint that does not answer within Timeout fails its probes.
func TestCheckerTimeout(t *testing.T) {
	h := newHealthServer(t)
	h.hang.Store(true)
	b := newBalancer(t, Config{}, Backend{ID: h.URL})
	c, err := NewChecker(b, CheckConfig{Interval: 20 * time.Millisecond, Timeout: 10 * time.Millisecond, UnhealthyThreshold: 2})
	require.NoError(t, err)
	runChecker(t, c)
	require.Eventually(t, func() bool { return !isUp(b, h.URL) }, 5*time.Second, time.Millisecond)
	assert.GreaterOrEqual(t, c.Stats().Failed, uint64(2))
}

func TestCheckerConfig(t *testing.T) {
	b := newBalancer(t, Config{}, ids("http://a")...)
	for name, cfg := range map[string]CheckConfig{
		"Interval":           {Interval: -1},
		"UnhealthyThreshold": {UnhealthyThreshold: -1},
		"Path":               {Path: "health"},
		"Timeout":            {Interval: time.Second, Timeout: 2 * time.Second},
	} {
		_, err := NewChecker(b, cfg)
		require.ErrorIs(t, err, ErrInvalidConfig, name)
		assert.Contains(t, err.Error(), name)
	}
	_, err := NewChecker(nil, CheckConfig{})
	assert.ErrorIs(t, err, ErrInvalidConfig)

	c, err := NewChecker(b, CheckConfig{})
	require.NoError(t, err)
	assert.Equal(t, "/api/health", c.cfg.Path)
	assert.Equal(t, 30*time.Second, c.cfg.Interval)
	assert.Equal(t, 5*time.Second, c.cfg.Timeout)
	assert.Equal(t, 2, c.cfg.HealthyThreshold)
	assert.Equal(t, 3, c.cfg.UnhealthyThreshold)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	assert.NoError(t, c.Run(ctx))
}

// TestCheckerOwnsUpDown: a backend that leaves and comes back while failing goes down again,
// a backend set down by hand comes back with its probes, and probes cut short by the end of
// Run count for nothing.
func TestCheckerOwnsUpDown(t *testing.T) {
	h := newHealthServer(t)
	h.status.Store(http.StatusServiceUnavailable)
	b := newBalancer(t, Config{}, Backend{ID: h.URL}, Backend{ID: "http://127.0.0.1:1"})
	c, err := NewChecker(b, CheckConfig{})
	require.NoError(t, err)
	t.Cleanup(c.owned.CloseIdleConnections)
	ctx := context.Background()
	for range 3 {
		c.round(ctx)
	}
	require.False(t, isUp(b, h.URL))
	require.NoError(t, b.Update(Backend{ID: "http://127.0.0.1:1"}))
	require.NoError(t, b.Update(Backend{ID: h.URL}, Backend{ID: "http://127.0.0.1:1"}))
	require.True(t, isUp(b, h.URL), "it comes back up")
	c.round(ctx)
	assert.False(t, isUp(b, h.URL), "its machine still says down")

	h.status.Store(http.StatusOK)
	c.round(ctx)
	c.round(ctx)
	require.True(t, isUp(b, h.URL))
	require.NoError(t, b.SetUp(h.URL, false))
	c.round(ctx)
	assert.True(t, isUp(b, h.URL), "the checker owns up and down")

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	h.status.Store(http.StatusServiceUnavailable)
	for range 5 {
		c.round(cancelled)
	}
	assert.True(t, isUp(b, h.URL), "cancelled probes count for nothing")
}

// TestCheckerShortInterval: an Interval under 5s takes the Timeout down with it.
func TestCheckerShortInterval(t *testing.T) {
	b := newBalancer(t, Config{}, ids("http://a")...)
	c, err := NewChecker(b, CheckConfig{Interval: 2 * time.Second})
	require.NoError(t, err)
	assert.Equal(t, 2*time.Second, c.cfg.Timeout)
}
