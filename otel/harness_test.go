package otel_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	outgrowotel "github.com/outgrow/outgrow/otel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// quiet is the logger of the components under test: their state changes are asserted through
// metrics and spans.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// harness is a Telemetry over in-memory readers: metrics are collected on demand, spans kept
// once ended.
type harness struct {
	tel    *outgrowotel.Telemetry
	mp     *sdkmetric.MeterProvider
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	h.mp = mp
	h.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans))
	t.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = h.tp.Shutdown(context.Background())
	})
	tel, err := outgrowotel.New(outgrowotel.Config{MeterProvider: mp, TracerProvider: h.tp})
	require.NoError(t, err)
	h.tel = tel
	return h
}

// request starts a span as an HTTP server's instrumentation would, for the code under test
// to add to; end it with span.End.
func (h *harness) request(ctx context.Context) (context.Context, trace.Span) {
	return h.tp.Tracer("test").Start(ctx, "request")
}

// collect returns the metrics collected now, by name.
func (h *harness) collect(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, h.reader.Collect(context.Background(), &rm))
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		require.Equal(t, outgrowotel.ScopeName, sm.Scope.Name)
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// point is one data point of a metric: its attributes and value (a sum's or gauge's value,
// a histogram's count).
type point struct {
	attrs map[string]string
	value float64
	sum   float64 // histograms only
}

func points(t *testing.T, m metricdata.Metrics) []point {
	t.Helper()
	var out []point
	add := func(set attribute.Set, v, sum float64) {
		p := point{attrs: map[string]string{}, value: v, sum: sum}
		for _, kv := range set.ToSlice() {
			p.attrs[string(kv.Key)] = kv.Value.Emit()
		}
		out = append(out, p)
	}
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			add(p.Attributes, float64(p.Value), 0)
		}
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			add(p.Attributes, float64(p.Value), 0)
		}
	case metricdata.Gauge[float64]:
		for _, p := range d.DataPoints {
			add(p.Attributes, p.Value, 0)
		}
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			add(p.Attributes, float64(p.Count), p.Sum)
		}
	default:
		t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
	}
	return out
}

// value returns the value of metric name's point with exactly the attributes attrs (pairs of
// key and value), failing the test if there is none.
func value(t *testing.T, ms map[string]metricdata.Metrics, name string, attrs ...string) float64 {
	t.Helper()
	m, ok := ms[name]
	require.True(t, ok, "metric %s not collected", name)
	want := map[string]string{}
	for i := 0; i+1 < len(attrs); i += 2 {
		want[attrs[i]] = attrs[i+1]
	}
	for _, p := range points(t, m) {
		if mapsEqual(p.attrs, want) {
			return p.value
		}
	}
	t.Fatalf("metric %s has no point %v; it has %v", name, want, points(t, m))
	return 0
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// events returns the names of the events of the ended span named name, with their attributes.
func (h *harness) events(t *testing.T, name string) []point {
	t.Helper()
	var out []point
	for _, s := range h.spans.Ended() {
		if s.Name() != name {
			continue
		}
		for _, e := range s.Events() {
			p := point{attrs: map[string]string{"event": e.Name}}
			for _, kv := range e.Attributes {
				p.attrs[string(kv.Key)] = kv.Value.Emit()
			}
			out = append(out, p)
		}
	}
	return out
}
