package otel_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/outgrow/outgrow/breaker"
	"github.com/outgrow/outgrow/cache"
	"github.com/outgrow/outgrow/health"
	outgrowotel "github.com/outgrow/outgrow/otel"
	"github.com/outgrow/outgrow/ratelimit"
	"github.com/outgrow/outgrow/session"
)

// TestObserveTwice: a registration's series have one source. Observing a component again, or
// another of one kind under the same name, fails with ErrObserved (else counters would be
// summed: one decision counted twice); after Unregister (which may be called twice) the name
// is free again.
func TestObserveTwice(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	store, err := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
	require.NoError(t, err)
	newLimiter := func(name string) *ratelimit.Limiter {
		l, err := ratelimit.New(store, ratelimit.PerMinute(100), ratelimit.Config{Name: name})
		require.NoError(t, err)
		return l
	}
	api, login := newLimiter("api"), newLimiter("login")
	reg, err := h.tel.ObserveLimiters(api)
	require.NoError(t, err)
	_, err = h.tel.ObserveLimiters(api)
	require.ErrorIs(t, err, outgrowotel.ErrObserved)
	assert.Contains(t, err.Error(), `"api"`, "the error names what is observed already")
	_, err = h.tel.ObserveLimiters(login, newLimiter("api"))
	require.ErrorIs(t, err, outgrowotel.ErrObserved, "another limiter of the same name")
	_, err = h.tel.ObserveLimiters(login, login)
	require.ErrorIs(t, err, outgrowotel.ErrObserved, "twice in one call")

	_, _ = api.Allow(ctx, "k")
	ms := h.collect(t)
	assert.Equal(t, 1.0, value(t, ms, "outgrow.ratelimit.decisions", "outgrow.ratelimit.policy", "api", "outgrow.ratelimit.decision", "allowed"),
		"one decision, counted once")
	seen := false
	for _, p := range points(t, ms["outgrow.ratelimit.decisions"]) {
		seen = seen || p.attrs["outgrow.ratelimit.policy"] == "login"
	}
	assert.False(t, seen, "a refused registration registers nothing, login included")

	require.NoError(t, reg.Unregister())
	require.NoError(t, reg.Unregister(), "a second Unregister does nothing")
	reg, err = h.tel.ObserveLimiters(api, login)
	require.NoError(t, err, "unregistered, the name is free")
	assert.Equal(t, 1.0, value(t, h.collect(t), "outgrow.ratelimit.decisions", "outgrow.ratelimit.policy", "api", "outgrow.ratelimit.decision", "allowed"))
	require.NoError(t, reg.Unregister())

	// Breakers without a Name would share one series.
	b1, err := breaker.New(breaker.Config{Logger: quiet})
	require.NoError(t, err)
	b2, err := breaker.New(breaker.Config{Logger: quiet})
	require.NoError(t, err)
	_, err = h.tel.ObserveBreakers(b1, b2)
	require.ErrorIs(t, err, outgrowotel.ErrObserved)

	// One health Checker at a time: its series name no Checker.
	c1, err := health.New(health.Config{Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c1.Close() })
	c2, err := health.New(health.Config{Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c2.Close() })
	hreg, err := h.tel.ObserveHealth(c1)
	require.NoError(t, err)
	_, err = h.tel.ObserveHealth(c2)
	require.ErrorIs(t, err, outgrowotel.ErrObserved)
	require.NoError(t, hreg.Unregister())
	hreg, err = h.tel.ObserveHealth(c2)
	require.NoError(t, err)
	require.NoError(t, hreg.Unregister())

	// Names are per kind: a cache, a cache store, a session manager and a breaker store may
	// share one.
	cstore, err := cache.NewMemoryStore(cache.MemoryConfig{})
	require.NoError(t, err)
	c, err := cache.New[string](cstore, cache.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	bstore, err := breaker.NewMemoryStore(breaker.MemoryConfig{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = bstore.Close() })
	sstore, err := session.NewMemoryStore(session.MemoryConfig{})
	require.NoError(t, err)
	sm, err := session.New(sstore, session.Config{})
	require.NoError(t, err)
	for _, observe := range []func() (any, error){
		func() (any, error) { return h.tel.ObserveCache("main", c) },
		func() (any, error) { return h.tel.ObserveSessions("main", sm) },
		func() (any, error) { return h.tel.ObserveBreakerStore("main", bstore) },
	} {
		_, err := observe()
		require.NoError(t, err)
		_, err = observe()
		require.ErrorIs(t, err, outgrowotel.ErrObserved)
	}
}

// TestSharedMeterProvider: two Telemetry values over one MeterProvider share its instruments:
// both sets of hooks record into them, and each observes its own components.
func TestSharedMeterProvider(t *testing.T) {
	h := newHarness(t)
	other, err := outgrowotel.New(outgrowotel.Config{MeterProvider: h.mp, TracerProvider: h.tp})
	require.NoError(t, err)
	store, err := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
	require.NoError(t, err)
	var limiters []*ratelimit.Limiter
	for i, tel := range []*outgrowotel.Telemetry{h.tel, other} {
		l, err := ratelimit.New(store, ratelimit.PerMinute(100), ratelimit.Config{Name: fmt.Sprint("p", i)})
		require.NoError(t, err)
		_, err = tel.ObserveLimiters(l)
		require.NoError(t, err)
		limiters = append(limiters, l)
		b, err := breaker.New(breaker.Config{Name: fmt.Sprint("b", i), Logger: quiet, Hooks: tel.BreakerHooks(breaker.Hooks{})})
		require.NoError(t, err)
		require.NoError(t, b.Do(context.Background(), func(context.Context) error { return nil }))
	}
	_, _ = limiters[1].Allow(context.Background(), "k")
	ms := h.collect(t)
	for i := range 2 {
		assert.Equal(t, float64(i), value(t, ms, "outgrow.ratelimit.decisions", "outgrow.ratelimit.policy", fmt.Sprint("p", i), "outgrow.ratelimit.decision", "allowed"))
		assert.Equal(t, 1.0, value(t, ms, "outgrow.breaker.call.duration", "outgrow.breaker.name", fmt.Sprint("b", i), "outgrow.breaker.outcome", "success"))
	}
}

// TestNoopProviders: over no-op providers every hook and Observe method works and records
// nothing, and ObserveHealth accepts a Checker without checks.
func TestNoopProviders(t *testing.T) {
	tel, err := outgrowotel.New(outgrowotel.Config{MeterProvider: noop.NewMeterProvider(), TracerProvider: tracenoop.NewTracerProvider()})
	require.NoError(t, err)
	ctx := context.Background()
	b, err := breaker.New(breaker.Config{Name: "x", Failures: 1, OpenDuration: time.Hour, Logger: quiet, Hooks: tel.BreakerHooks(breaker.Hooks{})})
	require.NoError(t, err)
	reg, err := tel.ObserveBreakers(b)
	require.NoError(t, err)
	_ = b.Do(ctx, func(context.Context) error { return errors.New("down") })
	require.ErrorIs(t, b.Do(ctx, func(context.Context) error { return nil }), breaker.ErrOpen)
	require.NoError(t, reg.Unregister())
	require.NoError(t, reg.Unregister())

	cstore, err := cache.NewMemoryStore(cache.MemoryConfig{})
	require.NoError(t, err)
	c, err := cache.New[string](cstore, cache.Config{Hooks: tel.CacheHooks("c", cache.Hooks{})})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	v, err := c.GetOrLoad(ctx, "k", func(context.Context, string) (string, error) { return "v", nil })
	require.NoError(t, err)
	assert.Equal(t, "v", v)

	hc, err := health.New(health.Config{Logger: quiet, Hooks: tel.HealthHooks(health.Hooks{})})
	require.NoError(t, err)
	t.Cleanup(func() { _ = hc.Close() })
	_, err = tel.ObserveHealth(hc)
	require.NoError(t, err)
}

// TestHealthWithoutChecks: a Checker without checks reports its status, and no check state.
func TestHealthWithoutChecks(t *testing.T) {
	h := newHarness(t)
	hc, err := health.New(health.Config{Logger: quiet, Hooks: h.tel.HealthHooks(health.Hooks{})})
	require.NoError(t, err)
	t.Cleanup(func() { _ = hc.Close() })
	reg, err := h.tel.ObserveHealth(hc)
	require.NoError(t, err)
	t.Cleanup(func() { _ = reg.Unregister() })
	_, err = hc.Refresh(context.Background())
	require.NoError(t, err)
	ms := h.collect(t)
	assert.Equal(t, 1.0, value(t, ms, "outgrow.health.status", "outgrow.health.status", "pass"))
	assert.Equal(t, 0.0, value(t, ms, "outgrow.health.status", "outgrow.health.status", "fail"))
	assert.NotContains(t, ms, "outgrow.health.check.state")
	assert.NotContains(t, ms, "outgrow.health.check.duration")
}

// TestBreakerRegistry: one BreakerHooks serves a Registry's breakers, each recorded under its
// key, transitions included, on the request's span too.
func TestBreakerRegistry(t *testing.T) {
	h := newHarness(t)
	reg, err := breaker.NewRegistry(breaker.RegistryConfig{MaxKeys: 2, Config: breaker.Config{Failures: 1, OpenDuration: time.Hour,
		Logger: quiet, Hooks: h.tel.BreakerHooks(breaker.Hooks{})}})
	require.NoError(t, err)
	ctx, span := h.request(context.Background())
	down := errors.New("down")
	for _, host := range []string{"a.example", "b.example", "c.example", "a.example"} {
		_ = reg.Get(host).Do(ctx, func(context.Context) error { return down })
	}
	span.End()
	ms := h.collect(t)
	// a.example was dropped for c.example (MaxKeys 2), so its second call met a new breaker,
	// which opened too: the series of a key outlive its breakers.
	for host, opens := range map[string]float64{"a.example": 2, "b.example": 1, "c.example": 1} {
		assert.Equal(t, opens, value(t, ms, "outgrow.breaker.transitions", "outgrow.breaker.name", host, "outgrow.breaker.state", "open"), host)
		assert.Equal(t, opens, value(t, ms, "outgrow.breaker.call.duration", "outgrow.breaker.name", host, "outgrow.breaker.outcome", "failure"), host)
	}
	var transitions int
	for _, e := range h.events(t, "request") {
		if e.attrs["event"] == "outgrow.breaker.transition" {
			transitions++
		}
	}
	assert.Equal(t, 4, transitions)
}
