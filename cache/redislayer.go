package cache

import (
	"context"
	"crypto/rand"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"sync"
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

// redisLayer is one Cache's remote layer on a RedisStore: its keys, under the store's prefix
// and the Cache's namespace, its local layer (which the store's subscription invalidates), and
// the loads of this process waiting for another instance's lease.
//
// Each key is one Redis string, prefix[namespace:]{key}, holding an envelope (the freshness
// times, a negative flag) and the encoded value, with a TTL that ends when the data may no
// longer be served even stale. A load takes the lease prefix[namespace:]{key}:lease, so that
// one instance of the fleet loads a missing key while the others wait to be woken.
type redisLayer struct {
	s         *RedisStore
	namespace string
	keyPrefix string // the store's prefix, then the namespace and ':' if there is one
	local     *localLayer
	codec     Codec
	raw       bool
	lease     time.Duration // how long a lease lives unless its holder extends it

	wmu     sync.Mutex
	waiters map[string]chan struct{} // keys whose lease another instance holds
}

func (r *redisLayer) key(k string) string      { return rediskey.Key(r.keyPrefix, k, "") }
func (r *redisLayer) leaseKey(k string) string { return rediskey.Key(r.keyPrefix, k, ":lease") }
func (r *redisLayer) message(k string) string  { return r.s.message(r.namespace, k) }

// hearing reports whether the local layer hears of the other instances' writes now; while it
// does not, what it stores lives at most retryInterval.
func (r *redisLayer) hearing() bool                { return r.s.sub.Hearing() }
func (r *redisLayer) retryInterval() time.Duration { return r.s.rc.RetryInterval() }

// get reads one key: its envelope, or nil when Redis has none.
func (r *redisLayer) get(ctx context.Context, key string) ([]byte, error) {
	b, err := call(ctx, r.s, r.s.timeout, func(ctx context.Context, rdb redis.UniversalClient) ([]byte, error) {
		b, err := rdb.Get(ctx, r.key(key)).Bytes()
		if err == redis.Nil {
			return nil, nil
		}
		return b, err
	})
	if err != nil {
		return nil, err
	}
	r.s.counted(b)
	return b, nil
}

// getMany reads keys in one round trip: one MGET, or on a Cluster one MGET per slot in one
// pipeline. Missing keys give nil.
func (r *redisLayer) getMany(ctx context.Context, keys []string) ([][]byte, error) {
	rkeys := make([]string, len(keys))
	for i, k := range keys {
		rkeys[i] = r.key(k)
	}
	out, err := call(ctx, r.s, r.s.manyTimeout(len(keys)), func(ctx context.Context, rdb redis.UniversalClient) ([][]byte, error) {
		out := make([][]byte, len(keys))
		if r.s.rc.SingleNode() {
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
		r.s.counted(b)
	}
	return out, nil
}

// counted counts a key read from Redis: a hit, or a miss when b is nil.
func (s *RedisStore) counted(b []byte) {
	if b == nil {
		s.misses.Add(1)
	} else {
		s.hits.Add(1)
	}
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

// leaseReply is what acquire found.
type leaseReply struct {
	kind  byte          // leaseValue, leaseHeld or leaseWait
	val   []byte        // with leaseValue: the envelope
	token string        // with leaseHeld: the holder's token, to fill or release the lease
	wait  time.Duration // with leaseWait: how long the holder's lease has left
}

// Lease replies.
const (
	leaseValue = 'v' // the value is there
	leaseHeld  = 'l' // the caller holds the lease
	leaseWait  = 'w' // another holds it
)

// acquire reads key, or takes its lease; with refresh it only tries the lease (the caller
// holds a stale value).
func (r *redisLayer) acquire(ctx context.Context, key string, refresh bool) (leaseReply, error) {
	token := rand.Text()
	mode := "0"
	if refresh {
		mode = "1"
	}
	call := &redisclient.ScriptCall{Args: []any{2, r.key(key), r.leaseKey(key), token, max(1, r.lease.Milliseconds()), mode}}
	if err := r.s.run(ctx, r.s.timeout, leaseScript, call); err != nil {
		return leaseReply{}, err
	}
	reply, err := call.Cmd.Text()
	if err != nil || reply == "" {
		return leaseReply{}, fmt.Errorf("%w: lease reply %q: %v", ErrUnavailable, reply, err)
	}
	switch reply[0] {
	case leaseValue:
		r.s.hits.Add(1)
		return leaseReply{kind: leaseValue, val: []byte(reply[1:])}, nil
	case leaseWait:
		r.s.misses.Add(1)
		ms, _ := strconv.ParseInt(reply[1:], 10, 64)
		return leaseReply{kind: leaseWait, wait: time.Duration(max(ms, 1)) * time.Millisecond}, nil
	default:
		r.s.misses.Add(1)
		return leaseReply{kind: leaseHeld, token: token}, nil
	}
}

// keepLease extends key's lease every third of its period until stop is closed.
func (r *redisLayer) keepLease(key, token string, stop <-chan struct{}) {
	t := time.NewTicker(r.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			call := &redisclient.ScriptCall{Args: []any{1, r.leaseKey(key), token, r.lease.Milliseconds()}}
			if r.s.run(context.Background(), r.s.timeout, extendScript, call) == nil {
				if n, _ := call.Cmd.Int(); n == 0 {
					return // revoked by a write, or expired: nothing to keep
				}
			}
		}
	}
}

// fill stores e if token still holds key's lease, and reports whether it did; release gives
// the lease back without storing anything. Both wake the key's waiters. now and wall are one
// instant on the local and wall clocks.
func (r *redisLayer) fill(ctx context.Context, e *entry, token string, now, wall int64) (bool, error) {
	env, err := r.encode(e, now, wall)
	if err != nil {
		_ = r.release(ctx, e.key, token)
		return false, err
	}
	// A fill comes after a load that may have cost far more; losing it to a short timeout
	// would leave the others waiting for the lease. It gets five times Timeout.
	return r.runFill(ctx, 5*r.s.timeout, e.key, token, env, time.Duration(e.hard-now))
}

func (r *redisLayer) release(ctx context.Context, key, token string) error {
	_, err := r.runFill(ctx, r.s.timeout, key, token, nil, 0)
	return err
}

// runFill stores env under key if token still holds its lease (env nil: only releases the
// lease), and wakes the waiters. It reports whether the lease was still held.
func (r *redisLayer) runFill(ctx context.Context, timeout time.Duration, key, token string, env []byte, ttl time.Duration) (bool, error) {
	call := &redisclient.ScriptCall{Args: []any{
		2, r.key(key), r.leaseKey(key), token, env, max(1, ttl.Milliseconds()), r.s.channel, r.message(key),
	}}
	if err := r.s.run(ctx, timeout, fillScript, call); err != nil {
		return false, err
	}
	n, err := call.Cmd.Int()
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if n == 1 {
		r.s.sent.Add(1)
	}
	return n == 1, nil
}

// write stores entries, each revoking its key's lease and announcing the key to the other
// instances.
func (r *redisLayer) write(ctx context.Context, entries []*entry, now, wall int64) error {
	calls := make([]*redisclient.ScriptCall, len(entries))
	for i, e := range entries {
		env, err := r.encode(e, now, wall)
		if err != nil {
			return err
		}
		// Kept until no longer served, even stale.
		calls[i] = r.writeCall(e.key, env, max(1, time.Duration(e.hard-now).Milliseconds()))
	}
	return r.runWrites(ctx, calls)
}

// delete removes keys, revoking their leases and announcing them.
func (r *redisLayer) delete(ctx context.Context, keys []string) error {
	calls := make([]*redisclient.ScriptCall, len(keys))
	for i, k := range keys {
		calls[i] = r.writeCall(k, nil, 1)
	}
	return r.runWrites(ctx, calls)
}

// writeCall sets (env non-nil) or deletes key, revoking its lease and announcing it.
func (r *redisLayer) writeCall(key string, env []byte, px int64) *redisclient.ScriptCall {
	return &redisclient.ScriptCall{Args: []any{2, r.key(key), r.leaseKey(key), env, px, r.s.channel, r.message(key)}}
}

// runWrites sends the writes in one pipeline. Many keys take longer to write.
func (r *redisLayer) runWrites(ctx context.Context, calls []*redisclient.ScriptCall) error {
	if len(calls) == 0 {
		return nil
	}
	err := r.s.run(ctx, r.s.manyTimeout(len(calls)), writeScript, calls...)
	var partial *redisclient.PartialError
	if err != nil && !errors.As(err, &partial) {
		return err // nothing ran, or a timeout left the calls with go-redis: not ours to read
	}
	for _, c := range calls {
		if c.Cmd != nil && c.Cmd.Err() == nil {
			r.s.sent.Add(1)
		}
	}
	return err
}

// waiter returns a channel closed when key's lease ends (its announcement is heard). One
// flight per key and process waits on it.
func (r *redisLayer) waiter(key string) <-chan struct{} {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	ch := r.waiters[key]
	if ch == nil {
		ch = make(chan struct{})
		r.waiters[key] = ch
	}
	return ch
}

// unwait removes ch, from waiter, if no announcement closed it yet.
func (r *redisLayer) unwait(key string, ch <-chan struct{}) {
	r.wmu.Lock()
	if c := r.waiters[key]; c != nil && (<-chan struct{})(c) == ch {
		delete(r.waiters, key)
	}
	r.wmu.Unlock()
}

// heard applies the announcement of key. This instance's own writes and fills are already in
// its local layer, under the generation guard; its waiters must still wake.
func (r *redisLayer) heard(key string, own bool) {
	if !own {
		r.local.invalidate(r.local.hash(key, 0), key)
	}
	r.wmu.Lock()
	ch := r.waiters[key]
	delete(r.waiters, key)
	r.wmu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// wakeAll wakes every waiter: after a lost subscription, their announcements may be lost.
func (r *redisLayer) wakeAll() {
	r.wmu.Lock()
	ws := r.waiters
	r.waiters = make(map[string]chan struct{})
	r.wmu.Unlock()
	for _, ch := range ws {
		close(ch)
	}
}
