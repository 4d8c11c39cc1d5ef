package cache

import (
	"context"
	"crypto/rand"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/internal/redisclient"
	"github.com/outgrow/outgrow/internal/rediskey"
)

var (
	//go:embed lease.lua
	leaseSource string
	//go:embed fill.lua
	fillSource string
	//go:embed write.lua
	writeSource string
	//go:embed extend.lua
	extendSource string

	leaseScript  = redisclient.NewScript(leaseSource)
	fillScript   = redisclient.NewScript(fillSource)
	writeScript  = redisclient.NewScript(writeSource)
	extendScript = redisclient.NewScript(extendSource)
)

// leasePeriod is how long a lease lives without being extended: a holder that dies loading
// stalls the others for at most this long.
const leasePeriod = 2 * time.Second

// RedisConfig configures a [RedisStore]. The zero value is ready to use.
//
// Create the client with ContextTimeoutEnabled: true (redis.Options, redis.ClusterOptions,
// redis.FailoverOptions): go-redis then stops each call at its deadline. Without it, each call
// runs on a goroutine of its own so that the store can stop waiting at the deadline.
type RedisConfig struct {
	// Prefix starts every key and the announcement channel. It must not contain '{' or '}'.
	// Give each Cache sharing a Redis its own prefix. Default: "cache:".
	Prefix string
	// Local configures the in-process layer (L1) in front of Redis.
	Local MemoryConfig
	// NoLocal removes the in-process layer: every read reaches Redis.
	NoLocal bool
	// Timeout bounds each round trip to Redis, and longer for many keys at once (up to ten
	// times for 90 keys). A read that takes longer is answered without Redis (by the local
	// layer or the loader). Default: 100ms.
	Timeout time.Duration
	// FailFastAfter is how many consecutive failed round trips make the store fail fast: every
	// call then goes without Redis for RetryInterval, before one call tries it again.
	// Default: 3.
	FailFastAfter int
	// RetryInterval is how long the store fails fast before it tries Redis again. Entries that
	// the local layer stores while it cannot hear invalidations live at most this long.
	// Default: 500ms.
	RetryInterval time.Duration
	// PingInterval is how long the invalidation subscription may stay silent before it is
	// checked with a PING. A subscription that does not answer within PingInterval more is
	// dropped and made again, which flushes the local layer. Default: 1s.
	PingInterval time.Duration
	// Logger receives the store's background events (outages, subscription lost and made
	// again). Default: slog.Default().
	Logger *slog.Logger
}

// RedisStore is the layer shared by every instance of a service (L2), with an in-process
// layer (L1, a [MemoryStore]) in front unless RedisConfig.NoLocal. It works on standalone Redis,
// Sentinel and Cluster through any [redis.UniversalClient], and never closes the client.
//
// Each key is one Redis string, prefix{key}, holding a small envelope (the freshness times, a
// negative flag) and the encoded value, with a TTL that ends when the data may no longer be
// served even stale. A hit is one GET; GetMany is one MGET per Cluster slot, pipelined. A load
// takes a lease, prefix{key}:lease, so that one instance of the fleet loads a missing key while
// the others wait to be woken. Every write of a key and every release of a lease is announced
// on the channel prefix+"invalidate" by the script that makes it, and every instance drops the
// key from its local layer when it hears it.
//
// A RedisStore serves one [Cache]. It must be created with [NewRedisStore]; it is safe for
// concurrent use. It runs one goroutine, the subscription, stopped by Close.
type RedisStore struct {
	rc      *redisclient.Client
	prefix  string
	channel string
	origin  string // this store's id in announcements: its own are not applied twice
	timeout time.Duration
	local   *MemoryStore
	sub     *redisclient.Subscription // invalidations; Hearing says the local layer hears them

	wmu     sync.Mutex
	waiters map[string]chan struct{} // keys whose lease another instance holds

	closeOnce sync.Once
	closed    atomic.Bool
	attached  atomic.Bool

	hits, misses, errs, sent, received, flushes atomic.Uint64
}

// NewRedisStore returns a RedisStore over rdb. It waits, at most Timeout, for the invalidation
// subscription to be confirmed; if Redis does not answer, the store starts without it and
// subscribes as soon as Redis does.
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
		origin: rand.Text(), timeout: rc.Timeout(),
		waiters: make(map[string]chan struct{}),
	}
	if !cfg.NoLocal {
		if s.local, err = NewMemoryStore(cfg.Local); err != nil {
			return nil, err
		}
	}
	s.sub = rc.Subscribe(redisclient.SubscribeConfig{
		Channel: s.channel, PingInterval: cfg.PingInterval,
		OnMessage: s.apply, OnSubscribed: s.subscribed, OnLost: func(error) { s.wakeAll() },
	})
	s.sub.WaitReady(s.timeout)
	return s, nil
}

func (s *RedisStore) layers() (*MemoryStore, *RedisStore) { return s.local, s }

func (s *RedisStore) attach() bool {
	if !s.attached.CompareAndSwap(false, true) {
		return false
	}
	if s.local != nil {
		s.local.flush() // entries of a former Cache may hold values of another type
	}
	return true
}

func (s *RedisStore) detach() { s.attached.Store(false) }

// Close stops the subscription and waits for it. It never closes the Redis client. A Cache on
// a closed store still works without Redis: its local layer and loader. Close is idempotent
// and always returns nil.
func (s *RedisStore) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.sub.Close()
	})
	return nil
}

// RedisStats counts what a RedisStore did since it was created.
type RedisStats struct {
	// Hits and Misses count keys read from Redis.
	Hits, Misses uint64
	// Errors counts round trips that failed or timed out, and calls refused while the store
	// was left alone after a failure.
	Errors uint64
	// Sent counts announcements of changed keys; Received counts those from other instances
	// applied to the local layer.
	Sent, Received uint64
	// Flushes counts times the local layer was emptied because the subscription was lost.
	Flushes uint64
	// Down reports that the store fails fast right now: Redis failed repeatedly.
	Down bool
	// Local is the in-process layer's; zero with RedisConfig.NoLocal.
	Local MemoryStats
}

// Stats returns a snapshot of the store's counters.
func (s *RedisStore) Stats() RedisStats {
	st := RedisStats{
		Hits: s.hits.Load(), Misses: s.misses.Load(), Errors: s.errs.Load(), Down: s.rc.Down(),
		Sent: s.sent.Load(), Received: s.received.Load(), Flushes: s.flushes.Load(),
	}
	if s.local != nil {
		st.Local = s.local.Stats()
	}
	return st
}

func (s *RedisStore) key(k string) string   { return rediskey.Key(s.prefix, k, "") }
func (s *RedisStore) lease(k string) string { return rediskey.Key(s.prefix, k, ":lease") }

// message is the announcement of key: this store's origin, then the key. Writes and fills are
// announced alike: every other instance drops the key from its local layer, and every instance
// wakes its waiters for the key.
func (s *RedisStore) message(key string) string { return s.origin + key }

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

// get reads one key: its envelope, or nil when Redis has none.
func (s *RedisStore) get(ctx context.Context, key string) ([]byte, error) {
	b, err := call(ctx, s, s.timeout, func(ctx context.Context, rdb redis.UniversalClient) ([]byte, error) {
		b, err := rdb.Get(ctx, s.key(key)).Bytes()
		if err == redis.Nil {
			return nil, nil
		}
		return b, err
	})
	if err != nil {
		return nil, err
	}
	if b == nil {
		s.misses.Add(1)
	} else {
		s.hits.Add(1)
	}
	return b, nil
}

// getMany reads keys in one round trip: one MGET, or on a Cluster one MGET per slot in one
// pipeline. Missing keys give nil.
func (s *RedisStore) getMany(ctx context.Context, keys []string) ([][]byte, error) {
	rkeys := make([]string, len(keys))
	for i, k := range keys {
		rkeys[i] = s.key(k)
	}
	out, err := call(ctx, s, s.manyTimeout(len(keys)), func(ctx context.Context, rdb redis.UniversalClient) ([][]byte, error) {
		out := make([][]byte, len(keys))
		if s.rc.SingleNode() {
			vals, err := rdb.MGet(ctx, rkeys...).Result()
			if err != nil {
				return nil, err
			}
			fillValues(out, nil, vals)
			return out, nil
		}
		bySlot := make(map[int][]int)
		for i, k := range rkeys {
			slot := rediskey.Slot(k)
			bySlot[slot] = append(bySlot[slot], i)
		}
		pipe := rdb.Pipeline()
		cmds := make([]*redis.SliceCmd, 0, len(bySlot))
		idx := make([][]int, 0, len(bySlot))
		for _, is := range bySlot {
			ks := make([]string, len(is))
			for j, i := range is {
				ks[j] = rkeys[i]
			}
			cmds = append(cmds, pipe.MGet(ctx, ks...))
			idx = append(idx, is)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, err
		}
		for j, c := range cmds {
			fillValues(out, idx[j], c.Val())
		}
		return out, nil
	})
	if err != nil {
		return nil, err
	}
	for _, b := range out {
		if b == nil {
			s.misses.Add(1)
		} else {
			s.hits.Add(1)
		}
	}
	return out, nil
}

func fillValues(out [][]byte, idx []int, vals []any) {
	for j, v := range vals {
		i := j
		if idx != nil {
			i = idx[j]
		}
		if str, ok := v.(string); ok {
			out[i] = []byte(str)
		}
	}
}

// Lease replies.
const (
	leaseValue = 'v' // the value is there
	leaseHeld  = 'l' // the caller holds the lease
	leaseWait  = 'w' // another holds it
)

// acquire reads key, or takes its lease for ttl under token. With refresh, it does not read the
// value (the caller has a stale one) and only tries the lease.
func (s *RedisStore) acquire(ctx context.Context, key, token string, ttl time.Duration, refresh bool) (kind byte, val []byte, wait time.Duration, err error) {
	mode := "0"
	if refresh {
		mode = "1"
	}
	call := &redisclient.ScriptCall{Args: []any{2, s.key(key), s.lease(key), token, max(1, ttl.Milliseconds()), mode}}
	if err = s.run(ctx, s.timeout, leaseScript, call); err != nil {
		return 0, nil, 0, err
	}
	reply, err := call.Cmd.Text()
	if err != nil || reply == "" {
		return 0, nil, 0, fmt.Errorf("%w: lease reply %q: %v", ErrUnavailable, reply, err)
	}
	switch reply[0] {
	case leaseValue:
		s.hits.Add(1)
		return leaseValue, []byte(reply[1:]), 0, nil
	case leaseWait:
		s.misses.Add(1)
		ms, _ := strconv.ParseInt(reply[1:], 10, 64)
		return leaseWait, nil, time.Duration(max(ms, 1)) * time.Millisecond, nil
	default:
		s.misses.Add(1)
		return leaseHeld, nil, 0, nil
	}
}

// keepLease extends key's lease every third of ttl until stop is closed.
func (s *RedisStore) keepLease(key, token string, ttl time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			call := &redisclient.ScriptCall{Args: []any{1, s.lease(key), token, ttl.Milliseconds()}}
			if s.run(context.Background(), s.timeout, extendScript, call) == nil {
				if n, _ := call.Cmd.Int(); n == 0 {
					return // revoked by a write, or expired: nothing to keep
				}
			}
		}
	}
}

// fill stores env under key if token still holds its lease (env nil: only releases the lease),
// and wakes the waiters. It reports whether the lease was still held.
func (s *RedisStore) fill(ctx context.Context, key, token string, env []byte, ttl time.Duration) (bool, error) {
	call := &redisclient.ScriptCall{Args: []any{
		2, s.key(key), s.lease(key), token, env, max(1, ttl.Milliseconds()), s.channel, s.message(key),
	}}
	// A fill comes after a load that may have cost far more; losing it to a short timeout
	// would leave the others waiting for the lease. It gets five times Timeout.
	if err := s.run(ctx, 5*s.timeout, fillScript, call); err != nil {
		return false, err
	}
	n, err := call.Cmd.Int()
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if n == 1 {
		s.sent.Add(1)
	}
	return n == 1, nil
}

// write sets (env non-nil) or deletes keys, one script per key in one pipeline, each revoking
// the key's lease and announcing it.
func (s *RedisStore) write(ctx context.Context, keys []string, envs [][]byte, ttls []time.Duration) error {
	calls := make([]*redisclient.ScriptCall, len(keys))
	for i, k := range keys {
		var env []byte
		var px int64 = 1
		if envs != nil {
			env, px = envs[i], max(1, ttls[i].Milliseconds())
		}
		calls[i] = &redisclient.ScriptCall{Args: []any{
			2, s.key(k), s.lease(k), env, px, s.channel, s.message(k),
		}}
	}
	// Many keys take longer to write.
	err := s.run(ctx, s.manyTimeout(len(keys)), writeScript, calls...)
	var partial *redisclient.PartialError
	if err != nil && !errors.As(err, &partial) {
		return err // nothing ran, or a timeout left the calls with go-redis: not ours to read
	}
	for _, c := range calls {
		if c.Cmd != nil && c.Cmd.Err() == nil {
			s.sent.Add(1)
		}
	}
	return err
}

// unwait removes ch, from waiter, if no announcement closed it yet.
func (s *RedisStore) unwait(key string, ch <-chan struct{}) {
	s.wmu.Lock()
	if c := s.waiters[key]; c != nil && (<-chan struct{})(c) == ch {
		delete(s.waiters, key)
	}
	s.wmu.Unlock()
}

// waiter returns a channel closed when key's lease ends (its announcement is heard). One flight
// per key and process waits on it.
func (s *RedisStore) waiter(key string) <-chan struct{} {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	ch := s.waiters[key]
	if ch == nil {
		ch = make(chan struct{})
		s.waiters[key] = ch
	}
	return ch
}

func (s *RedisStore) wake(key string) {
	s.wmu.Lock()
	ch := s.waiters[key]
	delete(s.waiters, key)
	s.wmu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// wakeAll wakes every waiter: after a lost subscription, their announcements may be lost.
func (s *RedisStore) wakeAll() {
	s.wmu.Lock()
	ws := s.waiters
	s.waiters = make(map[string]chan struct{})
	s.wmu.Unlock()
	for _, ch := range ws {
		close(ch)
	}
}

func (s *RedisStore) apply(payload string) {
	if len(payload) < len(s.origin) {
		return
	}
	origin, key := payload[:len(s.origin)], payload[len(s.origin):]
	// This instance's own writes and fills are already in its local layer, under the
	// generation guard; its waiters must still wake.
	if origin != s.origin && s.local != nil {
		s.local.invalidate(key)
		s.received.Add(1)
	}
	s.wake(key)
}

// subscribed runs at each confirmation of the invalidation subscription. After the first, or
// when entries were stored before it, announcements may have been missed: the local layer is
// flushed and waiters look again.
func (s *RedisStore) subscribed(first bool) {
	if !first || (s.local != nil && s.local.Len() > 0) {
		s.flushes.Add(1)
		if s.local != nil {
			s.local.flush()
		}
		s.wakeAll()
	}
}
