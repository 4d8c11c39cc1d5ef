package cache

import (
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
// behind it: Redis, or nil over a MemoryStore, whose local layer is shared by everything in
// the process already. close detaches the Cache from the store.
type layers struct {
	local  *localLayer
	salt   uint64
	remote *redisLayer
	close  func()
}

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
