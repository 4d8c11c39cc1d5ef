package otel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"

	global "go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/embedded"
	"go.opentelemetry.io/otel/trace"
)

// ErrObserved is wrapped by the error of an Observe method given a component whose series a
// registration of the same Telemetry already reports: the same component twice, or two of one
// kind with the same name (two breakers without a Name, two limiters named "login", a second
// health Checker). Their series would merge: counters summed, gauges one or the other. Name
// them apart, or Unregister the first.
var ErrObserved = errors.New("outgrow/otel: already observed")

// AttrStore names a store observed on its own ([Telemetry.ObserveBreakerStore],
// [Telemetry.ObserveCacheStore]): the name given there.
const AttrStore = attribute.Key("outgrow.store")

// ScopeName is the instrumentation scope of every meter and tracer the package creates.
const ScopeName = "github.com/outgrow/outgrow/otel"

// Config says where a [Telemetry] sends what it measures. The zero value uses the global
// providers of go.opentelemetry.io/otel.
type Config struct {
	// MeterProvider creates the meter of every instrument. Default: otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// TracerProvider creates the tracer of span events and spans. Default:
	// otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
}

// Telemetry instruments outgrow's components: its methods return the Hooks to set in a
// component's Config (histograms, transitions, span events and spans, from the context of
// the call) and register the component's Stats as observable instruments (counters and
// gauges, read at collection time, so they cost nothing per call).
//
// The zero value is not usable; create one with [New]. A Telemetry is safe for concurrent use
// and has no goroutine. Its instruments are created once, in New, and shared by the
// components it instruments. Create one per MeterProvider and share it: two over one provider
// share its instruments, so a component both observe is counted twice.
type Telemetry struct {
	meter    metric.Meter
	tracer   trace.Tracer
	attrs    sync.Map     // string -> metric.MeasurementOption: attributes of rare hook measurements
	outcomes sync.Map     // breaker name -> *[3][]metric.RecordOption, by outcome
	queues   sync.Map     // queue name -> *queueSets
	cached   atomic.Int64 // entries of attrs, outcomes and queues, at most maxCachedSets

	mu       sync.Mutex
	observed map[string]bool // the ids of what live registrations report (see observe)

	rl limiterInstruments
	br breakerInstruments
	ca cacheInstruments
	se sessionInstruments
	he healthInstruments
	qu queueInstruments
	lb balancerInstruments
}

// New returns a Telemetry that creates its instruments with cfg's meter provider.
func New(cfg Config) (*Telemetry, error) {
	mp, tp := cfg.MeterProvider, cfg.TracerProvider
	if mp == nil {
		mp = global.GetMeterProvider()
	}
	if tp == nil {
		tp = global.GetTracerProvider()
	}
	t := &Telemetry{meter: mp.Meter(ScopeName), tracer: tp.Tracer(ScopeName), observed: map[string]bool{}}
	b := builder{m: t.meter}
	t.rl.build(&b)
	t.br.build(&b)
	t.ca.build(&b)
	t.se.build(&b)
	t.he.build(&b)
	t.qu.build(&b)
	t.lb.build(&b)
	if b.err != nil {
		return nil, fmt.Errorf("outgrow/otel: creating instruments: %w", b.err)
	}
	return t, nil
}

// builder creates instruments and keeps the first error, so the lists of instruments read as
// tables.
type builder struct {
	m   metric.Meter
	err error
}

func (b *builder) counter(name, unit, desc string) metric.Int64ObservableCounter {
	c, err := b.m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	b.err = errors.Join(b.err, err)
	return c
}

func (b *builder) gauge(name, unit, desc string) metric.Int64ObservableGauge {
	g, err := b.m.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
	b.err = errors.Join(b.err, err)
	return g
}

func (b *builder) floatGauge(name, unit, desc string) metric.Float64ObservableGauge {
	g, err := b.m.Float64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
	b.err = errors.Join(b.err, err)
	return g
}

func (b *builder) upDown(name, unit, desc string) metric.Int64ObservableUpDownCounter {
	g, err := b.m.Int64ObservableUpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	b.err = errors.Join(b.err, err)
	return g
}

func (b *builder) events(name, unit, desc string) metric.Int64Counter {
	c, err := b.m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
	b.err = errors.Join(b.err, err)
	return c
}

// durationBuckets are the boundaries (seconds) of every duration histogram: from half a
// millisecond (an in-process call, a Redis round trip) to ten seconds (a health check timeout).
var durationBuckets = []float64{
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10,
}

func (b *builder) duration(name, desc string) metric.Float64Histogram {
	h, err := b.m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	b.err = errors.Join(b.err, err)
	return h
}

// maxCachedSets bounds the attribute sets kept for names known only at call time: a
// Registry's breakers are named by keys that may come from outside (hosts, tenants), and the
// Registry drops idle ones, but a cache of their sets would keep every name ever seen. Past
// the bound, sets are built per call (which allocates); the SDK's cardinality limit (2000
// series per instrument by default) folds such series into one overflow series anyway.
const maxCachedSets = 4096

// cache stores v under key in m unless maxCachedSets entries are stored already, and returns
// what m holds under key, or v.
func (t *Telemetry) cache(m *sync.Map, key string, v any) any {
	if t.cached.Load() >= maxCachedSets {
		return v
	}
	got, loaded := m.LoadOrStore(key, v)
	if !loaded {
		t.cached.Add(1)
	}
	return got
}

// set returns the attribute set named by id, building it once: hooks measure with sets made
// from names known only at call time (a breaker's, a check's), and must not allocate.
func (t *Telemetry) set(id string, kv ...attribute.KeyValue) metric.MeasurementOption {
	if s, ok := t.attrs.Load(id); ok {
		return s.(metric.MeasurementOption)
	}
	return t.cache(&t.attrs, id, metric.WithAttributeSet(attribute.NewSet(kv...))).(metric.MeasurementOption)
}

// recordingSpan returns the span of ctx if it records, else nil: span events and their
// attributes are built only then, so that hooks cost no allocation in untraced requests.
func recordingSpan(ctx context.Context) trace.Span {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		return span
	}
	return nil
}

// errorType classifies a store error for attributes without saying more than its kind: error
// messages may name keys. A timeout is the store's (its Timeout, which wraps
// context.DeadlineExceeded), the caller's deadline, or the client's own (go-redis's
// ReadTimeout, DialTimeout: a net.Error that says so).
func errorType(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "unavailable"
}

// observe registers fn as the callback of instruments, reporting the series of the components
// ids name ("<kind> <name>"): none may be reported by a live registration already, nor appear
// twice in ids (ErrObserved).
func (t *Telemetry) observe(ids []string, fn metric.Callback, instruments ...metric.Observable) (metric.Registration, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, id := range ids {
		if t.observed[id] || slices.Contains(ids[:i], id) {
			return nil, fmt.Errorf("%w: %s", ErrObserved, id)
		}
	}
	reg, err := t.meter.RegisterCallback(fn, instruments...)
	if err != nil {
		return nil, fmt.Errorf("outgrow/otel: registering a callback: %w", err)
	}
	for _, id := range ids {
		t.observed[id] = true
	}
	return &registration{t: t, reg: reg, ids: ids}, nil
}

// registration is what the Observe methods return: Unregister frees the ids of its series for
// another registration, once the callback is gone.
type registration struct {
	embedded.Registration
	t    *Telemetry
	reg  metric.Registration
	ids  []string
	done bool // guarded by t.mu
}

// Unregister stops reporting the registration's series. Calling it again does nothing.
func (r *registration) Unregister() error {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	if r.done {
		return nil
	}
	if err := r.reg.Unregister(); err != nil {
		return err
	}
	r.done = true
	for _, id := range r.ids {
		delete(r.t.observed, id)
	}
	return nil
}

// attributesWith returns a builder of the attributes of one component's series: those given,
// and always name.
func attributesWith(name attribute.KeyValue) func(kv ...attribute.KeyValue) metric.ObserveOption {
	return func(kv ...attribute.KeyValue) metric.ObserveOption {
		return metric.WithAttributeSet(attribute.NewSet(append(kv, name)...))
	}
}

// one returns 1 when b is true: the value of a state gauge's series.
func one(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
