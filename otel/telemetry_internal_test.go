package otel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/outgrow/outgrow/breaker"
)

// TestErrorType: error.type says a store error's kind, whoever timed out, and never its
// message.
func TestErrorType(t *testing.T) {
	unavailable := errors.New("ratelimit: store unavailable")
	ioTimeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{context.DeadlineExceeded, "timeout"},
		{fmt.Errorf("%w: %w", unavailable, context.DeadlineExceeded), "timeout"}, // the store's Timeout
		{fmt.Errorf("%w: %w", unavailable, ioTimeout), "timeout"},                // go-redis's ReadTimeout
		{context.Canceled, "canceled"},
		{fmt.Errorf("%w: READONLY You can't write against a read only replica", unavailable), "unavailable"},
		{fmt.Errorf("%w: %w", unavailable, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), "unavailable"},
	} {
		assert.Equal(t, c.want, errorType(c.err), "%v", c.err)
	}
}

// TestCachedSetsBounded: the attribute sets kept for breaker names stop growing at
// maxCachedSets (a Registry's keys may come from outside), and names past the bound are still
// recorded, with their own attributes.
func TestCachedSetsBounded(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader),
		sdkmetric.WithCardinalityLimit(maxCachedSets*4))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	tel, err := New(Config{MeterProvider: mp})
	require.NoError(t, err)
	hooks := tel.BreakerHooks(breaker.Hooks{})
	names := maxCachedSets + 10
	for i := range names {
		hooks.OnOutcome(context.Background(), fmt.Sprint("host-", i), breaker.OutcomeSuccess, time.Millisecond, true)
	}
	assert.EqualValues(t, maxCachedSets, tel.cached.Load())
	hooks.OnStateChange(context.Background(), "late", breaker.StateClosed, breaker.StateOpen, breaker.Stats{})
	assert.EqualValues(t, maxCachedSets, tel.cached.Load())

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(context.Background(), &rm))
	seen := map[string]bool{}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if m.Name != "outgrow.breaker.call.duration" {
			continue
		}
		for _, p := range m.Data.(metricdata.Histogram[float64]).DataPoints {
			name, _ := p.Attributes.Value(AttrBreaker)
			outcome, _ := p.Attributes.Value(AttrOutcome)
			assert.Equal(t, "success", outcome.AsString())
			seen[name.AsString()] = true
		}
	}
	assert.Len(t, seen, names)
	assert.True(t, seen[fmt.Sprint("host-", names-1)])
}
