package cache

import (
	"fmt"
	"math/rand/v2"
)

// MemoryConfig sizes a local layer: a [MemoryStore], or the layer a Cache keeps in front of a
// [RedisStore] (Config.Local). The zero value is ready to use; a MemoryConfig is a plain value.
type MemoryConfig struct {
	// MaxEntries caps the number of entries held. Default: 10000.
	MaxEntries int
	// MaxBytes, when positive, also caps the bytes held, counted as the length of each key plus
	// the size of its value: its length for []byte and string values, its encoded length for
	// values that came from Redis, and 64 bytes for other values. Default: 0 (no cap).
	MaxBytes int64
}

func (cfg MemoryConfig) check(field string) error {
	switch {
	case cfg.MaxEntries < 0:
		return fmt.Errorf("%w: %s.MaxEntries %d is negative", ErrInvalidConfig, field, cfg.MaxEntries)
	case cfg.MaxBytes < 0:
		return fmt.Errorf("%w: %s.MaxBytes %d is negative", ErrInvalidConfig, field, cfg.MaxBytes)
	}
	return nil
}

// MemoryStore keeps data in process memory, for one instance and for tests: a [Store] whose
// caches share one local layer, of one capacity, under their namespaces. A hit costs a lookup
// and no decoding or allocation; readers take no lock. Eviction follows SIEVE, which keeps the
// entries that are read and lets new entries read once leave early. Expired entries are
// reclaimed as the store is used: it runs no goroutine and has nothing to close.
//
// The zero value is not usable; create a MemoryStore with [NewMemoryStore]. It is safe for
// concurrent use.
type MemoryStore struct {
	local  *localLayer
	caches namespaces[struct{}]
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore. Its error wraps ErrInvalidConfig and names the
// field at fault.
func NewMemoryStore(cfg MemoryConfig) (*MemoryStore, error) {
	if err := cfg.check("MemoryConfig"); err != nil {
		return nil, err
	}
	return &MemoryStore{local: newLocalLayer(cfg, newClock(), false)}, nil
}

// open gives a Cache the store's layer, under a salt of its own. Config.Local and
// Config.DisableLocal do not apply: the store is the Cache's only layer.
func (s *MemoryStore) open(o openConfig) (layers, error) {
	salt := rand.Uint64()
	if err := s.caches.add(o.namespace, struct{}{}); err != nil {
		return layers{}, err
	}
	return layers{local: s.local, salt: salt, close: func() {
		s.local.purge(salt)
		s.caches.remove(o.namespace)
	}}, nil
}

// Stats returns a snapshot of the store's counters, for all its caches.
func (s *MemoryStore) Stats() MemoryStats { return s.local.stats() }
