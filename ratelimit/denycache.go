package ratelimit

import (
	"hash/maphash"
	"sync"
	"time"
)

// denyCache remembers, per Limiter, the keys a shared store denied and until when, so that
// repeated requests of an abusive client are refused without calling the store. The store only
// reports a denial when the key's own state lacks the units (never because of another request's
// units in flight), and its state can only move the next grant later (other instances charging
// it), never earlier, except by an explicit Reset: so a cached denial is never wrong before its
// RetryAfter.
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

// denyEntry holds, in ns since epoch, when the key can be granted again and when it is back to
// its full limit. Under GCRA, until is for one unit (a request for n waits n-1 intervals more);
// under a strict limit it is for the n units of the denied request, and serves requests for n
// units only.
type denyEntry struct {
	until, reset int64
	n            int
}

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

// lookup reports a denial of q if its key is known to be over its limit now.
func (c *denyCache) lookup(q *request) (Result, bool) {
	sh, h := c.slot(q.key)
	sh.mu.Lock()
	e, ok := sh.m[h]
	now := int64(time.Since(c.epoch))
	if ok && now >= e.until {
		delete(sh.m, h)
		ok = false
	}
	sh.mu.Unlock()
	if !ok || q.rule.Strict && q.n != e.n {
		return Result{}, false
	}
	wait := e.until - now
	if !q.rule.Strict {
		wait += int64(q.n-1) * q.rule.interval
	}
	return Result{
		Policy:     q.policy,
		Limit:      q.rule.Limit,
		RetryAfter: time.Duration(wait),
		ResetAfter: time.Duration(max(e.reset-now, wait)),
	}, true
}

// remember records the denial r of q.
func (c *denyCache) remember(q *request, r Result) {
	one := int64(r.RetryAfter)
	if !q.rule.Strict {
		one -= int64(q.n-1) * q.rule.interval
	}
	if one <= 0 {
		return
	}
	sh, h := c.slot(q.key)
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
	sh.m[h] = denyEntry{until: now + one, reset: now + int64(r.ResetAfter), n: q.n}
	sh.mu.Unlock()
}

func (c *denyCache) forget(key string) {
	sh, h := c.slot(key)
	sh.mu.Lock()
	delete(sh.m, h)
	sh.mu.Unlock()
}
