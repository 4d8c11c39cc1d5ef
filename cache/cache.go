package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxTTL caps every duration a Cache adds to a time, so that none overflows.
const (
	maxTTL   = 100 * 365 * 24 * time.Hour
	maxTTLms = int64(maxTTL / time.Millisecond)
)

// Config configures a [Cache]. The zero value is ready to use: data fresh for 300 s, "not found"
// cached for 30 s, loads bounded by 10 s. A Config is a plain value; New copies it.
type Config struct {
	// Policy is how long data stays fresh, and how long it may then be served stale while
	// being refreshed (StaleWhileRevalidate) or when its refresh fails (StaleIfError).
	// Default: Policy{} (fresh for 300s, never stale).
	Policy
	// Namespace keeps this Cache's keys apart from those of the other caches on its store: in
	// Redis they are Prefix+Namespace+":"+{key}, and its announcements name it. It must not
	// contain '{' or '}'. Each Cache open on a store needs a namespace of its own.
	// Default: "" (keys are Prefix+{key}).
	Namespace string
	// Local sizes the local layer this Cache keeps in front of a RedisStore. Over a
	// MemoryStore it is not used: the store is the Cache's only layer, sized by its own
	// MemoryConfig. Default: MemoryConfig{} (10000 entries).
	Local MemoryConfig
	// DisableLocal removes the local layer in front of a RedisStore: every read reaches Redis.
	// Over a MemoryStore it is not used. Default: false.
	DisableLocal bool
	// NegativeTTL is how long a loader's ErrNotFound is cached, so that lookups of missing
	// data do not reach the source each time. Other loader errors are never cached.
	// Default: 30s.
	NegativeTTL time.Duration
	// DisableNegative turns negative caching off: every lookup of missing data reaches the
	// loader. Default: false.
	DisableNegative bool
	// Jitter shortens each TTL by a random fraction up to Jitter (0 to 1), so that data
	// stored at the same moment (after a deploy) does not expire at the same moment; 0.1 is a
	// good value. Default: 0.
	Jitter float64
	// EarlyRefresh, when positive, refreshes fresh data in the background shortly before it
	// expires, with a probability that grows as expiry nears and with how long the data took
	// to load (XFetch, Vattani et al., VLDB 2015): 1 is the paper's value; larger refreshes
	// earlier. Hot keys then never expire under their readers. Default: 0 (off).
	EarlyRefresh float64
	// LoadTimeout bounds each call of a loader, which runs detached from its callers so that
	// one caller's cancellation does not fail the others. At LoadTimeout the callers get an
	// error matching context.DeadlineExceeded (or a stale value, within StaleIfError), even
	// when the loader ignores its context: it is then abandoned, and what it returns is
	// dropped. Callers waiting for another instance's load wait at most LoadTimeout and a
	// lease period (at most 2s, plus RedisConfig.Timeout) before they load themselves.
	// Default: 10s.
	LoadTimeout time.Duration
	// Codec encodes values for Redis. []byte and string values are stored as they are.
	// Default: encoding/json.
	Codec Codec
	// FailOnStoreError makes reads return an error matching ErrUnavailable when Redis fails,
	// instead of going on without it (the local layer, then the loader). Default: false.
	FailOnStoreError bool
	// Hooks are called as the cache works. Default: none.
	Hooks Hooks
	// Logger receives loaders' panics, with their stacks. Default: slog.Default().
	Logger *slog.Logger
}

// Hooks are optional functions called as a [Cache] works, for metrics and traces. They are
// called synchronously, on the goroutine doing the work, and must be quick and safe for
// concurrent use. The zero value calls nothing.
type Hooks struct {
	// OnLoad follows each call of a loader, with the load's context, how long it took and
	// what it returned.
	OnLoad func(ctx context.Context, key string, took time.Duration, err error)
	// OnStale follows each stale value served: refreshing (the stale-while-revalidate
	// window) or because its refresh failed (stale-if-error, err non-nil).
	OnStale func(ctx context.Context, key string, err error)
	// OnStoreError follows each failed call to Redis.
	OnStoreError func(ctx context.Context, err error)
}

// Stats counts what a Cache did since it was created. It is a snapshot, a plain value; the
// zero value counts nothing.
type Stats struct {
	// LocalHits counts fresh values served by the local layer; RemoteHits, values read from
	// Redis.
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
	// Local describes the local layer: the Cache's own in front of a RedisStore, or its
	// MemoryStore's, shared by the caches on that store.
	Local MemoryStats
}

// Cache is a typed cache of values V under string keys, over a [Store]: a [MemoryStore], or a
// [RedisStore] with a local layer of the Cache's own in front.
//
// A value handed to Set or returned by a loader is kept as it is in process memory and handed
// to every reader: treat it as immutable (a []byte, a map or a pointer included).
//
// The zero value is not usable; create a Cache with [New]. It is safe for concurrent use. Loads
// run on their own goroutines; Close ends them.
type Cache[V any] struct {
	local  *localLayer
	salt   uint64      // xored into key hashes: keeps this Cache's entries apart in a shared layer
	remote *redisLayer // nil over a MemoryStore: the local layer is the store
	detach func()
	cfg    Config // with its defaults
	codec  Codec
	raw    bool          // V is []byte or string: stored without the codec
	negTTL time.Duration // zero: negative caching is off
	logger *slog.Logger

	hits *lookups // fresh local hits; allocated apart, so no other field shares their lines

	mu      sync.Mutex
	flights map[string]*flight[V]
	wg      sync.WaitGroup
	life    context.Context // ends at Close: loads in flight are cancelled
	cancel  context.CancelFunc
	closed  atomic.Bool

	// Only the cold paths count here: a local hit is counted in hits. A load counts in
	// loadOKs or in loadErrs, never in both: Stats adds them up, so that a snapshot taken while
	// a load ends never shows more failures than loads, nor a failed load as a good one.
	remoteHits, misses, stale, negHits, loadOKs, loadErrs, loadNanos, refreshes, lost atomic.Uint64
}

// lookups counts hits spread over stripes: every hit writes one, and one counter would make
// the cores reading hot keys fight over its cache line. The stripe is random, not the key's:
// every core reads the hottest keys, and a stripe per key would be written by all of them.
type lookups [64]struct {
	n atomic.Uint64
	_ [120]byte // 128 bytes a stripe: neighbours never share a line, nor the adjacent-line prefetch
}

func (l *lookups) add() { l[mrand.Uint32()&63].n.Add(1) }

func (l *lookups) sum() uint64 {
	var n uint64
	for i := range l {
		n += l[i].n.Load()
	}
	return n
}

// New returns a Cache over store. Its error wraps ErrInvalidConfig and names the field at fault,
// or matches ErrClosed for a closed store.
func New[V any](store Store, cfg Config) (*Cache[V], error) {
	if store == nil {
		return nil, fmt.Errorf("%w: nil Store", ErrInvalidConfig)
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	c := &Cache[V]{cfg: cfg, codec: cfg.Codec, logger: cfg.Logger, negTTL: cfg.NegativeTTL, flights: make(map[string]*flight[V]), hits: new(lookups)}
	if c.codec == nil {
		c.codec = jsonCodec{}
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	if c.cfg.LoadTimeout == 0 {
		c.cfg.LoadTimeout = 10 * time.Second
	}
	switch {
	case cfg.DisableNegative:
		c.negTTL = 0
	case cfg.NegativeTTL == 0:
		c.negTTL = 30 * time.Second
	}
	var zero V
	switch any(zero).(type) {
	case []byte, string:
		c.raw = true
	}
	l, err := store.open(openConfig{
		namespace: cfg.Namespace, local: cfg.Local, disableLocal: cfg.DisableLocal,
		codec: c.codec, raw: c.raw, loadTimeout: c.cfg.LoadTimeout,
	})
	if err != nil {
		return nil, err
	}
	c.local, c.salt, c.remote, c.detach = l.local, l.salt, l.remote, l.close
	c.life, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

func (cfg *Config) check() error {
	if err := cfg.Policy.check("Config"); err != nil {
		return err
	}
	switch {
	case strings.ContainsAny(cfg.Namespace, "{}"):
		return fmt.Errorf("%w: Config.Namespace %q must not contain '{' or '}'", ErrInvalidConfig, cfg.Namespace)
	case cfg.NegativeTTL < 0:
		return fmt.Errorf("%w: Config.NegativeTTL %v is negative (DisableNegative turns negative caching off)", ErrInvalidConfig, cfg.NegativeTTL)
	case cfg.Jitter < 0 || cfg.Jitter > 1 || math.IsNaN(cfg.Jitter):
		return fmt.Errorf("%w: Config.Jitter %v must be between 0 and 1", ErrInvalidConfig, cfg.Jitter)
	case cfg.EarlyRefresh < 0 || math.IsNaN(cfg.EarlyRefresh) || math.IsInf(cfg.EarlyRefresh, 0):
		return fmt.Errorf("%w: Config.EarlyRefresh %v must be a positive number or zero", ErrInvalidConfig, cfg.EarlyRefresh)
	case cfg.LoadTimeout < 0:
		return fmt.Errorf("%w: Config.LoadTimeout %v is negative", ErrInvalidConfig, cfg.LoadTimeout)
	}
	return nil
}

// Close cancels the loads in flight and waits for their loaders to return, but not past each
// load's LoadTimeout: a loader that ignores its context is abandoned then. Over a RedisStore
// each load then gives its lease back, within RedisConfig.Timeout. So Close returns within
// Config.LoadTimeout plus RedisConfig.Timeout, or five times Timeout (the bound of a loaded
// value's write to Redis already on its way) if that is longer. It then detaches the Cache
// from its store, which frees its namespace; it does not close the store. Calls after Close
// return ErrClosed. Close is idempotent and always returns nil.
func (c *Cache[V]) Close() error {
	c.mu.Lock()
	first := c.closed.CompareAndSwap(false, true)
	c.mu.Unlock()
	if first {
		c.cancel()
		c.wg.Wait()
		c.detach()
	}
	return nil
}

// Stats returns a snapshot of the cache's counters.
func (c *Cache[V]) Stats() Stats {
	errs := c.loadErrs.Load()
	return Stats{
		LocalHits: c.hits.sum(), RemoteHits: c.remoteHits.Load(), Misses: c.misses.Load(),
		Stale: c.stale.Load(), NegativeHits: c.negHits.Load(), Loads: c.loadOKs.Load() + errs,
		LoadErrors: errs, LoadTime: time.Duration(c.loadNanos.Load()),
		Refreshes: c.refreshes.Load(), LostFills: c.lost.Load(), Local: c.local.stats(),
	}
}

func (c *Cache[V]) hash(key string) uint64 { return c.local.hash(key, c.salt) }

// now is the local layer's clock (ns); times adds the wall clock (Unix ms) of the times stored
// in Redis, read at the same instant.
func (c *Cache[V]) now() int64               { return c.local.clock.now() }
func (c *Cache[V]) times() (now, wall int64) { return c.local.clock.times() }

// Get returns the fresh value of key, from the local layer or Redis. It returns ErrNotFound
// when no layer holds fresh data for key (including a cached "not found").
func (c *Cache[V]) Get(ctx context.Context, key string) (V, error) {
	if c.closed.Load() {
		return *new(V), ErrClosed
	}
	h := c.hash(key)
	now := c.now()
	if e := c.local.get(h, key, now); e != nil && now < e.fresh {
		c.hits.add()
		return c.value(e)
	}
	return c.getRemote(ctx, key, h)
}

func (c *Cache[V]) getRemote(ctx context.Context, key string, h uint64) (V, error) {
	var zero V
	if c.remote == nil {
		c.misses.Add(1)
		return zero, ErrNotFound
	}
	start := c.local.begin()
	defer c.local.end()
	b, err := c.remote.get(ctx, key)
	if err != nil {
		return zero, c.storeFailed(ctx, err, ErrNotFound)
	}
	now, wall := c.times()
	if e := c.fromRemote(key, h, b, now, wall, start); e != nil {
		return c.value(e)
	}
	return zero, ErrNotFound
}

// fromRemote turns an envelope read from Redis (nil: none) into the entry to serve: a fresh
// one is counted as a remote hit and stored in the local layer, unless invalidated since
// start; anything else is counted as a miss, and gives nil.
func (c *Cache[V]) fromRemote(key string, h uint64, b []byte, now, wall int64, start uint64) *entry {
	e := c.decode(key, h, b, now, wall)
	if e == nil || now >= e.fresh {
		c.misses.Add(1)
		return nil
	}
	c.remoteHits.Add(1)
	c.fillLocal(e, start, now)
	return e
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
	var hashes []uint64
	now := c.now()
	for _, k := range keys {
		h := c.hash(k)
		if e := c.local.get(h, k, now); e != nil && now < e.fresh {
			c.hits.add()
			if v, err := c.value(e); err == nil {
				out[k] = v
			}
			continue
		}
		rest, hashes = append(rest, k), append(hashes, h)
	}
	if len(rest) == 0 {
		return out, nil
	}
	if c.remote == nil {
		c.misses.Add(uint64(len(rest)))
		return out, nil
	}
	start := c.local.begin()
	defer c.local.end()
	bs, err := c.remote.getMany(ctx, rest)
	if err != nil {
		return out, c.storeFailed(ctx, err, nil)
	}
	now, wall := c.times()
	for i, b := range bs {
		if e := c.fromRemote(rest[i], hashes[i], b, now, wall, start); e != nil {
			if v, err := c.value(e); err == nil {
				out[rest[i]] = v
			}
		}
	}
	return out, nil
}

// Set stores value under key in every layer, fresh for Config.TTL, and makes every other
// instance drop the key from its local layer. When Redis fails, the key is dropped from the
// local layer too (so that this instance does not hold what the others cannot see) and the
// error matches ErrUnavailable.
func (c *Cache[V]) Set(ctx context.Context, key string, value V) error {
	return c.set(ctx, []string{key}, []V{value}, 0)
}

// SetWithTTL is Set with a TTL of its own for this entry (the stale windows of Config still
// follow it). A ttl that is not positive returns an error matching ErrInvalidConfig.
func (c *Cache[V]) SetWithTTL(ctx context.Context, key string, value V, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("%w: SetWithTTL: ttl %v must be positive", ErrInvalidConfig, ttl)
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
	now, wall := c.times()
	entries := make([]*entry, len(keys))
	for i, k := range keys {
		entries[i] = c.newEntry(k, vals[i], false, 0, ttl, now)
	}
	if c.remote == nil {
		for _, e := range entries {
			c.local.set(e, now)
		}
		return nil
	}
	start := c.local.begin()
	defer c.local.end()
	err := c.remote.write(ctx, entries, now, wall)
	if errors.Is(err, errEncoding) {
		return err // nothing was written
	}
	for _, e := range entries {
		if err != nil {
			c.local.invalidate(e.hash, e.key)
		} else {
			// Guarded: an announcement of a later write by another instance, heard while
			// this write was on its way, wins. A new generation: a read that fetched the
			// old value before this write cannot replace it.
			c.local.fillWrite(c.capUnheard(e, now), start, now)
		}
	}
	if err != nil {
		c.storeError(ctx, err)
	}
	return err
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
	if c.remote != nil {
		err = c.remote.delete(ctx, keys)
	}
	for _, k := range keys {
		c.local.invalidate(c.hash(k), k)
	}
	if err != nil {
		c.storeError(ctx, err)
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

// newEntry builds the entry of a loaded or set value, with the policy's times (ttl, when not
// zero, replaces Config.TTL) counted from now.
func (c *Cache[V]) newEntry(key string, v V, neg bool, took, ttl time.Duration, now int64) *entry {
	e := &entry{key: key, hash: c.hash(key), neg: neg, load: int64(took), weight: defaultWeight}
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

// fillLocal stores an entry read from Redis or loaded in the local layer, unless its key was
// invalidated since start.
func (c *Cache[V]) fillLocal(e *entry, start uint64, now int64) (refused bool) {
	return c.local.fill(c.capUnheard(e, now), start, now)
}

// capUnheard returns e, or while the local layer cannot hear the other instances' writes, a copy
// of e that lives at most RetryInterval: another instance may change the key unheard.
func (c *Cache[V]) capUnheard(e *entry, now int64) *entry {
	if c.remote == nil || c.remote.hearing() {
		return e
	}
	limit := now + int64(c.remote.retryInterval())
	return &entry{key: e.key, hash: e.hash, value: e.value, neg: e.neg, load: e.load, weight: e.weight,
		fresh: min(e.fresh, limit), stale: min(e.stale, limit), hard: min(e.hard, limit)}
}

func (c *Cache[V]) value(e *entry) (V, error) {
	if e.neg {
		c.negHits.Add(1)
		return *new(V), ErrNotFound
	}
	v, _ := e.value.(V) // a nil interface value is stored as nil
	return v, nil
}

func (c *Cache[V]) servedStale(ctx context.Context, key string, err error) {
	if h := c.cfg.Hooks.OnStale; h != nil {
		h(ctx, key, err)
	}
}

func (c *Cache[V]) storeError(ctx context.Context, err error) {
	if h := c.cfg.Hooks.OnStoreError; h != nil {
		h(ctx, err)
	}
}

// storeFailed reports a Redis failure on a read and returns what the read should return: err
// itself with FailOnStoreError, else def (nil: go on without Redis). The caller's own context
// ending is no failure of Redis: its error is returned as it is.
func (c *Cache[V]) storeFailed(ctx context.Context, err, def error) error {
	if ctx.Err() != nil && !errors.Is(err, ErrUnavailable) {
		return err
	}
	c.storeError(ctx, err)
	if c.cfg.FailOnStoreError {
		return err
	}
	return def
}
