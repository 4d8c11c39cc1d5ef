package cache

import (
	"context"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"runtime/debug"
	"time"
)

// GetOrLoad returns the value of key, calling load when no layer holds it. Concurrent calls
// for one key share one load in this process and, on a RedisStore, in the whole fleet: one
// instance loads while the others wait to be woken. The load runs detached from ctx (bounded
// by Config.LoadTimeout), so a caller that gives up does not fail the others; it gets
// ctx.Err().
//
// A load returning ErrNotFound is cached for Config.NegativeTTL and GetOrLoad returns
// ErrNotFound. Within the stale-while-revalidate window a stale value is returned at once and
// refreshed in the background; within the stale-if-error window it is returned when the load
// fails. A load still running at Config.LoadTimeout fails with an error matching
// context.DeadlineExceeded, whether or not the loader heeds its context.
func (c *Cache[V]) GetOrLoad(ctx context.Context, key string, load func(ctx context.Context, key string) (V, error)) (V, error) {
	var zero V
	if c.closed.Load() {
		return zero, ErrClosed
	}
	h := c.hash(key)
	now := c.now()
	var fallback *entry
	if e := c.local.get(h, key, now); e != nil {
		switch {
		case now < e.fresh:
			c.hits.add()
			if c.cfg.EarlyRefresh > 0 && c.early(e, now) {
				c.join(ctx, key, h, load, e, true)
			}
			return c.value(e)
		case now < e.stale:
			c.stale.Add(1)
			c.servedStale(ctx, key, nil)
			c.join(ctx, key, h, load, e, true)
			return c.value(e)
		}
		fallback = e
	}
	f := c.join(ctx, key, h, load, fallback, false)
	if f == nil {
		return zero, ErrClosed
	}
	select {
	case <-f.done:
		return f.v, f.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// early decides, XFetch-style, whether a fresh entry is refreshed now.
func (c *Cache[V]) early(e *entry, now int64) bool {
	if e.load <= 0 || e.neg {
		return false
	}
	return now-int64(float64(e.load)*c.cfg.EarlyRefresh*math.Log(mrand.Float64())) >= e.fresh
}

// flight is one load of one key in this process, and everything that load needs to know. Its
// callers wait on done. A refresh (background) delivers the value its callers were served at
// once, and goes on.
type flight[V any] struct {
	c          *Cache[V]
	key        string
	hash       uint64
	load       func(context.Context, string) (V, error)
	background bool   // a refresh of an entry its callers were served
	fallback   *entry // served if the load fails, within stale-if-error
	start      uint64 // the local layer's generation when the flight began: guards its fills
	token      string // the lease held in Redis; "" when none is held

	done      chan struct{}
	delivered bool // only the flight's goroutine sets it; callers read it after done
	v         V
	err       error
}

// join returns key's flight, starting one if none is in flight; nil once the Cache is closed.
func (c *Cache[V]) join(ctx context.Context, key string, h uint64, load func(context.Context, string) (V, error), fallback *entry, background bool) *flight[V] {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return nil // Close is waiting for the flights: start none
	}
	if f := c.flights[key]; f != nil {
		return f
	}
	f := &flight[V]{c: c, key: key, hash: h, load: load, background: background, fallback: fallback, done: make(chan struct{})}
	c.flights[key] = f
	if background {
		c.refreshes.Add(1)
	}
	c.wg.Add(1)
	go f.run(context.WithoutCancel(ctx))
	return f
}

// run is the flight's goroutine: it finds the value in Redis, or waits for the instance
// loading it, or loads it.
func (f *flight[V]) run(parent context.Context) {
	c := f.c
	// base ends only at Close. Finding the value (reading Redis, waiting for another
	// instance's load) gets LoadTimeout and a lease period, enough to outlast the lease of a
	// holder that died; the loader then gets LoadTimeout afresh.
	base, cancelBase := context.WithCancel(parent)
	stop := context.AfterFunc(c.life, cancelBase)
	f.start = c.local.begin()
	defer func() {
		c.local.end()
		stop()
		cancelBase()
		f.deliver(*new(V), ErrClosed) // delivers only if nothing was: never hang a caller
		c.wg.Done()
	}()
	if f.background {
		f.deliverEarly(c.value(f.fallback))
	}
	if c.remote != nil {
		ctx, cancel := context.WithTimeout(base, c.cfg.LoadTimeout+c.remote.lease)
		over := f.resolve(ctx)
		cancel()
		if over {
			return
		}
	}
	ctx, cancel := context.WithTimeout(base, c.cfg.LoadTimeout)
	defer cancel()
	f.loadAndStore(ctx)
}

// resolve looks for the value in Redis, or takes the lease to load it, or waits for the
// instance that holds the lease. It reports whether the flight is over; if not, the flight
// loads the value (holding the lease, or without one when Redis failed).
func (f *flight[V]) resolve(ctx context.Context) (over bool) {
	c := f.c
	// A refresh of a stale entry reads the remote layer first: another instance may have
	// refreshed it. An early refresh of a fresh entry goes straight for the lease.
	refresh := f.background
	read := !f.background || c.now() >= f.fallback.fresh
	for {
		if read {
			b, err := c.remote.get(ctx, f.key)
			if err != nil {
				return f.storeFailed(ctx, err)
			}
			if f.consider(ctx, b) {
				return true
			}
			refresh = refresh || b != nil // there, but stale or unreadable: the lease reloads it
		}
		// From here on the lease script reads the value itself: one round trip per turn.
		read = false
		wake := c.remote.waiter(f.key)
		r, err := c.remote.acquire(ctx, f.key, refresh)
		if r.kind != leaseWait {
			c.remote.unwait(f.key, wake)
		}
		if err != nil {
			return f.storeFailed(ctx, err)
		}
		switch r.kind {
		case leaseHeld:
			f.token = r.token
			return false
		case leaseValue:
			if f.consider(ctx, r.val) {
				return true
			}
			refresh = true
		case leaseWait:
			if f.delivered {
				c.remote.unwait(f.key, wake)
				return true // another instance refreshes; the stale value was served
			}
			t := time.NewTimer(r.wait)
			select {
			case <-wake:
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
			c.remote.unwait(f.key, wake)
			if ctx.Err() != nil {
				f.fail(ctx, ctx.Err())
				return true
			}
			refresh = false // the holder filled it, or gave up: the script returns what is there
		}
	}
}

// storeFailed handles a failed read of the remote layer: with FailOnStoreError the flight
// ends with the error; otherwise it loads without the remote layer.
func (f *flight[V]) storeFailed(ctx context.Context, err error) (over bool) {
	if err = f.c.storeFailed(ctx, err, nil); err != nil {
		f.deliver(*new(V), err)
		return true
	}
	return false
}

// consider looks at an envelope read from the remote layer: fresh, it ends the flight (true);
// within stale-while-revalidate it is served while the flight refreshes it; otherwise it may
// still serve a failed load (stale-if-error) as the fallback.
func (f *flight[V]) consider(ctx context.Context, b []byte) bool {
	c := f.c
	now, wall := c.times()
	e := c.decode(f.key, f.hash, b, now, wall)
	if e == nil {
		return false
	}
	switch {
	case now < e.fresh:
		c.remoteHits.Add(1)
		c.fillLocal(e, f.start, now)
		f.deliver(c.value(e))
		return true
	case now < e.stale && !f.delivered:
		c.remoteHits.Add(1)
		c.stale.Add(1)
		c.servedStale(ctx, f.key, nil)
		c.fillLocal(e, f.start, now)
		f.deliverEarly(c.value(e))
	}
	if f.fallback == nil || e.hard > f.fallback.hard {
		f.fallback = e
	}
	return false
}

// loadAndStore calls the loader, stores what it returns in both layers, and delivers it.
func (f *flight[V]) loadAndStore(ctx context.Context) {
	c := f.c
	held := f.token != ""
	if held && c.remote.lease < c.cfg.LoadTimeout {
		stop := make(chan struct{})
		defer close(stop)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.remote.keepLease(f.key, f.token, stop)
		}()
	}
	if !f.delivered {
		c.misses.Add(1) // a caller waits for the loader
	}
	v, took, err := f.call(ctx)
	notFound := errors.Is(err, ErrNotFound)
	// The load's context may have ended (Close, LoadTimeout): the lease is still given back
	// or filled, each bounded by the store's own timeout.
	ctx = context.WithoutCancel(ctx)
	if err != nil && !(notFound && c.negTTL > 0) {
		if notFound {
			f.deliver(v, ErrNotFound)
		} else {
			f.fail(ctx, err)
		}
		if held {
			_ = c.remote.release(ctx, f.key, f.token) // wake the other instances' waiters
		}
		return
	}
	if held && c.closed.Load() {
		// Close waits for this flight: give the lease back (one round trip) rather than
		// store the value; another instance loads it again.
		f.deliverLoaded(v, notFound)
		_ = c.remote.release(ctx, f.key, f.token)
		return
	}
	now, wall := c.times()
	e := c.newEntry(f.key, v, notFound, took, 0, now)
	if held {
		stored, err := c.remote.fill(ctx, e, f.token, now, wall)
		switch {
		case errors.Is(err, errEncoding):
			f.deliver(v, err)
			return
		case err != nil:
			c.storeFailed(ctx, err, nil)
		case !stored:
			// A Set or Delete revoked the lease during the load: what was loaded may be
			// older than what was written, so it goes to the callers only.
			c.lost.Add(1)
			f.deliverLoaded(v, notFound)
			return
		}
	}
	if c.fillLocal(e, f.start, now) {
		c.lost.Add(1)
	}
	f.deliverLoaded(v, notFound)
}

// call runs the loader on a goroutine of its own and waits for it until ctx ends. At
// LoadTimeout a loader that has not returned is abandoned, and its result dropped. When Close
// cancels the load, call still waits for the loader (one that heeds its context returns at
// once, and Close then leaves none running), but not past LoadTimeout.
func (f *flight[V]) call(ctx context.Context) (V, time.Duration, error) {
	type result struct {
		v    V
		took time.Duration
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		if err := ctx.Err(); err != nil {
			ch <- result{err: err} // cancelled before it began: the loader is not called
			return
		}
		v, took, err := f.c.runLoader(ctx, f.key, f.load)
		ch <- result{v, took, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.took, r.err
	case <-ctx.Done():
	}
	if deadline, ok := ctx.Deadline(); ok && errors.Is(ctx.Err(), context.Canceled) {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		select {
		case r := <-ch:
			return r.v, r.took, r.err
		case <-t.C:
		}
	}
	var zero V
	return zero, 0, fmt.Errorf("cache: the loader did not return within Config.LoadTimeout (%v): %w", f.c.cfg.LoadTimeout, context.DeadlineExceeded)
}

// runLoader calls load, counts the call, and turns a panic into ErrLoaderPanic.
func (c *Cache[V]) runLoader(ctx context.Context, key string, load func(context.Context, string) (V, error)) (v V, took time.Duration, err error) {
	t0 := time.Now()
	defer func() {
		if r := recover(); r != nil {
			c.logger.Error("cache: loader panicked", "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("%w: %v", ErrLoaderPanic, r)
		}
		took = time.Since(t0)
		c.loadNanos.Add(uint64(took))
		if err != nil && !errors.Is(err, ErrNotFound) {
			c.loadErrs.Add(1)
		} else {
			c.loadOKs.Add(1)
		}
		if h := c.cfg.Hooks.OnLoad; h != nil {
			h(ctx, key, took, err)
		}
	}()
	v, err = load(ctx, key)
	return v, 0, err
}

// fail delivers a load's error, or the stale value while stale-if-error allows it.
func (f *flight[V]) fail(ctx context.Context, err error) {
	c := f.c
	if f.fallback != nil && c.now() < f.fallback.hard {
		c.stale.Add(1)
		c.servedStale(ctx, f.key, err)
		f.deliver(c.value(f.fallback))
		return
	}
	f.deliver(*new(V), err)
}

func (f *flight[V]) deliverLoaded(v V, notFound bool) {
	if notFound {
		f.deliver(v, ErrNotFound)
		return
	}
	f.deliver(v, nil)
}

// deliver hands the callers their result, and ends the flight for callers to come: they start
// a load of their own rather than take a result from the past.
func (f *flight[V]) deliver(v V, err error) {
	c := f.c
	c.mu.Lock()
	if c.flights[f.key] == f {
		delete(c.flights, f.key)
	}
	c.mu.Unlock()
	f.deliverEarly(v, err)
}

// deliverEarly hands the callers a value while the flight goes on (a stale value it
// refreshes); callers that come meanwhile get the same value rather than start another
// refresh.
func (f *flight[V]) deliverEarly(v V, err error) {
	if f.delivered {
		return
	}
	f.v, f.err, f.delivered = v, err, true
	close(f.done)
}
