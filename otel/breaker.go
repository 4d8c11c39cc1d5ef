package otel

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/outgrow/outgrow/breaker"
)

// The attribute keys of breaker's measurements.
const (
	// AttrBreaker is a Breaker's name (Config.Name): for a Registry's breakers, the key they
	// were created for (a host), so keep such keys few.
	AttrBreaker = attribute.Key("outgrow.breaker.name")
	// AttrOutcome is a call's outcome: "success", "failure" or "ignored".
	AttrOutcome = attribute.Key("outgrow.breaker.outcome")
	// AttrState is a breaker state: "closed", "open" or "half-open".
	AttrState = attribute.Key("outgrow.breaker.state")
)

var breakerStates = []breaker.State{breaker.StateClosed, breaker.StateOpen, breaker.StateHalfOpen}

type breakerInstruments struct {
	duration    metric.Float64Histogram
	transitions metric.Int64Counter
	state       metric.Int64ObservableGauge
	rejections  metric.Int64ObservableCounter
	failures    metric.Int64ObservableCounter

	storeTrips, storeErrors, storeNotes metric.Int64ObservableCounter
	storeDown                           metric.Int64ObservableGauge
}

func (in *breakerInstruments) build(b *builder) {
	in.duration = b.duration("outgrow.breaker.call.duration",
		"Duration of the calls a Breaker let through, by breaker and outcome; its count is the calls by outcome.")
	in.transitions = b.events("outgrow.breaker.transitions", "{transition}",
		"Transitions of a Breaker, by breaker and the state entered.")
	in.state = b.gauge("outgrow.breaker.state", "{state}",
		"1 for the state a Breaker is in, 0 for the others, by breaker and state.")
	in.rejections = b.counter("outgrow.breaker.rejections", "{call}",
		"Calls a Breaker refused (open, forced open, or half-open with every probe busy).")
	in.failures = b.counter("outgrow.breaker.failures", "{call}",
		"Failures a Breaker counted, in every state.")
	in.storeTrips = b.counter("outgrow.breaker.store.round_trips", "{round_trip}",
		"Round trips of a breaker Store: batches of news, and probe leases and reports.")
	in.storeErrors = b.counter("outgrow.breaker.store.errors", "{error}",
		"Failed round trips of a breaker Store.")
	in.storeNotes = b.counter("outgrow.breaker.store.notifications", "{message}",
		"Transitions of other instances a breaker Store heard of.")
	in.storeDown = b.gauge("outgrow.breaker.store.down", "{state}",
		"1 while a breaker Store is failing and its breakers decide alone, else 0.")
}

// ObserveBreakers reports, at each collection, the state of breakers (outgrow.breaker.state:
// 1 for the current state, 0 for the others), the calls they refused
// (outgrow.breaker.rejections) and the failures they counted (outgrow.breaker.failures), with
// the attribute outgrow.breaker.name. Unregister the result to stop; until then, a breaker of
// the same name cannot be observed again ([ErrObserved]).
func (t *Telemetry) ObserveBreakers(breakers ...*breaker.Breaker) (metric.Registration, error) {
	type observed struct {
		b      *breaker.Breaker
		name   metric.ObserveOption
		states [3]metric.ObserveOption
	}
	obs := make([]observed, len(breakers))
	ids := make([]string, len(breakers))
	for i, b := range breakers {
		ids[i] = fmt.Sprintf("breaker %q", b.Name())
		n := AttrBreaker.String(b.Name())
		obs[i] = observed{b: b, name: metric.WithAttributeSet(attribute.NewSet(n))}
		for j, s := range breakerStates {
			obs[i].states[j] = metric.WithAttributeSet(attribute.NewSet(n, AttrState.String(s.String())))
		}
	}
	in := &t.br
	return t.observe(ids, func(_ context.Context, o metric.Observer) error {
		for _, b := range obs {
			s := b.b.Stats()
			for j, st := range breakerStates {
				o.ObserveInt64(in.state, one(s.State == st), b.states[j])
			}
			o.ObserveInt64(in.rejections, int64(s.Rejected), b.name)
			o.ObserveInt64(in.failures, int64(s.Failures), b.name)
		}
		return nil
	}, in.state, in.rejections, in.failures)
}

// BreakerStore is a breaker Store as [Telemetry.ObserveBreakerStore] reads it:
// *breaker.MemoryStore and *breaker.RedisStore.
type BreakerStore interface {
	Stats() breaker.StoreStats
}

// ObserveBreakerStore reports the Stats of a breaker Store, at each collection, as
// outgrow.breaker.store.round_trips, .errors, .notifications and .down, with the attribute
// outgrow.store (name it, e.g. "redis", to tell stores apart). Unregister the result to stop;
// until then, name cannot be observed again ([ErrObserved]).
func (t *Telemetry) ObserveBreakerStore(name string, s BreakerStore) (metric.Registration, error) {
	opt := metric.WithAttributeSet(attribute.NewSet(AttrStore.String(name)))
	in := &t.br
	return t.observe([]string{fmt.Sprintf("breaker store %q", name)}, func(_ context.Context, o metric.Observer) error {
		st := s.Stats()
		o.ObserveInt64(in.storeTrips, int64(st.Flushes+st.Calls), opt)
		o.ObserveInt64(in.storeErrors, int64(st.Errors), opt)
		o.ObserveInt64(in.storeNotes, int64(st.Notifications), opt)
		o.ObserveInt64(in.storeDown, one(st.Down), opt)
		return nil
	}, in.storeTrips, in.storeErrors, in.storeNotes, in.storeDown)
}

// BreakerHooks returns Hooks for breakers, calling next's too (one value serves every breaker:
// the hooks carry the breaker's name). Each call let through is recorded in
// outgrow.breaker.call.duration by breaker and outcome; each transition counts in
// outgrow.breaker.transitions and adds the span event outgrow.breaker.transition to the span
// of the call that caused it; each refusal adds outgrow.breaker.rejected (with retry_after in
// seconds).
//
// Setting Hooks.OnOutcome makes the breaker read the clock twice per call, to time it.
func (t *Telemetry) BreakerHooks(next breaker.Hooks) breaker.Hooks {
	in := &t.br
	h := next
	h.OnOutcome = func(ctx context.Context, name string, o breaker.Outcome, d time.Duration, counted bool) {
		in.duration.Record(ctx, d.Seconds(), t.outcomeSet(name, o)...)
		if next.OnOutcome != nil {
			next.OnOutcome(ctx, name, o, d, counted)
		}
	}
	h.OnStateChange = func(ctx context.Context, name string, from, to breaker.State, s breaker.Stats) {
		n := AttrBreaker.String(name)
		in.transitions.Add(ctx, 1, t.set("breaker\x00transition\x00"+name+"\x00"+to.String(), n, AttrState.String(to.String())))
		if span := recordingSpan(ctx); span != nil {
			span.AddEvent("outgrow.breaker.transition", trace.WithAttributes(n,
				attribute.String("outgrow.breaker.from", from.String()), AttrState.String(to.String())))
		}
		if next.OnStateChange != nil {
			next.OnStateChange(ctx, name, from, to, s)
		}
	}
	h.OnRejected = func(ctx context.Context, name string, err *breaker.OpenError) {
		if span := recordingSpan(ctx); span != nil {
			span.AddEvent("outgrow.breaker.rejected", trace.WithAttributes(AttrBreaker.String(name),
				attribute.Float64("outgrow.breaker.retry_after", err.RetryAfter().Seconds())))
		}
		if next.OnRejected != nil {
			next.OnRejected(ctx, name, err)
		}
	}
	return h
}

// outcomeSet returns the attributes of a call of breaker name with outcome o, as a slice to
// pass on without allocating: a cache per name keeps the closed path allocation-free.
func (t *Telemetry) outcomeSet(name string, o breaker.Outcome) []metric.RecordOption {
	v, ok := t.outcomes.Load(name)
	if !ok {
		var sets [3][]metric.RecordOption
		for i := range sets {
			sets[i] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(AttrBreaker.String(name),
				AttrOutcome.String(breaker.Outcome(i).String())))}
		}
		v = t.cache(&t.outcomes, name, &sets)
	}
	if sets := v.(*[3][]metric.RecordOption); int(o) < len(sets) {
		return sets[o]
	}
	return []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(AttrBreaker.String(name), AttrOutcome.String(o.String())))}
}
