package ratelimit

import (
	"hash/maphash"
	"sync"
	"time"
)

// denyCache remembers, per Limiter, the keys a shared store denied and until when, so that
// repeated requests of an abusive client are refused without calling the store. The store can
// only move a key's next grant later (other instances charging it), never earlier, except by an
// explicit Reset, so a cached denial is never wrong before its RetryAfter.
type denyCache struct {
	seed     maphash.Seed
	epoch    time.Time
	perShard int
	shards   [16]denyShard
}

type denyShard struct {
	mu sync.Mutex
	m  map[uint64]denyEntry
	_  [48]byte
}

// denyEntry holds, in ns since epoch, when one unit can be granted again and when the key is
// back to a full burst.
type denyEntry struct{ until, reset int64 }

func newDenyCache(size int) *denyCache {
	c := &denyCache{seed: maphash.MakeSeed(), epoch: time.Now(), perShard: max(1, size/16)}
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]denyEntry)
	}
	return c
}

func (c *denyCache) slot(key string) (*denyShard, uint64) {
	h := maphash.String(c.seed, key)
	return &c.shards[h&15], h
}

// lookup reports a denial of q if key is known to be over its limit now.
func (c *denyCache) lookup(key string, q Request) (Result, bool) {
	sh, h := c.slot(key)
	sh.mu.Lock()
	e, ok := sh.m[h]
	now := int64(time.Since(c.epoch))
	if ok && now >= e.until {
		delete(sh.m, h)
		ok = false
	}
	sh.mu.Unlock()
	if !ok {
		return Result{}, false
	}
	// A request for n units waits for n-1 more intervals than one for a single unit.
	extra := int64(q.N-1) * q.Limit.interval()
	return Result{
		Policy:     q.Policy,
		Limit:      q.Limit,
		RetryAfter: time.Duration(e.until - now + extra),
		ResetAfter: time.Duration(max(e.reset-now, e.until-now)),
	}, true
}

// remember records the denial r of q.
func (c *denyCache) remember(key string, q Request, r Result) {
	one := int64(r.RetryAfter) - int64(q.N-1)*q.Limit.interval()
	if one <= 0 {
		return
	}
	sh, h := c.slot(key)
	sh.mu.Lock()
	now := int64(time.Since(c.epoch))
	if _, ok := sh.m[h]; !ok && len(sh.m) >= c.perShard {
		// Full: look at a few entries (iteration starts at a random place), drop the expired
		// ones, or else one of them; a lost entry only costs one store call.
		var victim uint64
		seen, freed := 0, false
		for k, e := range sh.m {
			if now >= e.until {
				delete(sh.m, k)
				freed = true
			}
			victim = k
			if seen++; seen == 8 {
				break
			}
		}
		if !freed {
			delete(sh.m, victim)
		}
	}
	sh.m[h] = denyEntry{until: now + one, reset: now + int64(r.ResetAfter)}
	sh.mu.Unlock()
}

func (c *denyCache) forget(key string) {
	sh, h := c.slot(key)
	sh.mu.Lock()
	delete(sh.m, h)
	sh.mu.Unlock()
}
