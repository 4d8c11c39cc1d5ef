package otel

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/outgrow/outgrow/ratelimit"
)

// The attribute keys of ratelimit's measurements.
const (
	// AttrPolicy is a Limiter's name ([ratelimit.Limiter.Name]).
	AttrPolicy = attribute.Key("outgrow.ratelimit.policy")
	// AttrDecision is "allowed" or "limited".
	AttrDecision = attribute.Key("outgrow.ratelimit.decision")
)

type limiterInstruments struct {
	decisions, denyCache, fallback, storeErrors metric.Int64ObservableCounter
	degraded                                    metric.Int64ObservableGauge
}

func (in *limiterInstruments) build(b *builder) {
	in.decisions = b.counter("outgrow.ratelimit.decisions", "{decision}",
		"Decisions of a Limiter, by policy and decision (allowed or limited), whoever made them.")
	in.denyCache = b.counter("outgrow.ratelimit.deny_cache.hits", "{decision}",
		"Denials made by a Limiter's deny cache without calling its store.")
	in.fallback = b.counter("outgrow.ratelimit.fallback.decisions", "{decision}",
		"Decisions made by a Limiter's failure policy while its store was unavailable.")
	in.storeErrors = b.counter("outgrow.ratelimit.store.errors", "{error}",
		"Store calls of a Limiter that failed, including those refused at once during an outage.")
	in.degraded = b.gauge("outgrow.ratelimit.degraded", "{state}",
		"1 while a Limiter applies its failure policy, else 0.")
}

func (in *limiterInstruments) all() []metric.Observable {
	return []metric.Observable{in.decisions, in.denyCache, in.fallback, in.storeErrors, in.degraded}
}

// ObserveLimiters reports the Stats of limiters, at each collection, as the instruments
// outgrow.ratelimit.decisions, .deny_cache.hits, .fallback.decisions, .store.errors and
// .degraded, with the attribute outgrow.ratelimit.policy (the Limiter's name). Unregister the
// result to stop.
func (t *Telemetry) ObserveLimiters(limiters ...*ratelimit.Limiter) (metric.Registration, error) {
	type observed struct {
		l                        *ratelimit.Limiter
		policy, allowed, limited metric.ObserveOption
	}
	obs := make([]observed, len(limiters))
	ids := make([]string, len(limiters))
	for i, l := range limiters {
		ids[i] = fmt.Sprintf("limiter %q", l.Name())
		p := AttrPolicy.String(l.Name())
		obs[i] = observed{l: l,
			policy:  metric.WithAttributeSet(attribute.NewSet(p)),
			allowed: metric.WithAttributeSet(attribute.NewSet(p, AttrDecision.String("allowed"))),
			limited: metric.WithAttributeSet(attribute.NewSet(p, AttrDecision.String("limited"))),
		}
	}
	in := &t.rl
	return t.observe(ids, func(_ context.Context, o metric.Observer) error {
		for _, l := range obs {
			s := l.l.Stats()
			o.ObserveInt64(in.decisions, int64(s.Allowed), l.allowed)
			o.ObserveInt64(in.decisions, int64(s.Limited), l.limited)
			o.ObserveInt64(in.denyCache, int64(s.DenyCacheHits), l.policy)
			o.ObserveInt64(in.fallback, int64(s.Fallback), l.policy)
			o.ObserveInt64(in.storeErrors, int64(s.StoreErrors), l.policy)
			o.ObserveInt64(in.degraded, one(s.Degraded), l.policy)
		}
		return nil
	}, in.all()...)
}

// LimiterHooks returns the Hooks of the Limiter named policy, calling next's too: each decision
// adds the span event outgrow.ratelimit.decision to the span of the call's context (policy,
// decision, and retry_after in seconds for a denial), and entering or leaving the failure
// policy adds outgrow.ratelimit.fallback (entered and, on entering, error.type). Nothing is
// built unless the span records. Decisions are seen through Hooks.OnDecision, which carries no
// key: a Limiter with SecretKeys computes no digest for them.
func (t *Telemetry) LimiterHooks(policy string, next ratelimit.Hooks) ratelimit.Hooks {
	p := AttrPolicy.String(policy)
	h := next
	h.OnDecision = func(ctx context.Context, r ratelimit.Result) {
		if span := recordingSpan(ctx); span != nil {
			if r.Allowed {
				span.AddEvent("outgrow.ratelimit.decision", trace.WithAttributes(p, AttrDecision.String("allowed")))
			} else {
				span.AddEvent("outgrow.ratelimit.decision", trace.WithAttributes(p, AttrDecision.String("limited"),
					attribute.Float64("outgrow.ratelimit.retry_after", r.RetryAfter.Seconds())))
			}
		}
		if next.OnDecision != nil {
			next.OnDecision(ctx, r)
		}
	}
	h.OnFallback = func(ctx context.Context, entered bool, err error) {
		if span := recordingSpan(ctx); span != nil {
			kv := []attribute.KeyValue{p, attribute.Bool("outgrow.ratelimit.entered", entered)}
			if err != nil {
				kv = append(kv, attribute.String("error.type", errorType(err)))
			}
			span.AddEvent("outgrow.ratelimit.fallback", trace.WithAttributes(kv...))
		}
		if next.OnFallback != nil {
			next.OnFallback(ctx, entered, err)
		}
	}
	return h
}
