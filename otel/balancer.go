package otel

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/outgrow/outgrow/balancer"
)

// AttrBalancer names a balancer: the name given to ObserveBalancer and BalancerHooks.
const AttrBalancer = attribute.Key("outgrow.balancer.name")

// balancerStates are the values of outgrow.balancer.state.
var balancerStates = [...]balancer.State{balancer.Up, balancer.Down, balancer.Ejected, balancer.Draining}

type balancerInstruments struct {
	changes              metric.Int64Counter
	backends             metric.Int64ObservableUpDownCounter
	inFlight             metric.Int64ObservableUpDownCounter
	ejections, noBackend metric.Int64ObservableCounter
	retries, badGateway  metric.Int64ObservableCounter
}

func (in *balancerInstruments) build(b *builder) {
	in.changes = b.events("outgrow.balancer.state_changes", "{change}",
		"Changes of a backend's state, by balancer and the state entered (up, down, ejected, draining).")
	in.backends = b.upDown("outgrow.balancer.backends", "{backend}",
		"Backends of a balancer's set, by state (up, down, ejected, draining).")
	in.inFlight = b.upDown("outgrow.balancer.in_flight", "{request}",
		"Requests in flight on a balancer's backends (a Proxy's, and LeastConnections' and PowerOfTwo's picks).")
	in.ejections = b.counter("outgrow.balancer.ejections", "{ejection}",
		"Backends ejected by their failed requests.")
	in.noBackend = b.counter("outgrow.balancer.no_backend", "{pick}",
		"Picks that found no backend to pick.")
	in.retries = b.counter("outgrow.balancer.proxy.retries", "{attempt}",
		"Attempts of a Proxy on another backend after a failed one.")
	in.badGateway = b.counter("outgrow.balancer.proxy.errors", "{request}",
		"Requests a Proxy answered itself: 502 (no backend answered) and 503 (none to pick), by status.")
}

// ObserveBalancer registers b's Stats (backends by state, requests in flight, ejections, picks
// without a backend) and, when p is not nil, its Proxy's (retries, errors), under name.
// Backends are counted by state, never named: their IDs are addresses.
func (t *Telemetry) ObserveBalancer(name string, b *balancer.Balancer, p *balancer.Proxy) (metric.Registration, error) {
	in := &t.lb
	nameAttr := AttrBalancer.String(name)
	own := metric.WithAttributeSet(attribute.NewSet(nameAttr))
	var states [len(balancerStates)]metric.ObserveOption
	for i, st := range balancerStates {
		states[i] = metric.WithAttributeSet(attribute.NewSet(nameAttr, attribute.String("outgrow.balancer.state", st.String())))
	}
	status := func(code string) metric.ObserveOption {
		return metric.WithAttributeSet(attribute.NewSet(nameAttr, attribute.String("outgrow.balancer.status", code)))
	}
	bad, none := status("502"), status("503")
	instruments := []metric.Observable{in.backends, in.inFlight, in.ejections, in.noBackend}
	if p != nil {
		instruments = append(instruments, in.retries, in.badGateway)
	}
	return t.observe([]string{"balancer " + name}, func(_ context.Context, o metric.Observer) error {
		s := b.Stats()
		var count [len(balancerStates)]int64
		var inFlight int64
		for _, be := range s.Backends {
			inFlight += be.InFlight
			switch {
			case be.Draining:
				count[3]++
			case !be.Up:
				count[1]++
			case be.Ejected:
				count[2]++
			default:
				count[0]++
			}
		}
		for i := range balancerStates {
			o.ObserveInt64(in.backends, count[i], states[i])
		}
		o.ObserveInt64(in.inFlight, inFlight, own)
		o.ObserveInt64(in.ejections, int64(s.Ejections), own)
		o.ObserveInt64(in.noBackend, int64(s.NoBackend), own)
		if p != nil {
			ps := p.Stats()
			o.ObserveInt64(in.retries, int64(ps.Retries), own)
			o.ObserveInt64(in.badGateway, int64(ps.BadGateway), bad)
			o.ObserveInt64(in.badGateway, int64(ps.NoBackend), none)
		}
		return nil
	}, instruments...)
}

// BalancerHooks returns a Balancer's Hooks, calling next's too: each change of a backend's
// state is counted in outgrow.balancer.state_changes by the state entered.
func (t *Telemetry) BalancerHooks(name string, next balancer.Hooks) balancer.Hooks {
	in := &t.lb
	var entered [len(balancerStates)]metric.AddOption
	for i, st := range balancerStates {
		entered[i] = metric.WithAttributeSet(attribute.NewSet(AttrBalancer.String(name),
			attribute.String("outgrow.balancer.state", st.String())))
	}
	h := next
	h.OnStateChange = func(ctx context.Context, id string, from, to balancer.State) {
		if int(to) < len(entered) {
			in.changes.Add(ctx, 1, entered[to])
		}
		if next.OnStateChange != nil {
			next.OnStateChange(ctx, id, from, to)
		}
	}
	return h
}
