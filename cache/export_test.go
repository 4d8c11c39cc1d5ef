package cache

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// fakeClock drives a store's local layer and the wall times it writes to Redis, so that tests
// move time without sleeping.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// useClock makes s read the fake clock.
func useClock(s Store, c *fakeClock) {
	l1, _ := s.layers()
	if l1 == nil {
		return
	}
	l1.now = func() int64 { return c.ns.Load() }
	l1.wall = func() int64 { return c.ns.Load() / 1e6 }
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
