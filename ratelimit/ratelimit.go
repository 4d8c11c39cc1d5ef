package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync/atomic"
)

// Failure is what a [Limiter] does when its store cannot decide (Redis down, slow or refusing).
type Failure int

const (
	// FailLocal decides on a [MemoryStore] private to the Limiter, with Config.FallbackLimit, until
	// the store answers again. Every instance then limits on its own: to keep a global bound,
	// set FallbackLimit to the limit divided by the number of instances. Recommended for broad
	// limits such as 1000 requests per minute per IP. It is the zero value.
	FailLocal Failure = iota
	// FailOpen grants every request while the store is unavailable. Use it only where an outage of
	// the limit costs less than refusing traffic.
	FailOpen
	// FailClosed refuses every request while the store is unavailable, returning ErrUnavailable.
	// Recommended for limits that protect against abuse, such as login attempts: an outage must
	// not open a window for brute force.
	FailClosed
)

// String returns "local", "open" or "closed".
func (f Failure) String() string {
	switch f {
	case FailLocal:
		return "local"
	case FailOpen:
		return "open"
	case FailClosed:
		return "closed"
	}
	return fmt.Sprintf("Failure(%d)", int(f))
}

// Config configures a [Limiter]. The zero value is ready to use.
type Config struct {
	// Name names the policy in results, headers and Redis keys; "default" when empty. It is made
	// of letters, digits, '_', '-' and '.', at most 64 bytes. Limiters sharing a store must have
	// different names unless they are meant to share state.
	Name string
	// Failure is the policy when the store cannot decide; FailLocal when zero.
	Failure Failure
	// FallbackLimit is the limit of FailLocal; the Limiter's own limit when zero.
	FallbackLimit Limit
	// DenyCacheSize bounds the local cache of keys known to be over their limit, which lets a
	// Limiter over a shared store (such as Redis) refuse them without calling the store until
	// their RetryAfter. 0 means 65536 keys; -1 disables the cache. A MemoryStore never uses it.
	DenyCacheSize int
	// Hooks observe decisions.
	Hooks Hooks
}

// Hooks are optional callbacks, called synchronously on the goroutine making the decision, so
// they must be fast and safe for concurrent use. The zero value has no hooks.
type Hooks struct {
	// OnAllowed is called for each granted key.
	OnAllowed func(ctx context.Context, key string, r Result)
	// OnLimited is called for each denied key, including denials by the deny cache.
	OnLimited func(ctx context.Context, key string, r Result)
	// OnDenyCacheHit is called when the deny cache refuses a key without calling the store.
	OnDenyCacheHit func(ctx context.Context, key string, r Result)
	// OnFallback is called when the Limiter starts applying its failure policy (entered true,
	// with the store's error) and when the store answers again (entered false, nil error).
	OnFallback func(ctx context.Context, entered bool, err error)
}

// Stats is a snapshot of a Limiter's counters.
type Stats struct {
	Allowed       uint64 // granted decisions, whoever made them
	Limited       uint64 // denied decisions, whoever made them
	DenyCacheHits uint64 // denials made by the deny cache, without calling the store
	Fallback      uint64 // decisions made by the failure policy
	StoreErrors   uint64 // store calls that failed, including those a RedisStore refused at once during an outage
	Degraded      bool   // the failure policy is in force right now
}

// Limiter applies one named Limit to keys, over a Store.
//
// A Limiter must be created with [New]; it is safe for concurrent use and has no goroutine, so
// it needs no Close.
type Limiter struct {
	name     string
	limit    Limit
	store    Store
	group    any          // identity of the store, to batch layers that share it
	mem      *MemoryStore // store, when it is a MemoryStore: the allocation-free path
	memHash  uint64       // mem's hash of name
	memCount []memCount   // decisions of the allocation-free path, one per shard of mem
	fallback *MemoryStore // FailLocal
	fbLimit  Limit
	failure  Failure
	deny     *denyCache
	hooks    Hooks

	degraded atomic.Bool
	counters [stripes]counter
}

const stripes = 8

// counter is padded to a cache line so that parallel decisions do not contend on one.
type counter struct {
	allowed, limited, denyHits, fallback, storeErrors atomic.Uint64
	_                                                 [24]byte
}

// New returns a Limiter applying limit to keys held in store.
func New(store Store, limit Limit, cfg Config) (*Limiter, error) {
	if store == nil {
		return nil, errors.New("ratelimit: nil store")
	}
	if err := limit.validate(); err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		cfg.Name = "default"
	}
	if err := checkName(cfg.Name); err != nil {
		return nil, err
	}
	if cfg.Failure < FailLocal || cfg.Failure > FailClosed {
		return nil, fmt.Errorf("ratelimit: unknown %v", cfg.Failure)
	}
	if cfg.DenyCacheSize < -1 {
		return nil, fmt.Errorf("ratelimit: DenyCacheSize %d must be -1, 0 or positive", cfg.DenyCacheSize)
	}
	l := &Limiter{name: cfg.Name, limit: limit, store: store, failure: cfg.Failure, hooks: cfg.Hooks}
	l.group = any(l)
	if reflect.TypeOf(store).Comparable() {
		l.group = store
	}
	l.mem, _ = store.(*MemoryStore)
	if l.mem != nil {
		l.memHash = l.mem.policyHash(l.name)
		l.memCount = make([]memCount, len(l.mem.shards))
	}
	if cfg.Failure == FailLocal && l.mem == nil {
		l.fbLimit = limit
		if cfg.FallbackLimit != (Limit{}) {
			if err := cfg.FallbackLimit.validate(); err != nil {
				return nil, fmt.Errorf("FallbackLimit: %w", err)
			}
			l.fbLimit = cfg.FallbackLimit
		}
		l.fallback, _ = NewMemoryStore(MemoryConfig{})
	}
	if l.mem == nil && cfg.DenyCacheSize != -1 {
		size := cfg.DenyCacheSize
		if size == 0 {
			size = 1 << 16
		}
		l.deny = newDenyCache(size)
	}
	return l, nil
}

func checkName(name string) error {
	if len(name) > 64 {
		return fmt.Errorf("ratelimit: policy name longer than 64 bytes: %q", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("ratelimit: policy name %q: only letters, digits, '_', '-' and '.'", name)
		}
	}
	return nil
}

// Name returns the policy name.
func (l *Limiter) Name() string { return l.name }

// Limit returns the limit applied.
func (l *Limiter) Limit() Limit { return l.limit }

// Allow is AllowN(ctx, key, 1).
func (l *Limiter) Allow(ctx context.Context, key string) (Result, error) {
	return l.AllowN(ctx, key, 1)
}

// AllowN takes n units for key if they are all available now, and reports the decision. A
// denial charges nothing. The error is non-nil for invalid input (an empty key, n < 1 or more
// than the burst), when ctx ends first (cancelled or past its deadline: the context's error),
// and under FailClosed when the store is unavailable (ErrUnavailable); the Result is then a
// denial.
func (l *Limiter) AllowN(ctx context.Context, key string, n int) (Result, error) {
	if n < 1 {
		return notEvaluated(l), fmt.Errorf("%w: cost %d must be at least 1", ErrInvalidKey, n)
	}
	if l.mem != nil && key != "" && n <= l.limit.burst() {
		// The common in-process case: the limit was checked by New, one shard lock, no
		// allocation.
		q := Request{Policy: l.name, Key: key, Limit: l.limit, N: n}
		r := l.mem.takeOne(l.mem.hashWith(l.memHash, key), &q, l.memCount)
		l.hook(ctx, key, r)
		return r, nil
	}
	d, err := AllowAll(ctx, Layer{Limiter: l, Key: key, N: n})
	r := d.Results[0]
	if err != nil {
		r.Allowed = false
	}
	return r, err
}

// Peek reports whether one unit would be granted to key now, and how many remain, without
// taking any. When the store is unavailable, a FailLocal limiter peeks at its fallback; the
// others return ErrUnavailable.
func (l *Limiter) Peek(ctx context.Context, key string) (Result, error) {
	reqs := []Request{{Policy: l.name, Key: key, Limit: l.limit}}
	res := make([]Result, 1)
	err := l.store.Take(ctx, reqs, res)
	if err != nil && l.fallback != nil && errors.Is(err, ErrUnavailable) {
		err = l.fallback.Take(ctx, []Request{{Policy: l.name, Key: key, Limit: l.fbLimit}}, res)
	}
	if err != nil {
		return Result{Policy: l.name, Limit: l.limit}, err
	}
	return res[0], nil
}

// Reset forgets key, granting it a full burst again. With a shared store, the deny caches of
// other instances keep refusing the key until its last RetryAfter there.
func (l *Limiter) Reset(ctx context.Context, key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if l.deny != nil {
		l.deny.forget(key)
	}
	if l.fallback != nil {
		_ = l.fallback.Reset(ctx, Request{Policy: l.name, Key: key})
	}
	return l.store.Reset(ctx, Request{Policy: l.name, Key: key, Limit: l.limit})
}

// Stats returns a snapshot of the counters.
func (l *Limiter) Stats() Stats {
	var s Stats
	for i := range l.counters {
		c := &l.counters[i]
		s.Allowed += c.allowed.Load()
		s.Limited += c.limited.Load()
		s.DenyCacheHits += c.denyHits.Load()
		s.Fallback += c.fallback.Load()
		s.StoreErrors += c.storeErrors.Load()
	}
	if l.memCount != nil {
		a, d := l.mem.sumCounts(l.memCount)
		s.Allowed += a
		s.Limited += d
	}
	s.Degraded = l.degraded.Load()
	return s
}

func (l *Limiter) counter() *counter { return &l.counters[rand.Uint32()%stripes] }

// observe counts a decision and calls the hooks.
func (l *Limiter) observe(ctx context.Context, key string, r Result, fallback bool) {
	l.count(ctx, l.counter(), key, r, fallback)
}

func (l *Limiter) count(ctx context.Context, c *counter, key string, r Result, fallback bool) {
	if fallback {
		c.fallback.Add(1)
	}
	if r.Allowed {
		c.allowed.Add(1)
	} else {
		c.limited.Add(1)
	}
	l.hook(ctx, key, r)
}

// hook calls OnAllowed or OnLimited.
func (l *Limiter) hook(ctx context.Context, key string, r Result) {
	if r.Allowed {
		if l.hooks.OnAllowed != nil {
			l.hooks.OnAllowed(ctx, key, r)
		}
	} else if l.hooks.OnLimited != nil {
		l.hooks.OnLimited(ctx, key, r)
	}
}

// storeFailed records a store error and enters the failure policy.
func (l *Limiter) storeFailed(ctx context.Context, err error) {
	l.counter().storeErrors.Add(1)
	if l.degraded.CompareAndSwap(false, true) && l.hooks.OnFallback != nil {
		l.hooks.OnFallback(ctx, true, err)
	}
}

// storeAnswered leaves the failure policy.
func (l *Limiter) storeAnswered(ctx context.Context) {
	if l.degraded.Load() && l.degraded.CompareAndSwap(true, false) && l.hooks.OnFallback != nil {
		l.hooks.OnFallback(ctx, false, nil)
	}
}

// Layer is one limit to apply to one request: Limiter's policy for Key, costing N units (1 when
// zero).
type Layer struct {
	Limiter *Limiter
	Key     string
	N       int
}

// Decision is the outcome of [AllowAll].
type Decision struct {
	// Allowed reports whether every layer granted its units; if not, none was charged.
	Allowed bool
	// Results holds one Result per layer, in order. A layer's Result says what that layer alone
	// decided. A layer that was not evaluated (the deny cache refused another layer before any
	// store call, or an error stopped the decision) has Allowed false and Remaining -1, and is
	// not in Denied.
	Results []Result
	// Denied names the policies that denied, in layer order.
	Denied []string
	// Message is the Message of the first denying [Rule], set by [Middleware] for its OnDenied.
	Message string
}

// gaveUp reports whether the caller's ctx ended (cancelled or past its deadline): the caller
// no longer waits for a decision, and the store's slowness for that caller says nothing about
// Redis, so no failure policy applies; the context's error is returned.
func gaveUp(ctx context.Context) bool { return ctx.Err() != nil }

// notEvaluated is the Result of a layer nothing was decided for.
func notEvaluated(l *Limiter) Result {
	return Result{Policy: l.name, Limit: l.limit, Remaining: -1}
}

// AllowAll applies several layers to one request, all or nothing: if any layer denies, no layer
// is charged. Layers whose Limiters share a store are decided in one store call, which for
// [RedisStore] is one script per key and one round trip for the whole request; layers on
// different stores are decided one store after the other and given back if a later one denies.
//
// Each layer's Limiter applies its own failure policy when its store is unavailable. The error is
// non-nil for invalid layers, when ctx ends, and when a FailClosed layer could not be decided
// (ErrUnavailable); the Decision is then a denial. Counters and hooks see each layer once: as
// allowed when the whole decision is, as limited when the layer denied; layers given back
// because another denied are not counted.
func AllowAll(ctx context.Context, layers ...Layer) (Decision, error) {
	d := Decision{Results: make([]Result, len(layers))}
	if len(layers) == 0 {
		return d, fmt.Errorf("%w: no layers", ErrInvalidKey)
	}
	for i, ly := range layers {
		if ly.Limiter == nil {
			return d, fmt.Errorf("%w: layer %d has no Limiter", ErrInvalidKey, i)
		}
		d.Results[i] = notEvaluated(ly.Limiter)
	}
	reqs := make([]Request, len(layers))
	for i, ly := range layers {
		n := ly.N
		if n == 0 {
			n = 1
		}
		if n < 0 {
			return d, fmt.Errorf("%w: layer %d costs %d", ErrInvalidKey, i, n)
		}
		reqs[i] = Request{Policy: ly.Limiter.name, Key: ly.Key, Limit: ly.Limiter.limit, N: n}
		if err := reqs[i].check(); err != nil {
			return d, err
		}
	}

	// Keys known to be over their limit are refused without any store call.
	for i, ly := range layers {
		if dc := ly.Limiter.deny; dc != nil {
			if r, ok := dc.lookup(ly.Key, reqs[i]); ok {
				d.Results[i] = r
				ly.Limiter.counter().denyHits.Add(1)
				if h := ly.Limiter.hooks.OnDenyCacheHit; h != nil {
					h(ctx, ly.Key, r)
				}
				return finish(ctx, layers, d, nil, nil), nil
			}
		}
	}

	// The common case: every layer on one store. One call, nothing to give back.
	shared := true
	for _, ly := range layers[1:] {
		shared = shared && ly.Limiter.group == layers[0].Limiter.group
	}
	if shared {
		err := layers[0].Limiter.store.Take(ctx, reqs, d.Results)
		if err == nil {
			for _, ly := range layers {
				ly.Limiter.storeAnswered(ctx)
			}
			return finish(ctx, layers, d, reqs, nil), nil
		}
		for i, ly := range layers {
			d.Results[i] = notEvaluated(ly.Limiter)
		}
		if gaveUp(ctx) {
			return d, fmt.Errorf("ratelimit: %w", ctx.Err())
		}
		if !errors.Is(err, ErrUnavailable) {
			return d, err
		}
		idx := make([]int, len(layers))
		fell := make([]bool, len(layers))
		for i := range idx {
			idx[i], fell[i] = i, true
		}
		res, closedErr := failover(ctx, layers, reqs, idx, err)
		copy(d.Results, res)
		if gaveUp(ctx) {
			return d, fmt.Errorf("ratelimit: %w", ctx.Err())
		}
		return finish(ctx, layers, d, reqs, fell), closedErr
	}

	// One unit of work per store, in order of first appearance.
	type unit struct {
		store Store
		idx   []int
	}
	var units []unit
outer:
	for i, ly := range layers {
		for u := range units {
			if layers[units[u].idx[0]].Limiter.group == ly.Limiter.group {
				units[u].idx = append(units[u].idx, i)
				continue outer
			}
		}
		units = append(units, unit{store: ly.Limiter.store, idx: []int{i}})
	}

	fell := make([]bool, len(layers))
	var closedErr error
	granted := true
	done := 0
	// abort gives back what the units before done charged and reports err with nothing decided.
	abort := func(err error) (Decision, error) {
		for k := 0; k < done; k++ {
			giveBack(context.WithoutCancel(ctx), layers, reqs, units[k].idx, fell)
		}
		for i, ly := range layers {
			d.Results[i] = notEvaluated(ly.Limiter)
		}
		return d, err
	}
	for ; done < len(units) && granted; done++ {
		u := &units[done]
		ureqs := make([]Request, len(u.idx))
		ures := make([]Result, len(u.idx))
		for j, i := range u.idx {
			ureqs[j] = reqs[i]
		}
		err := u.store.Take(ctx, ureqs, ures)
		switch {
		case err == nil:
			for _, i := range u.idx {
				layers[i].Limiter.storeAnswered(ctx)
			}
		case gaveUp(ctx):
			return abort(fmt.Errorf("ratelimit: %w", ctx.Err()))
		case !errors.Is(err, ErrUnavailable):
			return abort(err)
		default:
			ures, err = failover(ctx, layers, reqs, u.idx, err)
			if gaveUp(ctx) {
				return abort(fmt.Errorf("ratelimit: %w", ctx.Err()))
			}
			if err != nil {
				closedErr = err
			}
			for _, i := range u.idx {
				fell[i] = true
			}
		}
		for j, i := range u.idx {
			d.Results[i] = ures[j]
			if reqs[i].N > 0 && !ures[j].Allowed {
				granted = false
			}
		}
	}
	if !granted {
		// Give back what the earlier stores charged (the denying one charged nothing).
		for k := 0; k < done-1; k++ {
			giveBack(ctx, layers, reqs, units[k].idx, fell)
			for _, i := range units[k].idx {
				uncharge(&d.Results[i], reqs[i])
			}
		}
	}
	d = finish(ctx, layers, d, reqs, fell)
	return d, closedErr
}

// failover decides the layers idx of an unavailable store by their failure policies. FailLocal
// layers are decided together, all or nothing, on their fallback stores, with costs capped at
// the fallback bursts.
func failover(ctx context.Context, layers []Layer, reqs []Request, idx []int, storeErr error) ([]Result, error) {
	res := make([]Result, len(idx))
	var closedErr error
	var local []int
	for j, i := range idx {
		l := layers[i].Limiter
		l.storeFailed(ctx, storeErr)
		switch l.failure {
		case FailOpen:
			res[j] = Result{Policy: l.name, Limit: l.limit, Allowed: true, Remaining: -1}
		case FailClosed:
			res[j] = Result{Policy: l.name, Limit: l.limit}
			closedErr = fmt.Errorf("ratelimit: policy %q fails closed: %w", l.name, storeErr)
		case FailLocal:
			local = append(local, j)
			res[j] = notEvaluated(l)
		}
	}
	if len(local) == 0 {
		return res, closedErr
	}
	sub := make([]Layer, len(local))
	for k, j := range local {
		l := layers[idx[j]].Limiter
		sub[k] = Layer{Limiter: l.local(), Key: reqs[idx[j]].Key, N: min(reqs[idx[j]].N, l.fbLimit.burst())}
	}
	ld, err := AllowAll(ctx, sub...)
	if err != nil {
		return res, err // ctx ended: the fallback stores never fail otherwise
	}
	for k, j := range local {
		res[j] = ld.Results[k]
		res[j].Policy = layers[idx[j]].Limiter.name
	}
	if ld.Allowed && closedErr != nil {
		// Another layer of this store failed closed: give the local units back.
		for k, j := range local {
			_ = sub[k].Limiter.store.Take(context.WithoutCancel(ctx), []Request{{Policy: sub[k].Limiter.name,
				Key: sub[k].Key, Limit: sub[k].Limiter.limit, N: -sub[k].N}}, make([]Result, 1))
			uncharge(&res[j], Request{N: sub[k].N, Limit: sub[k].Limiter.limit})
		}
	}
	return res, closedErr
}

// local returns the Limiter that decides for l under FailLocal: its fallback store, no hooks.
func (l *Limiter) local() *Limiter {
	return &Limiter{name: l.name, limit: l.fbLimit, store: l.fallback, group: l.fallback, mem: l.fallback,
		memHash: l.fallback.policyHash(l.name)}
}

// giveBack returns the units charged to the layers idx of one unit.
func giveBack(ctx context.Context, layers []Layer, reqs []Request, idx []int, fell []bool) {
	for _, i := range idx {
		l := layers[i].Limiter
		if reqs[i].N <= 0 {
			continue
		}
		store, limit, n := l.store, l.limit, reqs[i].N
		if fell[i] {
			if l.failure != FailLocal {
				continue // nothing was charged
			}
			store, limit, n = l.fallback, l.fbLimit, min(n, l.fbLimit.burst())
		}
		_ = store.Take(ctx, []Request{{Policy: l.name, Key: reqs[i].Key, Limit: limit, N: -n}}, make([]Result, 1))
	}
}

// finish sets Allowed and Denied, feeds the deny caches, counts and calls the hooks.
func finish(ctx context.Context, layers []Layer, d Decision, reqs []Request, fell []bool) Decision {
	d.Allowed = true
	for _, r := range d.Results {
		if !r.Allowed {
			d.Allowed = false
			if r.Remaining >= 0 {
				d.Denied = append(d.Denied, r.Policy)
			}
		}
	}
	for i, ly := range layers {
		r := d.Results[i]
		if !d.Allowed && (r.Allowed || r.Remaining < 0) {
			continue // given back or not evaluated: neither granted nor denied
		}
		f := fell != nil && fell[i]
		if !r.Allowed && !f && reqs != nil && ly.Limiter.deny != nil && r.RetryAfter > 0 {
			ly.Limiter.deny.remember(ly.Key, reqs[i], r)
		}
		ly.Limiter.observe(ctx, ly.Key, r, f)
	}
	return d
}
