package breaker

import (
	"sync/atomic"
	"time"
)

const buckets = 10

// window counts calls and failures over a sliding period in buckets of period/10, with atomics
// only. A bucket whose turn comes again is reset by the first writer that sees it stale; counts
// racing with that reset may be lost, which only makes a rate slightly less exact.
type window struct {
	b [buckets]bucket
}

type bucket struct {
	epoch           atomic.Int64 // index of the bucket period it counts
	calls, failures atomic.Int64
}

func (w *window) add(now int64, period time.Duration, failed bool) {
	width := int64(period) / buckets
	idx := now / width
	bk := &w.b[idx%buckets]
	if e := bk.epoch.Load(); e != idx && bk.epoch.CompareAndSwap(e, idx) {
		bk.calls.Store(0)
		bk.failures.Store(0)
	}
	bk.calls.Add(1)
	if failed {
		bk.failures.Add(1)
	}
}

// sum returns the calls and failures of the buckets within the last period.
func (w *window) sum(now int64, period time.Duration) (calls, failures int) {
	width := int64(period) / buckets
	idx := now / width
	for i := range w.b {
		bk := &w.b[i]
		if e := bk.epoch.Load(); e > idx-buckets && e <= idx {
			calls += int(bk.calls.Load())
			failures += int(bk.failures.Load())
		}
	}
	return calls, failures
}

func (w *window) reset() {
	for i := range w.b {
		w.b[i].epoch.Store(-1)
		w.b[i].calls.Store(0)
		w.b[i].failures.Store(0)
	}
}

// calls is a window over the last len(ring) calls: a ring of outcomes (0 none, 1 success, 2
// failure) written round robin, with a running count of the failures in it. Atomics only;
// outcomes racing on one slot may leave the count off by one until the slot is written again.
type calls struct {
	ring  []atomic.Uint32
	next  atomic.Uint64
	fails atomic.Int64
}

func newCalls(n int) *calls { return &calls{ring: make([]atomic.Uint32, n)} }

func (c *calls) add(failed bool) {
	v := uint32(1)
	if failed {
		v = 2
	}
	i := c.next.Add(1) - 1
	old := c.ring[i%uint64(len(c.ring))].Swap(v)
	switch {
	case old == 2 && v != 2:
		c.fails.Add(-1)
	case old != 2 && v == 2:
		c.fails.Add(1)
	}
}

// sum returns the calls in the window and the failures among them.
func (c *calls) sum() (calls, failures int) {
	return int(min(c.next.Load(), uint64(len(c.ring)))), int(max(0, c.fails.Load()))
}

func (c *calls) reset() {
	for i := range c.ring {
		c.ring[i].Store(0)
	}
	c.next.Store(0)
	c.fails.Store(0)
}
