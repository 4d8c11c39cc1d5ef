package otel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/breaker"
)

// TestBreaker: calls are recorded by outcome with their durations, the state gauge follows
// the transitions, which are counted, and rejections are counted and added to the request's
// span.
func TestBreaker(t *testing.T) {
	h := newHarness(t)
	store, err := breaker.NewMemoryStore(breaker.MemoryConfig{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	b, err := breaker.New(breaker.Config{Name: "payments", Failures: 2, OpenDuration: time.Hour, Store: store, Logger: quiet,
		Hooks: h.tel.BreakerHooks(breaker.Hooks{})})
	require.NoError(t, err)
	reg, err := h.tel.ObserveBreakers(b)
	require.NoError(t, err)
	defer func() { require.NoError(t, reg.Unregister()) }()
	sreg, err := h.tel.ObserveBreakerStore("memory", store)
	require.NoError(t, err)
	defer func() { require.NoError(t, sreg.Unregister()) }()

	ms := h.collect(t)
	assert.Equal(t, 1.0, value(t, ms, "outgrow.breaker.state", "outgrow.breaker.name", "payments", "outgrow.breaker.state", "closed"))
	assert.Equal(t, 0.0, value(t, ms, "outgrow.breaker.state", "outgrow.breaker.name", "payments", "outgrow.breaker.state", "open"))

	ctx, span := h.request(context.Background())
	down := errors.New("down")
	require.NoError(t, b.Do(ctx, func(context.Context) error { time.Sleep(2 * time.Millisecond); return nil }))
	for range 2 {
		require.ErrorIs(t, b.Do(ctx, func(context.Context) error { return down }), down)
	}
	for range 3 {
		require.ErrorIs(t, b.Do(ctx, func(context.Context) error { return nil }), breaker.ErrOpen)
	}
	span.End()

	ms = h.collect(t)
	name := []string{"outgrow.breaker.name", "payments"}
	assert.Equal(t, 1.0, value(t, ms, "outgrow.breaker.call.duration", append(name, "outgrow.breaker.outcome", "success")...))
	assert.Equal(t, 2.0, value(t, ms, "outgrow.breaker.call.duration", append(name, "outgrow.breaker.outcome", "failure")...))
	assert.Equal(t, "s", ms["outgrow.breaker.call.duration"].Unit)
	for _, p := range points(t, ms["outgrow.breaker.call.duration"]) {
		if p.attrs["outgrow.breaker.outcome"] == "success" {
			assert.GreaterOrEqual(t, p.sum, 0.002, "the call's duration, in seconds")
			assert.Less(t, p.sum, 1.0)
		}
	}
	assert.Equal(t, 1.0, value(t, ms, "outgrow.breaker.transitions", append(name, "outgrow.breaker.state", "open")...))
	assert.Equal(t, 1.0, value(t, ms, "outgrow.breaker.state", append(name, "outgrow.breaker.state", "open")...))
	assert.Equal(t, 0.0, value(t, ms, "outgrow.breaker.state", append(name, "outgrow.breaker.state", "closed")...))
	assert.Equal(t, 3.0, value(t, ms, "outgrow.breaker.rejections", name...))
	assert.Equal(t, 2.0, value(t, ms, "outgrow.breaker.failures", name...))
	assert.Equal(t, 0.0, value(t, ms, "outgrow.breaker.store.down", "outgrow.store", "memory"))
	value(t, ms, "outgrow.breaker.store.round_trips", "outgrow.store", "memory") // reported (batches are flushed later)

	var got []string
	for _, e := range h.events(t, "request") {
		got = append(got, e.attrs["event"])
		assert.Equal(t, "payments", e.attrs["outgrow.breaker.name"])
	}
	assert.Equal(t, []string{"outgrow.breaker.transition", "outgrow.breaker.rejected", "outgrow.breaker.rejected", "outgrow.breaker.rejected"}, got)
	evs := h.events(t, "request")
	assert.Equal(t, "closed", evs[0].attrs["outgrow.breaker.from"])
	assert.Equal(t, "open", evs[0].attrs["outgrow.breaker.state"])
	assert.NotEmpty(t, evs[1].attrs["outgrow.breaker.retry_after"])
}

// TestBreakerHooksChain: the hooks given to BreakerHooks are still called.
func TestBreakerHooksChain(t *testing.T) {
	h := newHarness(t)
	var outcomes, changes, rejections int
	b, err := breaker.New(breaker.Config{Name: "x", Failures: 1, OpenDuration: time.Hour, Logger: quiet, Hooks: h.tel.BreakerHooks(breaker.Hooks{
		OnOutcome:     func(context.Context, string, breaker.Outcome, time.Duration, bool) { outcomes++ },
		OnStateChange: func(context.Context, string, breaker.State, breaker.State, breaker.Stats) { changes++ },
		OnRejected:    func(context.Context, string, *breaker.OpenError) { rejections++ },
	})})
	require.NoError(t, err)
	_ = b.Do(context.Background(), func(context.Context) error { return errors.New("x") })
	_ = b.Do(context.Background(), func(context.Context) error { return nil })
	assert.Equal(t, []int{1, 1, 1}, []int{outcomes, changes, rejections})
}
