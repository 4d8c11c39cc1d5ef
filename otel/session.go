package otel

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/outgrow/outgrow/session"
)

type sessionInstruments struct {
	loads, changes, commits, lost, storeErrors metric.Int64ObservableCounter
}

func (in *sessionInstruments) build(b *builder) {
	in.loads = b.counter("outgrow.session.loads", "{session}",
		"Session lookups of a Manager, by outgrow.session.result: found, or miss (unknown, malformed or expired cookie).")
	in.changes = b.counter("outgrow.session.changes", "{session}",
		"Sessions a Manager created, renewed (new ID) and destroyed, by outgrow.session.change.")
	in.commits = b.counter("outgrow.session.commits", "{write}",
		"Writes of a Manager to its store.")
	in.lost = b.counter("outgrow.session.lost_writes", "{write}",
		"Changes to sessions that expired or vanished during their request, so were not saved.")
	in.storeErrors = b.counter("outgrow.session.store.errors", "{error}",
		"Loads and saves of a Manager that failed.")
}

// ObserveSessions reports the Stats of a Manager, at each collection, with the attribute
// outgrow.session.manager (name): outgrow.session.loads, .changes, .commits, .lost_writes and
// .store.errors. Unregister the result to stop; until then, name cannot be observed again
// ([ErrObserved]).
func (t *Telemetry) ObserveSessions(name string, m *session.Manager) (metric.Registration, error) {
	n := attribute.String("outgrow.session.manager", name)
	with := attributesWith(n)
	result := func(v string) metric.ObserveOption { return with(attribute.String("outgrow.session.result", v)) }
	change := func(v string) metric.ObserveOption { return with(attribute.String("outgrow.session.change", v)) }
	var (
		found, miss                 = result("found"), result("miss")
		created, renewed, destroyed = change("created"), change("renewed"), change("destroyed")
		plain                       = with()
	)
	in := &t.se
	return t.observe([]string{fmt.Sprintf("session manager %q", name)}, func(_ context.Context, o metric.Observer) error {
		s := m.Stats()
		o.ObserveInt64(in.loads, int64(s.Loads), found)
		o.ObserveInt64(in.loads, int64(s.Misses), miss)
		o.ObserveInt64(in.changes, int64(s.Created), created)
		o.ObserveInt64(in.changes, int64(s.Renewed), renewed)
		o.ObserveInt64(in.changes, int64(s.Destroyed), destroyed)
		o.ObserveInt64(in.commits, int64(s.Commits), plain)
		o.ObserveInt64(in.lost, int64(s.Lost), plain)
		o.ObserveInt64(in.storeErrors, int64(s.StoreErrors), plain)
		return nil
	}, in.loads, in.changes, in.commits, in.lost, in.storeErrors)
}

// SessionHooks returns a Manager's Hooks, calling next's too: a failed load or save adds the
// span event outgrow.session.store_error (error.type: timeout, canceled or unavailable) to
// the request's span.
func (t *Telemetry) SessionHooks(next session.Hooks) session.Hooks {
	h := next
	h.OnStoreError = func(ctx context.Context, err error) {
		if span := recordingSpan(ctx); span != nil {
			span.AddEvent("outgrow.session.store_error", trace.WithAttributes(attribute.String("error.type", errorType(err))))
		}
		if next.OnStoreError != nil {
			next.OnStoreError(ctx, err)
		}
	}
	return h
}
