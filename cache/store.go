package cache

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Store is where caches keep their data: a [*MemoryStore] (this process only) or a
// [*RedisStore] (shared through Redis by every instance). One store serves any number of
// caches, of any value types, each under its own Config.Namespace.
//
// The interface is sealed: its methods are unexported, so only this package's stores satisfy
// it. Tests of code that uses a Cache run it on a MemoryStore, which has the same semantics
// within one process. Both stores are safe for concurrent use.
type Store interface {
	// open attaches a Cache: it returns the layers the Cache reads and writes, or an error
	// matching ErrInvalidConfig when the Cache's namespace is already open on the store.
	open(o openConfig) (layers, error)
}

var (
	_ Store = (*MemoryStore)(nil)
	_ Store = (*RedisStore)(nil)
)

// openConfig is what a store needs to know of a Cache that opens on it.
type openConfig struct {
	namespace    string
	local        MemoryConfig
	disableLocal bool
	codec        Codec
	raw          bool // values are []byte or string, stored without the codec
	loadTimeout  time.Duration
}

// layers is what a store gives a Cache: the local layer that holds its decoded values, the
// salt that keeps its keys apart from other caches' in that layer, and the remote layer
// behind it. close detaches the Cache from the store.
type layers struct {
	local  *localLayer
	salt   uint64
	remote remoteLayer
	close  func()
}

// remoteLayer is the layer a Cache shares with the other instances behind its local layer:
// Redis (redisLayer), or nothing (noRemote) over a MemoryStore, whose local layer is shared by
// everything in the process already. A Cache has one code path for both.
type remoteLayer interface {
	// get reads one key: its envelope, or nil when the layer has none.
	get(ctx context.Context, key string) ([]byte, error)
	// getMany reads keys in one round trip; missing keys give nil.
	getMany(ctx context.Context, keys []string) ([][]byte, error)
	// write stores entries (now and wall are one instant on the local and wall clocks), each
	// revoking its key's lease and announcing the key to the other instances.
	write(ctx context.Context, entries []*entry, now, wall int64) error
	// delete removes keys, revoking their leases and announcing them.
	delete(ctx context.Context, keys []string) error

	// acquire reads key, or takes its lease; with refresh it only tries the lease (the
	// caller holds a stale value).
	acquire(ctx context.Context, key string, refresh bool) (leaseReply, error)
	// keepLease extends a lease held beyond its first period, until stop is closed.
	keepLease(key, token string, stop <-chan struct{})
	// leaseTTL is how long a lease lives unless its holder extends it (zero without leases).
	leaseTTL() time.Duration
	// fill stores e if token still holds key's lease, and reports whether it did; release
	// gives the lease back without storing anything. Both wake the key's waiters.
	fill(ctx context.Context, e *entry, token string, now, wall int64) (stored bool, err error)
	release(ctx context.Context, key, token string) error
	// waiter returns a channel closed when key's lease ends; unwait drops it unused.
	waiter(key string) <-chan struct{}
	unwait(key string, ch <-chan struct{})

	// hearing reports whether the local layer hears of the other instances' writes now;
	// while it does not, entries filled from the remote layer live at most retryInterval.
	hearing() bool
	retryInterval() time.Duration
}

// leaseReply is what acquire found.
type leaseReply struct {
	kind  byte          // leaseValue, leaseHeld, leaseWait or leaseNone
	val   []byte        // with leaseValue: the envelope
	token string        // with leaseHeld: the holder's token, to fill or release the lease
	wait  time.Duration // with leaseWait: how long the holder's lease has left
}

// Lease replies.
const (
	leaseValue = 'v' // the value is there
	leaseHeld  = 'l' // the caller holds the lease
	leaseWait  = 'w' // another holds it
	leaseNone  = 0   // no remote layer: load without a lease
)

// namespaces are the namespaces of the caches open on a store, each with what the store keeps
// for it. The zero value is ready to use.
type namespaces[T any] struct {
	mu   sync.RWMutex
	open map[string]T
}

// add reserves ns for v, unless a Cache holds it already.
func (n *namespaces[T]) add(ns string, v T) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, taken := n.open[ns]; taken {
		return fmt.Errorf("%w: Config.Namespace %q is already open on this store: give each Cache its own", ErrInvalidConfig, ns)
	}
	if n.open == nil {
		n.open = make(map[string]T)
	}
	n.open[ns] = v
	return nil
}

func (n *namespaces[T]) remove(ns string) {
	n.mu.Lock()
	delete(n.open, ns)
	n.mu.Unlock()
}

func (n *namespaces[T]) get(ns string) (T, bool) {
	n.mu.RLock()
	v, ok := n.open[ns]
	n.mu.RUnlock()
	return v, ok
}

// each calls fn for every open namespace, holding no lock.
func (n *namespaces[T]) each(fn func(T)) {
	n.mu.RLock()
	vs := make([]T, 0, len(n.open))
	for _, v := range n.open {
		vs = append(vs, v)
	}
	n.mu.RUnlock()
	for _, v := range vs {
		fn(v)
	}
}
