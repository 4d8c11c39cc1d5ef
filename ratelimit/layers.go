package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Layer is one limit to apply to one request: Limiter's policy for Key, costing N units (1 when
// zero). Limiter and Key are required.
type Layer struct {
	Limiter *Limiter
	Key     string
	N       int
}

// Decision is the outcome of [AllowAll]. The zero value is a denial with no results.
type Decision struct {
	// Allowed reports whether every layer granted its units; if not, none was charged.
	Allowed bool
	// Results holds one Result per layer, in order. A layer's Result says what that layer alone
	// decided: a granted layer of a denied Decision reports its state as it was, uncharged. A
	// layer that was not evaluated (the deny cache refused another layer before any store call,
	// or an error stopped the decision) has Allowed false and Remaining -1, and is not in Denied.
	Results []Result
	// Denied names the policies that denied, in layer order.
	Denied []string
	// Message is the Message of the first denying [Rule], set by [Middleware] for its OnDenied.
	Message string
}

// RetryAfter returns how long a denied request must wait: the longest RetryAfter of the
// policies that denied.
func (d Decision) RetryAfter() time.Duration {
	var wait time.Duration
	for _, r := range d.Results {
		if !r.Allowed {
			wait = max(wait, r.RetryAfter)
		}
	}
	return wait
}

// AllowAll applies several layers to one request, all or nothing: if any layer denies, no layer
// is charged. Layers whose Limiters share a store are decided together, atomically: other
// requests never see units of this one that it does not keep, and a layer is reported denied
// only when its key lacks the units. On a [RedisStore] that is one round trip when the keys are
// on one server or are one key's, and two otherwise (see RedisStore). Layers on
// different stores are decided one store after the other, and the units charged by the earlier
// stores are given back if a later one denies.
//
// Each layer's Limiter applies its own failure policy when its store is unavailable. The error
// is non-nil for invalid layers (ErrInvalidRequest, ErrExceedsBurst), when ctx ends (the
// context's error), and when a FailClosed layer could not be decided (ErrUnavailable); the
// Decision is then a denial. Counters and hooks see each layer once: as allowed when the whole
// decision is, as limited when the layer denied; layers not charged because another denied are
// not counted.
func AllowAll(ctx context.Context, layers ...Layer) (Decision, error) {
	var a allowAll
	err := a.run(ctx, layers)
	return a.decision(), err
}

// run decides the layers: after it, a.out holds each layer's outcome, every one not evaluated
// when it returns an error other than a FailClosed layer's.
func (a *allowAll) run(ctx context.Context, layers []Layer) error {
	if err := a.init(layers); err != nil {
		a.abandon()
		return err
	}
	if a.denyCached(ctx) {
		a.settle(ctx)
		return nil
	}
	for _, u := range a.units() {
		if err := a.decide(ctx, u); err != nil {
			a.giveBack(ctx)
			a.abandon()
			return err
		}
		if !a.granted() {
			a.giveBack(ctx) // the units before u: u denied, and charged nothing
			break
		}
		a.charged++
	}
	a.settle(ctx)
	return a.closedErr
}

// allowAll is one call of AllowAll.
type allowAll struct {
	layers    []Layer
	reqs      []request
	out       []outcome
	byStore   []unit // the layers by store, in order
	charged   int    // byStore[:charged] are decided, and their charges stand
	closedErr error  // a FailClosed layer could not be decided

	// Room for the common decisions, of up to three layers (the article's three rules) on one
	// store, in the one allocation of an allowAll.
	reqBuf   [3]request
	outBuf   [3]outcome
	unitBuf  [1]unit
	layerBuf [1]Layer // for Limiter.AllowN
}

// unit is the layers idx, all on store: one store call.
type unit struct {
	store Store
	idx   []int
}

// init checks the layers and builds their requests.
func (a *allowAll) init(layers []Layer) error {
	a.layers = layers
	if n := len(layers); n <= len(a.reqBuf) {
		a.reqs, a.out = a.reqBuf[:n], a.outBuf[:n]
	} else {
		a.reqs, a.out = make([]request, n), make([]outcome, n)
	}
	if len(layers) == 0 {
		return fmt.Errorf("%w: no layers", ErrInvalidRequest)
	}
	for i, ly := range layers {
		if ly.Limiter == nil {
			return fmt.Errorf("%w: layer %d has no Limiter", ErrInvalidRequest, i)
		}
		a.out[i].Result = notEvaluated(ly.Limiter)
	}
	for i, ly := range layers {
		l, n := ly.Limiter, ly.N
		switch {
		case n == 0:
			n = 1
		case n < 0:
			return fmt.Errorf("%w: layer %d costs %d", ErrInvalidRequest, i, n)
		}
		if ly.Key == "" {
			return fmt.Errorf("%w: empty key (policy %q)", ErrInvalidRequest, l.name)
		}
		if n > l.rule.max {
			return fmt.Errorf("%w: %d units under %v (policy %q)", ErrExceedsBurst, n, l.rule.Limit, l.name)
		}
		a.reqs[i] = l.request(ly.Key, n)
	}
	return nil
}

// denyCached refuses the request without any store call when a layer's key is known to be over
// its limit, reporting every layer the deny caches know.
func (a *allowAll) denyCached(ctx context.Context) bool {
	hit := false
	for i, ly := range a.layers {
		if dc := ly.Limiter.deny; dc != nil {
			if r, ok := dc.lookup(&a.reqs[i]); ok {
				a.out[i].Result, hit = r, true
				ly.Limiter.counter().denyHits.Add(1)
				if h := ly.Limiter.hooks.OnDenyCacheHit; h != nil {
					h(ctx, ly.Limiter.hookKey(ly.Key), r)
				}
			}
		}
	}
	return hit
}

// units groups the layers by store, in order of first appearance.
func (a *allowAll) units() []unit {
	shared := true
	for _, ly := range a.layers[1:] {
		shared = shared && ly.Limiter.store == a.layers[0].Limiter.store
	}
	if shared {
		a.unitBuf[0] = unit{store: a.layers[0].Limiter.store, idx: indexes(len(a.layers))}
		a.byStore = a.unitBuf[:]
		return a.byStore
	}
outer:
	for i, ly := range a.layers {
		for u := range a.byStore {
			if a.byStore[u].store == ly.Limiter.store {
				a.byStore[u].idx = append(a.byStore[u].idx, i)
				continue outer
			}
		}
		a.byStore = append(a.byStore, unit{store: ly.Limiter.store, idx: []int{i}})
	}
	return a.byStore
}

// decide asks u's store, or, when it is unavailable, the failure policies of u's layers.
func (a *allowAll) decide(ctx context.Context, u unit) error {
	reqs, out := a.reqs, a.out
	if len(u.idx) != len(a.layers) {
		reqs, out = make([]request, len(u.idx)), make([]outcome, len(u.idx))
		for j, i := range u.idx {
			reqs[j] = a.reqs[i]
		}
	}
	err := u.store.take(ctx, reqs, out)
	switch {
	case err == nil:
		for _, i := range u.idx {
			a.layers[i].Limiter.storeAnswered(ctx)
		}
	case ctx.Err() != nil:
		return fmt.Errorf("ratelimit: %w", ctx.Err())
	case !errors.Is(err, ErrUnavailable):
		return err
	default:
		a.failover(ctx, u, out, err)
	}
	if len(u.idx) != len(a.layers) {
		for j, i := range u.idx {
			a.out[i] = out[j]
		}
	}
	return nil
}

// failover decides the layers of u, whose store failed with storeErr, by their failure
// policies. A FailClosed layer denies the request, so the FailLocal layers beside it are not
// evaluated; otherwise these are decided together, all or nothing, on the store's fallback,
// with costs capped at their fallback limits.
func (a *allowAll) failover(ctx context.Context, u unit, out []outcome, storeErr error) {
	var local []int // indexes into u.idx
	for j, i := range u.idx {
		l := a.layers[i].Limiter
		l.storeFailed(ctx, storeErr)
		out[j] = outcome{Result: notEvaluated(l), fell: true}
		switch l.policy {
		case FailOpen:
			out[j].Result = Result{Policy: l.name, Allowed: true, Limit: l.rule.Limit, Remaining: -1}
		case FailClosed:
			out[j].Result = Result{Policy: l.name, Limit: l.rule.Limit}
			a.closedErr = fmt.Errorf("ratelimit: policy %q fails closed: %w", l.name, storeErr)
		case FailLocal:
			local = append(local, j)
		}
	}
	if len(local) == 0 || a.closedErr != nil {
		return
	}
	reqs, res := make([]request, len(local)), make([]outcome, len(local))
	for k, j := range local {
		reqs[k] = a.local(u.idx[j])
	}
	_ = u.store.fallback().take(ctx, reqs, res) // never fails
	for k, j := range local {
		out[j] = res[k]
		out[j].fell = true
	}
}

// local is the request of layer i as the fallback store decides it: with the Limiter's
// fallback limit, the cost capped to it.
func (a *allowAll) local(i int) request {
	q, l := a.reqs[i], a.layers[i].Limiter
	q.rule, q.n = &l.fbRule, min(q.n, l.fbRule.max)
	return q
}

// granted reports whether no layer decided so far denied.
func (a *allowAll) granted() bool {
	for _, o := range a.out {
		if !o.Allowed && o.Remaining >= 0 {
			return false
		}
	}
	return true
}

// giveBack returns the units of the charged units. Failures are ignored: the units stay charged,
// which can only refuse a later request early, never grant one too many.
func (a *allowAll) giveBack(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	for _, u := range a.byStore[:a.charged] {
		var refunds []request
		store := u.store
		for _, i := range u.idx {
			q := a.reqs[i]
			if a.out[i].fell {
				if a.layers[i].Limiter.policy != FailLocal {
					continue // nothing was charged
				}
				q, store = a.local(i), store.fallback()
			}
			uncharge(&a.out[i].Result, &q)
			q.n = -q.n
			refunds = append(refunds, q)
		}
		if len(refunds) > 0 {
			_ = store.take(ctx, refunds, make([]outcome, len(refunds)))
		}
	}
	a.charged = 0
}

// uncharge turns the Result of q, granted, into what it reports once its units are given back:
// exact under GCRA; under a strict limit ResetAfter stays as charged, an upper bound.
func uncharge(r *Result, q *request) {
	if !r.Allowed || r.Remaining < 0 {
		return
	}
	r.Remaining += q.n
	if !q.rule.Strict {
		r.ResetAfter = max(0, r.ResetAfter-time.Duration(int64(q.n)*q.rule.interval))
	}
}

// abandon marks every layer not evaluated.
func (a *allowAll) abandon() {
	for i, ly := range a.layers {
		a.out[i] = outcome{Result: Result{Remaining: -1}}
		if ly.Limiter != nil {
			a.out[i].Result = notEvaluated(ly.Limiter)
		}
	}
}

// allowed reports whether every layer granted.
func (a *allowAll) allowed() bool {
	for i := range a.out {
		if !a.out[i].Allowed {
			return false
		}
	}
	return len(a.out) > 0
}

// settle feeds the deny caches, counts and calls the hooks.
func (a *allowAll) settle(ctx context.Context) {
	allowed := a.allowed()
	for i, ly := range a.layers {
		o := &a.out[i]
		if !allowed && (o.Allowed || o.Remaining < 0) {
			continue // not charged, or not evaluated: neither granted nor denied
		}
		if dc := ly.Limiter.deny; !o.Allowed && !o.busy && !o.fell && dc != nil && o.RetryAfter > 0 {
			dc.remember(&a.reqs[i], o.Result)
		}
		ly.Limiter.observe(ctx, ly.Key, o.Result, o.fell)
	}
}

// decision reports the outcomes.
func (a *allowAll) decision() Decision {
	d := Decision{Allowed: a.allowed(), Results: make([]Result, len(a.layers))}
	for i := range a.out {
		d.Results[i] = a.out[i].Result
		if o := &a.out[i]; !o.Allowed && o.Remaining >= 0 {
			d.Denied = append(d.Denied, o.Policy)
		}
	}
	return d
}
