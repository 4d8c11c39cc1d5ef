package otel_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/health"
)

// TestHealth: each background check run is recorded by result, and the status and check state
// gauges follow the Checker.
func TestHealth(t *testing.T) {
	h := newHarness(t)
	var down atomic.Bool
	down.Store(true)
	c, err := health.New(health.Config{Logger: quiet, Hooks: h.tel.HealthHooks(health.Hooks{})},
		health.Check{Name: "db", Func: func(context.Context) error {
			if down.Load() {
				return errors.New("connection refused")
			}
			return nil
		}},
		health.Check{Name: "search", NonCritical: true, Local: true, Func: func(context.Context) error { return nil }})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	reg, err := h.tel.ObserveHealth(c)
	require.NoError(t, err)
	t.Cleanup(func() { _ = reg.Unregister() })

	_, err = c.Refresh(context.Background())
	require.NoError(t, err)
	ms := h.collect(t)
	assert.Equal(t, 1.0, value(t, ms, "outgrow.health.status", "outgrow.health.status", "fail"))
	assert.Equal(t, 0.0, value(t, ms, "outgrow.health.status", "outgrow.health.status", "pass"))
	assert.Equal(t, 1.0, value(t, ms, "outgrow.health.check.state", "outgrow.health.check", "db", "outgrow.health.state", "unhealthy"))
	assert.Equal(t, 1.0, value(t, ms, "outgrow.health.check.state", "outgrow.health.check", "search", "outgrow.health.state", "healthy"))
	failRuns := value(t, ms, "outgrow.health.check.duration", "outgrow.health.check", "db", "outgrow.health.result", "fail")
	assert.GreaterOrEqual(t, failRuns, 1.0)

	down.Store(false)
	for range 2 { // HealthyThreshold
		_, err = c.Refresh(context.Background())
		require.NoError(t, err)
	}
	ms = h.collect(t)
	assert.Equal(t, 1.0, value(t, ms, "outgrow.health.status", "outgrow.health.status", "pass"))
	assert.Equal(t, 1.0, value(t, ms, "outgrow.health.check.state", "outgrow.health.check", "db", "outgrow.health.state", "healthy"))
	assert.GreaterOrEqual(t, value(t, ms, "outgrow.health.check.duration", "outgrow.health.check", "db", "outgrow.health.result", "pass"), 2.0)
	assert.Equal(t, "s", ms["outgrow.health.check.duration"].Unit)
}
