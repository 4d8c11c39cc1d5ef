package balancer

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// someEpoch stands for an epoch not read yet, that a join announced exists.
const someEpoch = "?"

// watchBuffer is how many announcements a Watch holds before it applies them; when more
// arrive, the Watch drops them and reads the members instead.
const watchBuffer = 256

// Watch sets b's set to the service's members, then keeps it in step until ctx ends: it
// applies the store's announcements as they come, and reads the members every
// ReconcileInterval and whenever announcements may have been lost. When a read fails, b keeps
// its set (see [Registry] for outages). Watch returns nil when ctx ends, or at once an error
// wrapping ErrInvalidConfig for a nil b. Run one Watch per Balancer.
func (r *Registry) Watch(ctx context.Context, b *Balancer) error {
	if b == nil {
		return fmt.Errorf("%w: Watch: the Balancer is nil", ErrInvalidConfig)
	}
	w := &watcher{r: r, b: b, events: make(chan event, watchBuffer), resync: make(chan struct{}, 1), cur: map[string]int{}}
	for _, be := range b.Stats().Backends {
		w.cur[be.ID] = be.Weight
	}
	stop := r.store.subscribe(r.cfg.Service, w)
	defer stop()
	w.run(ctx)
	return nil
}

// watcher is one Watch: the store's listener, and the loop that applies what it hears.
type watcher struct {
	r       *Registry
	b       *Balancer
	events  chan event
	resync  chan struct{} // a read is due at once: announcements may have been lost
	started atomic.Bool   // the first read was sent: a confirmation of the subscription after it calls for another
	// lost says the subscription was lost and made again since the last read: Redis may have
	// been down, and instances unable to heartbeat.
	lost atomic.Bool

	// Owned by the loop.
	cur        map[string]int // b's set: ID -> weight
	read       bool           // a read succeeded: cur is the registry's, not the Balancer's first set
	down       bool           // the last read failed
	epoch      string         // of the last read
	graceUntil time.Time      // until then, backends that reads miss are kept (see reconcile)
}

// event queues e for the loop, or asks for a read when the queue is full. It never blocks.
func (w *watcher) event(e event) {
	select {
	case w.events <- e:
	default:
		w.signal()
	}
}

// subscribed asks for a read unless the first read is still to come (it will cover what the
// subscription missed).
func (w *watcher) subscribed(first bool) {
	if !first {
		w.lost.Store(true)
	}
	if w.started.Load() {
		w.signal()
	}
}

func (w *watcher) signal() {
	select {
	case w.resync <- struct{}{}:
	default:
	}
}

func (w *watcher) run(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	w.reconcile(ctx)
	t := time.NewTimer(w.delay())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-w.events:
			w.announced(ctx, e)
			continue
		case <-w.resync:
		case <-t.C:
		}
		w.reconcile(ctx)
		t.Reset(w.delay())
	}
}

// delay is how long until the next read: ReconcileInterval, at most a second while the store
// fails, and no later than the end of a grace period.
func (w *watcher) delay() time.Duration {
	d := w.r.cfg.ReconcileInterval
	if w.down {
		d = min(d, maxRetry)
	}
	if !w.graceUntil.IsZero() {
		d = min(d, max(time.Until(w.graceUntil), 0))
	}
	return d
}

// announced applies e and every announcement queued behind it, in one Update.
func (w *watcher) announced(ctx context.Context, e event) {
	next := maps.Clone(w.cur)
	// After an outage (or during one), an instance may only have been unable to heartbeat:
	// its expiry waits for the reads, which keep it for one TTL.
	grace := w.down || w.lost.Load() || time.Now().Before(w.graceUntil)
	for more := true; more; {
		w.r.announcements.Add(1)
		switch e.kind {
		case evJoin:
			next[e.id] = e.weight
			if w.epoch == "" {
				w.epoch = someEpoch // the heartbeat set one
			}
		case evLeave:
			delete(next, e.id)
		case evExpire:
			if !grace {
				delete(next, e.id)
			}
		}
		select {
		case e = <-w.events:
		default:
			more = false
		}
	}
	w.set(ctx, next)
}

// reconcile reads the members and makes them b's set; when the read fails, b keeps its set.
//
// Announcements queued are dropped first: the read covers them, and those that come after it
// are applied in order after it, so b ends up as the store is, whatever the interleaving.
//
// For one TTL after an outage (a failed read, or a subscription lost: the instances may not
// have been able to heartbeat either), or after the store lost the registry (its epoch
// changed), backends that the reads miss are kept and expiries ignored, while live instances
// heartbeat again; deregistrations still apply.
func (w *watcher) reconcile(ctx context.Context) {
	for len(w.events) > 0 {
		<-w.events
	}
	select {
	case <-w.resync:
	default:
	}
	w.started.Store(true)
	w.r.reconciles.Add(1)
	v, err := w.r.store.members(ctx, w.r.cfg.Service)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		w.r.reconcileErrors.Add(1)
		w.r.down.Store(true)
		if !w.down {
			w.down = true
			w.r.logger.Warn("balancer: cannot read the registry; the balancer keeps its last good set",
				"service", w.r.cfg.Service, "backends", len(w.cur), "err", err)
			if h := w.r.cfg.Hooks.OnOutage; h != nil {
				h(ctx, true, err)
			}
		}
		return
	}
	now := time.Now()
	w.r.down.Store(false)
	w.r.lastGood.Store(now.UnixNano())
	ttl := w.r.cfg.TTL
	if w.lost.Swap(false) && w.read {
		w.graceUntil = now.Add(ttl)
	}
	if w.down {
		w.down = false
		grace := time.Duration(0)
		if w.read {
			w.graceUntil, grace = now.Add(ttl), ttl
		}
		w.r.logger.Info("balancer: the registry answers again; backends it misses are kept for the grace period while instances heartbeat again",
			"service", w.r.cfg.Service, "grace", grace)
		if h := w.r.cfg.Hooks.OnOutage; h != nil {
			h(ctx, false, nil)
		}
	}
	// The epoch is gone, or another: Redis lost the registry that cur came from.
	gone := v.epoch == "" && w.epoch != ""
	changed := v.epoch != "" && w.epoch != "" && w.epoch != someEpoch && v.epoch != w.epoch
	if w.read && len(w.cur) > 0 && (gone || changed) {
		w.graceUntil = now.Add(ttl)
		w.r.logger.Warn("balancer: the registry was lost (Redis restarted without persistence, or was flushed); "+
			"the balancer keeps its set for one TTL while instances register again",
			"service", w.r.cfg.Service, "backends", len(w.cur), "ttl", ttl)
	}
	w.epoch, w.read = v.epoch, true
	next := make(map[string]int, len(v.members))
	for _, m := range v.members {
		next[m.ID] = m.Weight
	}
	if now.Before(w.graceUntil) {
		for id, wt := range w.cur {
			if _, ok := next[id]; !ok {
				next[id] = wt
			}
		}
	} else {
		w.graceUntil = time.Time{}
	}
	w.set(ctx, next)
}

// set makes next b's set, if it differs, and reports the changes.
func (w *watcher) set(ctx context.Context, next map[string]int) {
	var joined, left []Backend
	changed := false
	for id, wt := range next {
		old, ok := w.cur[id]
		if !ok {
			joined = append(joined, Backend{ID: id, Weight: wt})
		} else if max(old, 1) != max(wt, 1) {
			changed = true
		}
	}
	for id, wt := range w.cur {
		if _, ok := next[id]; !ok {
			left = append(left, Backend{ID: id, Weight: wt})
		}
	}
	if len(joined) == 0 && len(left) == 0 && !changed {
		w.cur = next
		return
	}
	backends := make([]Backend, 0, len(next))
	for id, wt := range next {
		backends = append(backends, Backend{ID: id, Weight: wt})
	}
	byID := func(a, b Backend) int { return strings.Compare(a.ID, b.ID) }
	slices.SortFunc(backends, byID)
	if err := w.b.Update(backends...); err != nil { // cannot happen: IDs are unique and weights clamped
		w.r.logger.Error("balancer: registry members rejected by the balancer", "service", w.r.cfg.Service, "err", err)
		return
	}
	w.cur = next
	w.r.joins.Add(uint64(len(joined)))
	w.r.leaves.Add(uint64(len(left)))
	slices.SortFunc(joined, byID)
	slices.SortFunc(left, byID)
	for _, be := range joined {
		w.r.logger.Info("balancer: backend joined", "service", w.r.cfg.Service, "backend", be.ID, "weight", be.Weight)
		if h := w.r.cfg.Hooks.OnJoin; h != nil {
			h(ctx, be)
		}
	}
	for _, be := range left {
		w.r.logger.Info("balancer: backend left", "service", w.r.cfg.Service, "backend", be.ID)
		if h := w.r.cfg.Hooks.OnLeave; h != nil {
			h(ctx, be)
		}
	}
}
