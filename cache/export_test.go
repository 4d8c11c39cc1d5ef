package cache

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// fakeClock drives a store's local layers and the wall times they write to Redis, so that
// tests move time without sleeping.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// useClock makes s, and the caches opened on it from now on, read the fake clock.
func useClock(s Store, c *fakeClock) {
	switch s := s.(type) {
	case *MemoryStore:
		s.local.clock.fake.Store(&c.ns)
	case *RedisStore:
		s.clock.fake.Store(&c.ns)
	}
}

// leaseKey is the Redis key of key's lease, for a Cache over a RedisStore.
func (c *Cache[V]) leaseKey(key string) string { return c.remote.leaseKey(key) }

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
