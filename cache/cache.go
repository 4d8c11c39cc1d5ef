package cache

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// maxTTL caps every duration a Cache adds to a time, so that none overflows.
const (
	maxTTL   = 100 * 365 * 24 * time.Hour
	maxTTLms = int64(maxTTL / time.Millisecond)
)

// ErrLoaderPanic reports a loader that panicked. Every caller waiting for that load gets it;
// the panic is logged with its stack, and never crashes a waiter.
var ErrLoaderPanic = errors.New("cache: loader panicked")

// Config configures a [Cache]. The zero value is the article's: data fresh for 300 s, "not
// found" cached for 30 s, loads bounded by 10 s.
type Config struct {
	// Policy is how long data stays fresh, and how long it may then be served stale while
	// being refreshed (StaleWhileRevalidate) or when its refresh fails (StaleIfError).
	Policy
	// NegativeTTL is how long a loader's ErrNotFound is cached, so that lookups of missing
	// data do not reach the source each time; 30 s when zero, never when negative. Other
	// loader errors are never cached.
	NegativeTTL time.Duration
	// Jitter shortens each TTL by a random fraction up to Jitter (0 to 1), so that data
	// stored at the same moment (after a deploy) does not expire at the same moment; none
	// when zero. 0.1 is a good value.
	Jitter float64
	// EarlyRefresh, when positive, refreshes fresh data in the background shortly before it
	// expires, with a probability that grows as expiry nears and with how long the data took
	// to load (XFetch, Vattani et al., VLDB 2015): 1 is the paper's value; larger refreshes
	// earlier. Hot keys then never expire under their readers.
	EarlyRefresh float64
	// LoadTimeout bounds a load, which runs detached from its callers so that one caller's
	// cancellation does not fail the others; 10 s when zero. It is also the longest another
	// instance waits for this one's load before loading itself.
	LoadTimeout time.Duration
	// Codec encodes values for Redis; JSON when nil. []byte and string values are stored as
	// they are.
	Codec Codec
	// FailOnStoreError makes reads return an error matching ErrUnavailable when Redis fails,
	// instead of going on without it (the local layer, then the loader).
	FailOnStoreError bool
	// Hooks are called as the cache works.
	Hooks Hooks
	// Logger receives loader panics; slog.Default() when nil.
	Logger *slog.Logger
}

// Hooks are optional functions called as a [Cache] works, for metrics and logs. They are
// called synchronously, on the goroutine doing the work, and must be quick and safe for
// concurrent use.
type Hooks struct {
	// OnLoad follows each call of a loader, with how long it took and what it returned.
	OnLoad func(key string, took time.Duration, err error)
	// OnStale follows each stale value served: refreshing (the stale-while-revalidate
	// window) or because its refresh failed (stale-if-error, err non-nil).
	OnStale func(key string, err error)
	// OnStoreError follows each failed call to Redis.
	OnStoreError func(err error)
}

// Stats counts what a Cache did since it was created. Local and Remote are the layers' own
// counters; the others are the Cache's.
type Stats struct {
	// LocalHits counts fresh values served by the in-process layer; RemoteHits, values read
	// from Redis.
	LocalHits, RemoteHits uint64
	// Misses counts lookups that found nothing usable in any layer.
	Misses uint64
	// Stale counts stale values served; NegativeHits, cached "not found" answers.
	Stale, NegativeHits uint64
	// Loads and LoadErrors count loader calls and their failures (ErrNotFound is not a
	// failure); LoadTime is the time they took in all.
	Loads, LoadErrors uint64
	LoadTime          time.Duration
	// Refreshes counts background refreshes started (stale-while-revalidate and early).
	Refreshes uint64
	// LostFills counts loaded values not stored because the key was written or invalidated
	// during the load.
	LostFills uint64
	// Local is the in-process layer's; Remote is Redis's (zero on a MemoryStore).
	Local  MemoryStats
	Remote RedisStats
}

// Cache is a typed cache of values V under string keys, over a [Store]: a [MemoryStore]
// alone, or a [RedisStore] with its in-process layer.
//
// A value handed to Set or returned by a loader is kept as it is in process memory and handed
// to every reader: treat it as immutable (a []byte, a map or a pointer included).
//
// A Cache must be created with [New]; it is safe for concurrent use. Loads run on their own
// goroutines; Close waits for them.
type Cache[V any] struct {
	l1     *MemoryStore
	l2     *RedisStore
	store  Store
	cfg    Config
	codec  Codec
	raw    bool // V is []byte or string: stored without the codec
	negTTL time.Duration
	logger *slog.Logger
	epoch  time.Time

	mu      sync.Mutex
	flights map[string]*flight[V]
	wg      sync.WaitGroup
	ctx     context.Context // ends at Close: loads in flight are cancelled
	cancel  context.CancelFunc
	closed  atomic.Bool

	// Only the cold paths count here: a local hit is counted by its shard.
	remoteHits, misses, stale, negHits, loads, loadErrs, loadNanos, refreshes, lost atomic.Uint64
}

// flight is one load of one key in this process. Callers wait on done; the load goes on after
// done when it served a stale value first.
type flight[V any] struct {
	unlist    func() // removes the flight from its Cache's map
	done      chan struct{}
	delivered bool // guarded by done: only the flight's goroutine sets it
	v         V
	err       error
}

// deliver hands the callers their result, and ends the flight for callers to come: they start
// a load of their own rather than take a result from the past.
func (f *flight[V]) deliver(v V, err error) {
	f.unlist()
	f.deliverEarly(v, err)
}

// deliverEarly hands the callers a stale value while the flight goes on refreshing it; callers
// that come meanwhile get the same value rather than start another refresh.
func (f *flight[V]) deliverEarly(v V, err error) {
	if f.delivered {
		return
	}
	f.v, f.err, f.delivered = v, err, true
	close(f.done)
}

// New returns a Cache over store.
func New[V any](store Store, cfg Config) (*Cache[V], error) {
	if store == nil {
		return nil, fmt.Errorf("%w: nil Store", ErrInvalidConfig)
	}
	if err := cfg.Policy.check("Config"); err != nil {
		return nil, err
	}
	switch {
	case cfg.Jitter < 0 || cfg.Jitter > 1 || math.IsNaN(cfg.Jitter):
		return nil, fmt.Errorf("%w: Config.Jitter must be between 0 and 1", ErrInvalidConfig)
	case cfg.EarlyRefresh < 0 || math.IsNaN(cfg.EarlyRefresh) || math.IsInf(cfg.EarlyRefresh, 0):
		return nil, fmt.Errorf("%w: Config.EarlyRefresh is negative", ErrInvalidConfig)
	case cfg.LoadTimeout < 0:
		return nil, fmt.Errorf("%w: Config.LoadTimeout is negative", ErrInvalidConfig)
	}
	if !store.attach() {
		return nil, fmt.Errorf("%w: the store already serves another Cache", ErrInvalidConfig)
	}
	c := &Cache[V]{store: store, cfg: cfg, codec: cfg.Codec, logger: cfg.Logger, flights: make(map[string]*flight[V])}
	c.l1, c.l2 = store.layers()
	if c.codec == nil {
		c.codec = JSON
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.cfg.LoadTimeout == 0 {
		c.cfg.LoadTimeout = 10 * time.Second
	}
	switch {
	case cfg.NegativeTTL == 0:
		c.negTTL = 30 * time.Second
	case cfg.NegativeTTL > 0:
		c.negTTL = cfg.NegativeTTL
	}
	var zero V
	switch any(zero).(type) {
	case []byte, string:
		c.raw = true
	}
	c.epoch = time.Now()
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Close cancels the loads in flight, waits for their goroutines and frees the store for
// another Cache. It does not close the store. Calls after Close return ErrClosed. Close is
// idempotent and always returns nil.
func (c *Cache[V]) Close() error {
	c.mu.Lock()
	first := c.closed.CompareAndSwap(false, true)
	c.mu.Unlock()
	if first {
		c.cancel()
		c.wg.Wait()
		c.store.detach()
	}
	return nil
}

// Stats returns a snapshot of the cache's counters.
func (c *Cache[V]) Stats() Stats {
	st := Stats{
		RemoteHits: c.remoteHits.Load(), Misses: c.misses.Load(), Stale: c.stale.Load(),
		NegativeHits: c.negHits.Load(), Loads: c.loads.Load(), LoadErrors: c.loadErrs.Load(),
		LoadTime: time.Duration(c.loadNanos.Load()), Refreshes: c.refreshes.Load(), LostFills: c.lost.Load(),
	}
	if c.l2 != nil {
		st.Remote = c.l2.Stats()
		st.Local = st.Remote.Local
	} else if c.l1 != nil {
		st.Local = c.l1.Stats()
	}
	st.LocalHits = st.Local.Hits
	return st
}

// now is the local layer's clock, or the process's monotonic clock without one (ns).
func (c *Cache[V]) now() int64 {
	if c.l1 != nil {
		return c.l1.now()
	}
	return int64(time.Since(c.epoch))
}

// wall is the wall clock (Unix ms) of the times stored in Redis.
func (c *Cache[V]) wall() int64 {
	if c.l1 != nil {
		return c.l1.wall()
	}
	return time.Now().UnixMilli()
}

// Get returns the fresh value of key, from the local layer or Redis. It returns ErrNotFound
// when no layer holds fresh data for key (including a cached "not found").
func (c *Cache[V]) Get(ctx context.Context, key string) (V, error) {
	var zero V
	if c.closed.Load() {
		return zero, ErrClosed
	}
	if c.l1 != nil {
		now := c.l1.now()
		if e := c.l1.get(key, now); e != nil && now < e.fresh {
			return c.value(e)
		}
	}
	if c.closed.Load() {
		return zero, ErrClosed
	}
	if c.l2 == nil {
		c.misses.Add(1)
		return zero, ErrNotFound
	}
	start := c.begin()
	defer c.end()
	b, err := c.l2.get(ctx, key)
	if err != nil {
		return zero, c.storeFailed(err, ErrNotFound)
	}
	now := c.now()
	e := c.remote(key, b, now, c.wall())
	if e == nil || now >= e.fresh {
		c.misses.Add(1)
		return zero, ErrNotFound
	}
	c.remoteHits.Add(1)
	c.fillLocal(e, start)
	return c.value(e)
}

// GetMany returns the fresh values of keys found in any layer, in one round trip to Redis for
// all the keys the local layer does not hold (one per Cluster slot). Keys not found are absent
// from the map.
func (c *Cache[V]) GetMany(ctx context.Context, keys []string) (map[string]V, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	out := make(map[string]V, len(keys))
	var rest []string
	for _, k := range keys {
		if c.l1 == nil {
			rest = append(rest, k)
			continue
		}
		now := c.l1.now()
		if e := c.l1.get(k, now); e != nil && now < e.fresh {
			if !e.neg {
				out[k], _ = e.value.(V)
			}
			continue
		}
		rest = append(rest, k)
	}
	if len(rest) == 0 {
		return out, nil
	}
	if c.closed.Load() {
		return out, ErrClosed
	}
	if c.l2 == nil {
		c.misses.Add(uint64(len(rest)))
		return out, nil
	}
	start := c.begin()
	defer c.end()
	bs, err := c.l2.getMany(ctx, rest)
	if err != nil {
		return out, c.storeFailed(err, nil)
	}
	now, wall := c.now(), c.wall()
	for i, b := range bs {
		e := c.remote(rest[i], b, now, wall)
		if e == nil || now >= e.fresh {
			c.misses.Add(1)
			continue
		}
		c.remoteHits.Add(1)
		c.fillLocal(e, start)
		if !e.neg {
			out[rest[i]], _ = e.value.(V)
		}
	}
	return out, nil
}

// GetOrLoad returns the value of key, calling load when no layer holds it. Concurrent calls
// for one key share one load in this process and, on a RedisStore, in the whole fleet: one
// instance loads while the others wait to be woken. The load runs detached from ctx (bounded
// by Config.LoadTimeout), so a caller that gives up does not fail the others; it gets
// ctx.Err().
//
// A load returning ErrNotFound is cached for Config.NegativeTTL and GetOrLoad returns
// ErrNotFound. Within the stale-while-revalidate window a stale value is returned at once and
// refreshed in the background; within the stale-if-error window it is returned when the load
// fails.
func (c *Cache[V]) GetOrLoad(ctx context.Context, key string, load func(ctx context.Context, key string) (V, error)) (V, error) {
	var fallback *entry
	if c.closed.Load() {
		return *new(V), ErrClosed
	}
	if c.l1 != nil {
		now := c.l1.now()
		if e := c.l1.get(key, now); e != nil {
			switch {
			case now < e.fresh:
				if c.cfg.EarlyRefresh > 0 && c.early(e, now) {
					c.refresh(ctx, key, load, e)
				}
				return c.value(e)
			case now < e.stale:
				c.stale.Add(1)
				c.servedStale(key, nil)
				c.refresh(ctx, key, load, e)
				return c.value(e)
			}
			fallback = e
		}
	}
	var zero V
	if c.closed.Load() {
		return zero, ErrClosed
	}
	f := c.join(ctx, key, load, fallback, false)
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

// refresh starts a background refresh of key unless a load of it is in flight.
func (c *Cache[V]) refresh(ctx context.Context, key string, load func(context.Context, string) (V, error), stale *entry) {
	if c.closed.Load() {
		return
	}
	c.join(ctx, key, load, stale, true)
}

// join returns key's flight, starting one if none is in flight.
func (c *Cache[V]) join(ctx context.Context, key string, load func(context.Context, string) (V, error), fallback *entry, background bool) *flight[V] {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return nil // Close is waiting for the flights: start none
	}
	if f := c.flights[key]; f != nil {
		return f
	}
	f := &flight[V]{done: make(chan struct{})}
	f.unlist = func() {
		c.mu.Lock()
		if c.flights[key] == f {
			delete(c.flights, key)
		}
		c.mu.Unlock()
	}
	c.flights[key] = f
	if background {
		c.refreshes.Add(1)
	}
	c.wg.Add(1)
	go c.fly(context.WithoutCancel(ctx), key, load, f, fallback, background)
	return f
}

func (c *Cache[V]) fly(parent context.Context, key string, load func(context.Context, string) (V, error), f *flight[V], fallback *entry, background bool) {
	// base ends only at Close; the wait for Redis and other instances gets LoadTimeout, and so
	// does the loader, afresh: a wait for a holder that failed does not eat the load's time.
	base, cancelBase := context.WithCancel(parent)
	stop := context.AfterFunc(c.ctx, cancelBase)
	wait := c.cfg.LoadTimeout
	if c.l2 != nil {
		wait += c.leaseTTL() // long enough to outlast the lease of a holder that died
	}
	ctx, cancel := context.WithTimeout(base, wait)
	start := c.begin()
	defer func() {
		c.end()
		stop()
		cancel()
		cancelBase()
		var zero V
		f.deliver(zero, ErrClosed) // unlists; delivers only if nothing was: never hang a caller
		c.wg.Done()
	}()
	if background {
		// The caller was served the stale (or still fresh) value; so is every caller that
		// joins while the refresh runs.
		v, err := c.value(fallback)
		f.deliverEarly(v, err)
	}
	c.resolve(ctx, base, key, load, f, fallback, background, start)
}

// resolve finds key's value for a flight: Redis, then the lease, then the loader.
func (c *Cache[V]) resolve(ctx, base context.Context, key string, load func(context.Context, string) (V, error), f *flight[V], fallback *entry, background bool, start uint64) {
	// A background refresh of a stale entry reads Redis first: another instance may have
	// refreshed it. An early refresh of a fresh entry goes straight for the lease.
	refresh := background
	read := !background || c.now() >= fallback.fresh
	held, token := false, ""
	for c.l2 != nil && !held {
		if read {
			b, err := c.l2.get(ctx, key)
			if err != nil {
				if e := c.storeFailed(err, nil); e != nil {
					f.deliver(*new(V), e)
					return
				}
				break // without Redis: the loader, without a lease
			}
			if c.useRemote(key, b, f, &fallback, start) {
				return
			}
			refresh = refresh || b != nil // there, but stale or unreadable: the lease reloads it
		}
		// From here on the lease script reads the value itself: one round trip per turn.
		read = false
		if token == "" {
			token = rand.Text()
		}
		wake := c.l2.waiter(key)
		kind, val, wait, err := c.l2.acquire(ctx, key, token, c.leaseTTL(), refresh)
		if kind != leaseWait {
			c.l2.unwait(key, wake)
		}
		if err != nil {
			if e := c.storeFailed(err, nil); e != nil {
				f.deliver(*new(V), e)
				return
			}
			break
		}
		switch kind {
		case leaseHeld:
			held = true
		case leaseValue:
			if c.useRemote(key, val, f, &fallback, start) {
				return
			}
			refresh = true
		case leaseWait:
			if f.delivered {
				c.l2.unwait(key, wake)
				return // another instance refreshes; the stale value was served
			}
			t := time.NewTimer(wait)
			select {
			case <-wake:
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
			c.l2.unwait(key, wake)
			if ctx.Err() != nil {
				c.failed(f, key, fallback, ctx.Err())
				return
			}
			refresh = false // the holder filled it, or gave up: the script returns what is there
		}
	}
	if held && c.leaseTTL() < c.cfg.LoadTimeout {
		stop := make(chan struct{})
		defer close(stop)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.l2.keepLease(key, token, c.leaseTTL(), stop)
		}()
	}
	if !f.delivered {
		c.misses.Add(1) // a caller waits for the loader
	}
	lctx, cancel := context.WithTimeout(base, c.cfg.LoadTimeout)
	defer cancel()
	c.load(lctx, key, load, f, fallback, held, token, start)
}

// useRemote considers an entry read from Redis for a flight: fresh, it is delivered (true);
// within stale-while-revalidate, it is served while the flight refreshes it; otherwise it may
// still serve a failed refresh (stale-if-error) as the fallback.
func (c *Cache[V]) useRemote(key string, b []byte, f *flight[V], fallback **entry, start uint64) bool {
	now := c.now()
	e := c.remote(key, b, now, c.wall())
	if e == nil {
		return false
	}
	switch {
	case now < e.fresh:
		c.remoteHits.Add(1)
		c.fillLocal(e, start)
		c.deliverEntry(f, e)
		return true
	case now < e.stale && !f.delivered:
		c.remoteHits.Add(1)
		c.stale.Add(1)
		c.servedStale(key, nil)
		c.fillLocal(e, start)
		v, err := c.value(e)
		f.deliverEarly(v, err)
	}
	if *fallback == nil || e.hard > (*fallback).hard {
		*fallback = e
	}
	return false
}

// leaseTTL is how long a lease lives unless its holder extends it.
func (c *Cache[V]) leaseTTL() time.Duration {
	return min(c.cfg.LoadTimeout, leasePeriod) + c.l2.timeout
}

// load calls the loader, stores what it returns, and delivers it.
func (c *Cache[V]) load(ctx context.Context, key string, load func(context.Context, string) (V, error), f *flight[V], fallback *entry, held bool, token string, start uint64) {
	v, took, err := c.call(ctx, key, load)
	notFound := errors.Is(err, ErrNotFound)
	// The load's context may have ended (Close, LoadTimeout): the lease is still given back
	// or filled, each bounded by the store's own timeout.
	ctx = context.WithoutCancel(ctx)
	if err != nil && !(notFound && c.negTTL > 0) {
		if held {
			_, _ = c.l2.fill(ctx, key, token, nil, 0) // give the lease back: wake the waiters
		}
		if notFound {
			f.deliver(v, ErrNotFound)
			return
		}
		c.failed(f, key, fallback, err)
		return
	}
	now, wall := c.now(), c.wall()
	e := c.newEntry(key, v, notFound, took, 0, now)
	if c.l2 != nil && held {
		env, encErr := c.encode(e, v, now, wall)
		if encErr != nil {
			_, _ = c.l2.fill(ctx, key, token, nil, 0)
			f.deliver(v, encErr)
			return
		}
		stored, ferr := c.l2.fill(ctx, key, token, env, time.Duration(e.hard-now))
		if ferr != nil {
			c.storeFailed(ferr, nil)
		} else if !stored {
			// A Set or Delete revoked the lease during the load: what was loaded may be
			// older than what was written, so it goes to the callers only.
			c.lost.Add(1)
			c.deliverLoaded(f, v, notFound)
			return
		}
	}
	if c.l1 != nil {
		if !c.l1.fill(e, start) {
			c.lost.Add(1)
		}
	}
	c.deliverLoaded(f, v, notFound)
}

func (c *Cache[V]) deliverLoaded(f *flight[V], v V, notFound bool) {
	if notFound {
		f.deliver(v, ErrNotFound)
		return
	}
	f.deliver(v, nil)
}

// failed delivers a load's error, or the stale value while stale-if-error allows it.
func (c *Cache[V]) failed(f *flight[V], key string, fallback *entry, err error) {
	if fallback != nil && c.now() < fallback.hard {
		c.stale.Add(1)
		c.servedStale(key, err)
		c.deliverEntry(f, fallback)
		return
	}
	f.deliver(*new(V), err)
}

// call runs the loader, turning a panic into ErrLoaderPanic.
func (c *Cache[V]) call(ctx context.Context, key string, load func(context.Context, string) (V, error)) (v V, took time.Duration, err error) {
	t0 := time.Now()
	defer func() {
		if r := recover(); r != nil {
			c.logger.Error("cache: loader panicked", "key", key, "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("%w: %v", ErrLoaderPanic, r)
		}
		took = time.Since(t0)
		c.loads.Add(1)
		c.loadNanos.Add(uint64(took))
		if err != nil && !errors.Is(err, ErrNotFound) {
			c.loadErrs.Add(1)
		}
		if h := c.cfg.Hooks.OnLoad; h != nil {
			h(key, took, err)
		}
	}()
	v, err = load(ctx, key)
	return v, 0, err
}

// Set stores value under key in every layer, fresh for Config.TTL, and makes every other
// instance drop the key from its local layer. When Redis fails, the key is dropped from the
// local layer too (so that this instance does not hold what the others cannot see) and the
// error matches ErrUnavailable.
func (c *Cache[V]) Set(ctx context.Context, key string, value V) error {
	return c.set(ctx, []string{key}, []V{value}, 0)
}

// SetWithTTL is Set with a TTL of its own for this entry (the stale windows of Config still
// follow it).
func (c *Cache[V]) SetWithTTL(ctx context.Context, key string, value V, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("%w: TTL must be positive", ErrInvalidConfig)
	}
	return c.set(ctx, []string{key}, []V{value}, ttl)
}

// SetMany stores every item as Set does, in one round trip to Redis.
func (c *Cache[V]) SetMany(ctx context.Context, items map[string]V) error {
	keys := make([]string, 0, len(items))
	vals := make([]V, 0, len(items))
	for k, v := range items {
		keys = append(keys, k)
		vals = append(vals, v)
	}
	return c.set(ctx, keys, vals, 0)
}

func (c *Cache[V]) set(ctx context.Context, keys []string, vals []V, ttl time.Duration) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if len(keys) == 0 {
		return nil
	}
	c.unlistFlights(keys)
	now, wall := c.now(), c.wall()
	entries := make([]*entry, len(keys))
	for i, k := range keys {
		entries[i] = c.newEntry(k, vals[i], false, 0, ttl, now)
	}
	if c.l2 == nil {
		for _, e := range entries {
			c.l1.set(e)
		}
		return nil
	}
	envs := make([][]byte, len(keys))
	keeps := make([]time.Duration, len(keys))
	for i, e := range entries {
		env, err := c.encode(e, vals[i], now, wall)
		if err != nil {
			return err
		}
		envs[i], keeps[i] = env, time.Duration(e.hard-now) // kept until no longer served, even stale
	}
	start := c.begin()
	defer c.end()
	err := c.l2.write(ctx, keys, envs, keeps)
	if c.l1 != nil {
		for _, e := range entries {
			if err != nil {
				c.l1.invalidate(e.key)
			} else {
				// Guarded: an announcement of a later write by another instance, heard while
				// this write was on its way, wins. A new generation: a read that fetched the
				// old value before this write cannot replace it.
				c.l1.fillWrite(e, start)
			}
		}
	}
	if err != nil {
		c.storeError(err)
		return err
	}
	return nil
}

// Delete removes keys from every layer, revokes loads of them in flight anywhere in the fleet
// (their result is not stored), and makes every other instance drop them from its local layer.
// The keys leave the local layer even when Redis fails, and the error matches ErrUnavailable.
func (c *Cache[V]) Delete(ctx context.Context, keys ...string) error {
	if c.closed.Load() {
		return ErrClosed
	}
	c.unlistFlights(keys)
	var err error
	if c.l2 != nil && len(keys) > 0 {
		err = c.l2.write(ctx, keys, nil, nil)
	}
	if c.l1 != nil {
		for _, k := range keys {
			c.l1.invalidate(k)
		}
	}
	if err != nil {
		c.storeError(err)
	}
	return err
}

// unlistFlights makes calls that come after a write start loads of their own, rather than join
// a flight (a refresh serving the stale value, or a load that read the source before the write).
func (c *Cache[V]) unlistFlights(keys []string) {
	c.mu.Lock()
	for _, k := range keys {
		delete(c.flights, k)
	}
	c.mu.Unlock()
}

func (c *Cache[V]) begin() uint64 {
	if c.l1 == nil {
		return 0
	}
	return c.l1.begin()
}

func (c *Cache[V]) end() {
	if c.l1 != nil {
		c.l1.end()
	}
}

// newEntry builds the entry of a loaded or set value, with the policy's times (ttl, when not
// zero, replaces Config.TTL) counted from now.
func (c *Cache[V]) newEntry(key string, v V, neg bool, took, ttl time.Duration, now int64) *entry {
	e := &entry{key: key, neg: neg, load: int64(took), weight: defaultWeight}
	if neg {
		e.fresh = now + int64(c.negTTL)
		e.stale, e.hard = e.fresh, e.fresh
		e.weight = 0
		return e
	}
	e.value = v
	if ttl == 0 {
		ttl = c.cfg.ttl()
	}
	ttl = min(ttl, maxTTL)
	if c.cfg.Jitter > 0 {
		ttl -= time.Duration(mrand.Float64() * c.cfg.Jitter * float64(ttl))
	}
	e.fresh = now + int64(ttl)
	swr, sie := min(c.cfg.StaleWhileRevalidate, maxTTL), min(c.cfg.StaleIfError, maxTTL)
	e.stale = e.fresh + int64(swr)
	e.hard = e.fresh + int64(max(swr, sie))
	switch x := any(v).(type) {
	case []byte:
		e.weight = int64(len(x))
	case string:
		e.weight = int64(len(x))
	}
	return e
}

// encode builds e's envelope for Redis, with its times on the wall clock (now and wall are one
// instant on the two clocks).
func (c *Cache[V]) encode(e *entry, v V, now, wall int64) ([]byte, error) {
	env := envelope{
		fresh: wall + (e.fresh-now)/1e6, stale: wall + (e.stale-now)/1e6, hard: wall + (e.hard-now)/1e6,
		load: e.load / 1e6,
	}
	switch {
	case e.neg:
		env.flags = flagNegative
	case c.raw:
		env.flags = flagRaw
		switch x := any(v).(type) {
		case []byte:
			env.payload = x
		case string:
			// Appended as it is: no []byte copy of the string first.
			return append(env.append(make([]byte, 0, 24+len(x))), x...), nil
		}
	default:
		b, err := c.codec.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("cache: encode %q: %w", e.key, err)
		}
		env.payload = b
	}
	return env.append(make([]byte, 0, 24+len(env.payload))), nil
}

// remote turns an envelope read from Redis into an entry on the local clock; nil when b is nil
// or does not decode (it then counts as a miss, and the next load overwrites it).
func (c *Cache[V]) remote(key string, b []byte, now, wall int64) *entry {
	if b == nil {
		return nil
	}
	env, err := decodeEnvelope(b)
	if err != nil {
		return nil
	}
	e := &entry{key: key, neg: env.flags&flagNegative != 0, load: env.load * 1e6, weight: int64(len(env.payload))}
	if !e.neg {
		var v V
		switch {
		case env.flags&flagRaw != 0:
			switch p := any(&v).(type) {
			case *[]byte:
				*p = env.payload
			case *string:
				*p = string(env.payload)
			default:
				return nil // stored raw by a cache of another type
			}
		case c.raw:
			return nil
		default:
			if c.codec.Unmarshal(env.payload, &v) != nil {
				return nil
			}
		}
		e.value = v
	}
	// Clamped, so that no time written by another instance can overflow.
	local := func(ms int64) int64 { return now + min(max(ms-wall, -maxTTLms), maxTTLms)*1e6 }
	e.fresh, e.stale, e.hard = local(env.fresh), local(env.stale), local(env.hard)
	return e
}

// fillLocal stores an entry read from Redis in the local layer, unless it was invalidated
// since start. While the store cannot hear invalidations, the entry lives at most
// RetryInterval.
func (c *Cache[V]) fillLocal(e *entry, start uint64) {
	if c.l1 == nil {
		return
	}
	if c.l2 != nil && !c.l2.sub.Hearing() {
		limit := c.now() + int64(c.l2.rc.RetryInterval())
		cp := &entry{key: e.key, value: e.value, neg: e.neg, load: e.load, weight: e.weight,
			fresh: min(e.fresh, limit), stale: min(e.stale, limit), hard: min(e.hard, limit)}
		e = cp
	}
	c.l1.fill(e, start)
}

func (c *Cache[V]) value(e *entry) (V, error) {
	if e == nil {
		return *new(V), ErrNotFound
	}
	if e.neg {
		c.negHits.Add(1)
		return *new(V), ErrNotFound
	}
	v, _ := e.value.(V) // a nil interface value is stored as nil
	return v, nil
}

func (c *Cache[V]) deliverEntry(f *flight[V], e *entry) {
	v, err := c.value(e)
	f.deliver(v, err)
}

func (c *Cache[V]) servedStale(key string, err error) {
	if h := c.cfg.Hooks.OnStale; h != nil {
		h(key, err)
	}
}

func (c *Cache[V]) storeError(err error) {
	if h := c.cfg.Hooks.OnStoreError; h != nil {
		h(err)
	}
}

// storeFailed reports a Redis failure on a read and returns what the read should return: err
// itself with FailOnStoreError, else def (nil: go on without Redis).
func (c *Cache[V]) storeFailed(err, def error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if !errors.Is(err, ErrUnavailable) {
			return err // the caller went away
		}
	}
	c.storeError(err)
	if c.cfg.FailOnStoreError {
		return err
	}
	return def
}
