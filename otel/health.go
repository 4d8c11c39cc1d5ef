package otel

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/outgrow/outgrow/health"
)

// AttrCheck is a health check's name.
const AttrCheck = attribute.Key("outgrow.health.check")

var (
	healthStatuses = []health.Status{health.StatusPass, health.StatusWarn, health.StatusFail}
	checkStates    = [...]health.State{health.StateUnknown, health.StateHealthy, health.StateUnhealthy}
)

type healthInstruments struct {
	duration      metric.Float64Histogram
	status, state metric.Int64ObservableGauge
}

func (in *healthInstruments) build(b *builder) {
	in.duration = b.duration("outgrow.health.check.duration",
		"Duration of the background runs of a health check, by check and outgrow.health.result (pass, fail).")
	in.status = b.gauge("outgrow.health.status", "{state}",
		"1 for a Checker's readiness status (pass, warn, fail), 0 for the others.")
	in.state = b.gauge("outgrow.health.check.state", "{state}",
		"1 for a check's state (unknown, healthy, unhealthy), 0 for the others, by check.")
}

// ObserveHealth reports, at each collection, a Checker's readiness status
// (outgrow.health.status, attribute outgrow.health.status) and each check's state
// (outgrow.health.check.state, attributes outgrow.health.check and outgrow.health.state).
// Reading them calls the Checker's Local checks, as a readiness probe does. The series name no
// Checker, so one Telemetry observes one at a time: Unregister the result to stop; until then,
// observing another fails with [ErrObserved].
func (t *Telemetry) ObserveHealth(c *health.Checker) (metric.Registration, error) {
	statuses := make([]metric.ObserveOption, len(healthStatuses))
	for i, s := range healthStatuses {
		statuses[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("outgrow.health.status", string(s))))
	}
	// A Checker's checks are those given to New, in that order, in every Stats.
	var checks [][len(checkStates)]metric.ObserveOption
	for _, cs := range c.Stats().Checks {
		var states [len(checkStates)]metric.ObserveOption
		for i, st := range checkStates {
			states[i] = metric.WithAttributeSet(attribute.NewSet(AttrCheck.String(cs.Name),
				attribute.String("outgrow.health.state", st.String())))
		}
		checks = append(checks, states)
	}
	in := &t.he
	return t.observe([]string{"health checker"}, func(_ context.Context, o metric.Observer) error {
		s := c.Stats()
		for i, st := range healthStatuses {
			o.ObserveInt64(in.status, one(s.Status == st), statuses[i])
		}
		for j, cs := range s.Checks[:min(len(s.Checks), len(checks))] {
			for i, st := range checkStates {
				o.ObserveInt64(in.state, one(cs.State == st), checks[j][i])
			}
		}
		return nil
	}, in.status, in.state)
}

// HealthHooks returns a Checker's Hooks, calling next's too: each background run of a check is
// recorded in outgrow.health.check.duration by check and result.
func (t *Telemetry) HealthHooks(next health.Hooks) health.Hooks {
	in := &t.he
	h := next
	h.OnCheckDone = func(ctx context.Context, name string, d time.Duration, err error) {
		r := "pass"
		if err != nil {
			r = "fail"
		}
		in.duration.Record(ctx, d.Seconds(), t.set("health\x00"+name+"\x00"+r, AttrCheck.String(name),
			attribute.String("outgrow.health.result", r)))
		if next.OnCheckDone != nil {
			next.OnCheckDone(ctx, name, d, err)
		}
	}
	return h
}
