package cache

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/internal/redisclient"
)

// RedisConfig configures a [RedisStore]. The zero value is ready to use; a RedisConfig is a
// plain value, and NewRedisStore copies it.
//
// Create the client with ContextTimeoutEnabled: true (redis.Options, redis.ClusterOptions,
// redis.FailoverOptions): go-redis then stops each call at its deadline. Without it, each call
// runs on a goroutine of its own so that the store can stop waiting at the deadline.
type RedisConfig struct {
	// Prefix starts every key and the announcement channel. It must not contain '{' or '}'.
	// Caches on one store are kept apart by their Config.Namespace; give each service (or
	// each store sharing a Redis) its own Prefix. Default: "cache:".
	Prefix string
	// Timeout bounds each round trip to Redis, and longer for many keys at once (up to ten
	// times for 90 keys). A read that takes longer is answered without Redis (by the local
	// layer or the loader). Default: 100ms.
	Timeout time.Duration
	// FailFastAfter is how many consecutive failed round trips make the store fail fast: every
	// call then goes without Redis for RetryInterval, before one call tries it again.
	// Default: 3.
	FailFastAfter int
	// RetryInterval is how long the store fails fast before it tries Redis again. Entries that
	// local layers store while they cannot hear invalidations live at most this long.
	// Default: 500ms.
	RetryInterval time.Duration
	// PingInterval is how long the invalidation subscription may stay silent before it is
	// checked with a PING. A subscription that does not answer within PingInterval more is
	// dropped, which flushes the local layers, and made again. Default: 1s.
	PingInterval time.Duration
	// Logger receives the store's state changes: Redis failing and answering again, the
	// subscription lost and made again. Default: slog.Default().
	Logger *slog.Logger
}

// RedisStore keeps data in Redis, shared by every instance of a service, for any number of
// caches; each Cache keeps its own local layer (L1) in front unless Config.DisableLocal. It
// works on standalone Redis, Sentinel and Cluster through any [redis.UniversalClient], and
// never closes the client.
//
// Every write of a key, and every end of a load's lease, is announced on one channel by the
// script that makes it; the store listens to it with one subscription, and drops the key from
// the local layer of the Cache of its namespace.
//
// The zero value is not usable; create a RedisStore with [NewRedisStore]. It is safe for
// concurrent use. It runs one goroutine, the subscription, stopped by Close.
type RedisStore struct {
	rc      *redisclient.Client
	prefix  string
	channel string
	origin  string // this store's id in announcements: its own are not applied twice
	timeout time.Duration
	clock   *clock
	sub     *redisclient.Subscription
	caches  namespaces[*redisLayer]

	closed atomic.Bool

	hits, misses, errs, sent, received, flushes atomic.Uint64
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a RedisStore over rdb. It waits, at most Timeout, for the invalidation
// subscription to be confirmed; if Redis does not answer, the store starts without it and
// subscribes as soon as Redis does. Its error wraps ErrInvalidConfig and names the field at
// fault.
func NewRedisStore(rdb redis.UniversalClient, cfg RedisConfig) (*RedisStore, error) {
	if cfg.PingInterval < 0 {
		return nil, fmt.Errorf("%w: RedisConfig.PingInterval %v is negative", ErrInvalidConfig, cfg.PingInterval)
	}
	rc, err := redisclient.New(rdb, redisclient.Config{
		Component: "cache", Prefix: cfg.Prefix, DefaultPrefix: "cache:",
		Timeout: cfg.Timeout, DefaultTimeout: 100 * time.Millisecond,
		RetryInterval: cfg.RetryInterval, FailFastAfter: cfg.FailFastAfter,
		Unavailable: ErrUnavailable, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	s := &RedisStore{
		rc: rc, prefix: rc.Prefix(), channel: rc.Prefix() + "invalidate",
		origin: rand.Text(), timeout: rc.Timeout(), clock: newClock(),
	}
	s.sub = rc.Subscribe(redisclient.SubscribeConfig{
		Channel: s.channel, PingInterval: cfg.PingInterval,
		OnMessage: s.heard, OnSubscribed: s.subscribed,
		OnLost: func(error) { s.flush(false) },
	})
	s.sub.WaitReady(s.timeout)
	return s, nil
}

// open gives a Cache a local layer of its own and its remote layer: Redis under the Cache's
// namespace.
func (s *RedisStore) open(o openConfig) (layers, error) {
	if s.closed.Load() {
		return layers{}, ErrClosed
	}
	if err := o.local.check("Config.Local"); err != nil {
		return layers{}, err
	}
	r := &redisLayer{
		s: s, namespace: o.namespace, keyPrefix: s.prefix,
		local: newLocalLayer(o.local, s.clock, o.disableLocal),
		codec: o.codec, raw: o.raw,
		lease:   min(o.loadTimeout, leasePeriod) + s.timeout,
		waiters: make(map[string]chan struct{}),
	}
	if o.namespace != "" {
		r.keyPrefix += o.namespace + ":"
	}
	if err := s.caches.add(o.namespace, r); err != nil {
		return layers{}, err
	}
	return layers{local: r.local, remote: r, close: func() { s.caches.remove(o.namespace) }}, nil
}

// Close stops the subscription and waits for it. It never closes the Redis client. Caches on
// a closed store still work without Redis: their local layers and loaders. Close is idempotent
// and always returns nil.
func (s *RedisStore) Close() error {
	s.closed.Store(true)
	s.sub.Close() // idempotent, and waits
	return nil
}

// RedisStats counts what a RedisStore did since it was created, for all its caches. It is a
// snapshot, a plain value; the zero value counts nothing.
type RedisStats struct {
	// Hits and Misses count keys read from Redis.
	Hits, Misses uint64
	// Errors counts round trips that failed or timed out, and calls refused while the store
	// was left alone after a failure.
	Errors uint64
	// Sent counts announcements of changed keys; Received counts those heard from other
	// instances.
	Sent, Received uint64
	// Flushes counts times the local layers were emptied because announcements may have been
	// missed: when the subscription was lost, and again when it was made again.
	Flushes uint64
	// Down reports that the store fails fast right now: Redis failed repeatedly.
	Down bool
}

// Stats returns a snapshot of the store's counters.
func (s *RedisStore) Stats() RedisStats {
	return RedisStats{
		Hits: s.hits.Load(), Misses: s.misses.Load(), Errors: s.errs.Load(), Down: s.rc.Down(),
		Sent: s.sent.Load(), Received: s.received.Load(), Flushes: s.flushes.Load(),
	}
}

// An announcement is the writer's origin (a store's, originLen bytes), the namespace, '{' and
// the key: the namespace has no brace, so the first one ends it.
func (s *RedisStore) message(namespace, key string) string {
	return s.origin + namespace + "{" + key
}

// originLen is the length of a store's origin, rand.Text's.
var originLen = len(rand.Text())

// parseMessage splits an announcement; ok is false for a payload no store wrote.
func parseMessage(payload string) (origin, namespace, key string, ok bool) {
	if len(payload) < originLen {
		return "", "", "", false
	}
	origin = payload[:originLen]
	namespace, key, ok = strings.Cut(payload[originLen:], "{")
	return origin, namespace, key, ok
}

// heard applies an announcement to the Cache of its namespace, if one is open here.
func (s *RedisStore) heard(payload string) {
	origin, namespace, key, ok := parseMessage(payload)
	if !ok {
		return
	}
	own := origin == s.origin
	if r, ok := s.caches.get(namespace); ok {
		r.heard(key, own)
	}
	if !own {
		s.received.Add(1) // after the local layer dropped the key: a reader that saw the count sees the drop
	}
}

// subscribed runs at each confirmation of the invalidation subscription. After the first,
// announcements may have been missed since the subscription was lost: the local layers are
// flushed again (what they stored meanwhile lived at most RetryInterval). At the first, so are
// the layers that stored entries before it.
func (s *RedisStore) subscribed(first bool) { s.flush(first) }

// flush empties the local layers, drops the fills in flight and wakes the waiters: the
// subscription was lost or made again, and announcements may have been missed. With
// onlyFilled, only the layers that hold entries are flushed.
func (s *RedisStore) flush(onlyFilled bool) {
	flushed := false
	s.caches.each(func(r *redisLayer) {
		if !onlyFilled || r.local.len() > 0 {
			r.local.flush()
			r.wakeAll()
			flushed = true
		}
	})
	if flushed || !onlyFilled {
		s.flushes.Add(1)
	}
}

// call runs fn against Redis within timeout (see redisclient.Call), unless the store is
// closed.
func call[T any](ctx context.Context, s *RedisStore, timeout time.Duration, fn func(context.Context, redis.UniversalClient) (T, error)) (T, error) {
	if s.closed.Load() {
		var zero T
		return zero, ErrClosed
	}
	v, err := redisclient.CallFor(ctx, s.rc, timeout, fn)
	s.count(err)
	return v, err
}

// run sends one call of script per element of calls in one round trip, within timeout.
func (s *RedisStore) run(ctx context.Context, timeout time.Duration, script *redisclient.Script, calls ...*redisclient.ScriptCall) error {
	if s.closed.Load() {
		return ErrClosed
	}
	err := s.rc.RunFor(ctx, timeout, script, calls)
	s.count(err)
	return err
}

// count counts a round trip that failed, or that was refused during an outage.
func (s *RedisStore) count(err error) {
	if errors.Is(err, ErrUnavailable) {
		s.errs.Add(1)
	}
}

// manyTimeout is the bound of a round trip over n keys: Timeout, and up to ten times as long
// for 90 keys and more, in steps of nine keys so that few distinct bounds exist.
func (s *RedisStore) manyTimeout(n int) time.Duration {
	return s.timeout + s.timeout*time.Duration(min(n, 90)/9)
}
