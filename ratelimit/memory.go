package ratelimit

import (
	"context"
	"fmt"
	"hash/maphash"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"
	"unsafe"
)

// MemoryConfig configures a [MemoryStore]. The zero value is ready to use.
type MemoryConfig struct {
	// MaxKeys caps the number of keys held. When the cap is reached, a new key first displaces
	// keys that are back to their full limit (forgetting them changes nothing); only when a
	// sample holds none is the key nearest to its full limit evicted, which hands it its
	// remaining units early and is counted in [MemoryStats].Evicted. A key of a Strict limit
	// also holds the times of up to Rate grants. Default: 1<<20.
	MaxKeys int
}

// MemoryStore is a [Store] in process memory, for a single instance, for tests, and as the local
// fallback of a Redis-backed [Limiter]. It decides exactly as a [RedisStore] does.
//
// Keys are hashed (with a per-store random seed) into shards, each a mutex over a table from
// the 64-bit hash to the key's state: no global lock, and no key kept as a string. The clock is
// read inside each shard's critical section, so concurrent callers never decide on a stale time.
// Keys back to their full limit are reclaimed as new keys arrive: no goroutine, nothing to close.
//
// The zero value is not usable; create a MemoryStore with [NewMemoryStore]. It is safe for
// concurrent use.
type MemoryStore struct {
	seed     maphash.Seed
	epoch    time.Time
	shift    uint // shard index = hash >> shift
	perShard int
	shards   []memShard
}

var _ Store = (*MemoryStore)(nil)

type memShard struct {
	shardState
	_ [128 - unsafe.Sizeof(shardState{})]byte // 128 bytes: shards never share a cache line
}

type shardState struct {
	mu      sync.Mutex
	t       table                  // key hash -> tat (GCRA), or when the newest grant leaves the window (strict)
	logs    map[uint64]*slidingLog // key hash -> grants, for the strict keys of t
	sweepAt int                    // size at which the next insert sweeps fresh keys
	inserts int                    // inserts since the last sweep
	evicted uint64                 // live keys evicted by the cap
}

// Sweeps start once a shard holds this many keys; sampling for eviction looks at this many.
const (
	minSweep    = 64
	evictSample = 16
)

// NewMemoryStore returns an empty MemoryStore. Its errors wrap ErrInvalidConfig.
func NewMemoryStore(cfg MemoryConfig) (*MemoryStore, error) {
	if cfg.MaxKeys < 0 {
		return nil, fmt.Errorf("%w: MemoryConfig.MaxKeys %d must not be negative", ErrInvalidConfig, cfg.MaxKeys)
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = 1 << 20
	}
	n := 1 << bits.Len(uint(16*runtime.GOMAXPROCS(0)-1)) // a power of two >= 16 per P
	n = max(n, 64)
	// At least 256 keys per shard: the cap holds per shard, and a shard too small for its share
	// of throttled keys would evict them long before MaxKeys.
	for n > 1 && n*256 > cfg.MaxKeys {
		n /= 2
	}
	s := &MemoryStore{
		seed:     maphash.MakeSeed(),
		epoch:    time.Now(),
		shift:    uint(64 - bits.TrailingZeros(uint(n))),
		perShard: cfg.MaxKeys / n,
		shards:   make([]memShard, n),
	}
	if n == 1 {
		s.shift = 63 // hash >> 63 is 0 or 1; masked below
	}
	for i := range s.shards {
		s.shards[i].sweepAt = minSweep
	}
	return s, nil
}

// policyHash and hashWith split the hash of a request so that a Limiter can hash its policy
// once. Two seeded hashes mixed: no string is built per decision. A strict policy hashes apart
// from a GCRA policy of the same name: their states differ.
func (s *MemoryStore) policyHash(policy string, strict bool) uint64 {
	h := maphash.String(s.seed, policy) * 0x9e3779b97f4a7c15
	if strict {
		h ^= 0x5851f42d4c957f2d
	}
	return h
}

func (s *MemoryStore) hashWith(policyHash uint64, key string) uint64 {
	return maphash.String(s.seed, key) ^ policyHash
}

func (s *MemoryStore) hash(q *request) uint64 {
	return s.hashWith(s.policyHash(q.policy, q.rule.Strict), q.key)
}

func (s *MemoryStore) shardIndex(h uint64) int { return int((h >> s.shift) & uint64(len(s.shards)-1)) }

func (s *MemoryStore) now() int64 { return int64(time.Since(s.epoch)) }

func (s *MemoryStore) fallback() *MemoryStore { return nil }

func (s *MemoryStore) reset(_ context.Context, q request) error {
	h := s.hash(&q)
	sh := &s.shards[s.shardIndex(h)]
	sh.mu.Lock()
	sh.t.delete(h)
	delete(sh.logs, fix(h))
	sh.mu.Unlock()
	return nil
}

func (s *MemoryStore) take(_ context.Context, reqs []request, out []outcome) error {
	if len(reqs) == 1 {
		out[0].busy = false
		s.takeOne(s.hash(&reqs[0]), &reqs[0], nil, &out[0].Result)
		return nil
	}
	s.takeMany(reqs, out)
	return nil
}

// memCount counts a Limiter's decisions in one shard, guarded by that shard's mutex: counting
// under a lock already held costs no atomic operation.
type memCount struct {
	allowed, limited uint64
	_                [48]byte
}

// takeOne decides one request whose key hashes to h into r, and counts it in counts (one per
// shard) unless counts is nil.
func (s *MemoryStore) takeOne(h uint64, q *request, counts []memCount, r *Result) {
	si := s.shardIndex(h)
	sh := &s.shards[si]
	sh.mu.Lock()
	var j judged
	if q.rule.Strict {
		s.decideLog(sh, h, q, s.now(), &j)
	} else {
		s.decideGCRA(sh, h, q, s.now(), &j)
	}
	if counts != nil {
		if j.granted {
			counts[si].allowed++
		} else {
			counts[si].limited++
		}
	}
	sh.mu.Unlock()
	j.result(q, j.granted && q.n != 0, r)
}

// takeMany locks every shard involved, in index order so that concurrent batches cannot
// deadlock, charges the requests one by one (a later request on the same key sees the earlier
// charges) and takes every charge back if one request is denied.
func (s *MemoryStore) takeMany(reqs []request, out []outcome) {
	var hbuf [8]uint64
	var ibuf [8]int
	var cbuf [8]change
	var jbuf [8]judged
	hs, idx, changes, js := hbuf[:0], ibuf[:0], cbuf[:0], jbuf[:0]
	for i := range reqs {
		hs = append(hs, s.hash(&reqs[i]))
		idx = append(idx, s.shardIndex(hs[i]))
	}
	idx = slices.Compact(slices.Sorted(slices.Values(idx)))
	for _, i := range idx {
		s.shards[i].mu.Lock()
	}
	now := s.now()
	granted := true
	for i := range reqs {
		q := &reqs[i]
		js = append(js, judged{})
		c := s.decide(&s.shards[s.shardIndex(hs[i])], hs[i], q, now, &js[i])
		if js[i].granted && q.n != 0 {
			changes = append(changes, c)
		}
		granted = granted && (js[i].granted || q.n <= 0)
	}
	if !granted {
		for k := len(changes) - 1; k >= 0; k-- {
			s.undo(&changes[k], now)
		}
	}
	for _, i := range idx {
		s.shards[i].mu.Unlock()
	}
	for i := range reqs {
		out[i].busy = false
		js[i].result(&reqs[i], granted && js[i].granted && reqs[i].n != 0, &out[i].Result)
	}
}

// change is what decide stored for one request, to take it back.
type change struct {
	q   *request
	h   uint64
	tat int64       // GCRA: the tat before
	log *slidingLog // strict: the log the grants went to
}

// decide decides q for the key hashing to h, in its shard sh (locked), at now, into j, stores
// the change when the request is granted (or gives back), and returns it.
func (s *MemoryStore) decide(sh *memShard, h uint64, q *request, now int64, j *judged) change {
	if q.rule.Strict {
		return change{q: q, h: fix(h), log: s.decideLog(sh, h, q, now, j)}
	}
	return change{q: q, h: fix(h), tat: s.decideGCRA(sh, h, q, now, j)}
}

// decideGCRA is decide for a GCRA request; it returns the key's tat before.
func (s *MemoryStore) decideGCRA(sh *memShard, h uint64, q *request, now int64, j *judged) int64 {
	h = fix(h)
	i, ok := sh.t.find(h)
	var tat int64
	if ok {
		tat = sh.t.slots[i].tat
	}
	if next := judgeGCRA(tat, now, q, j); j.granted && q.n != 0 {
		s.setAt(sh, h, i, ok, next, now)
	}
	return tat
}

// decideLog is decide for a strict request; it returns the key's log.
func (s *MemoryStore) decideLog(sh *memShard, h uint64, q *request, now int64, j *judged) *slidingLog {
	h = fix(h)
	i, ok := sh.t.find(h)
	g := sh.logs[h]
	if g == nil {
		g = &slidingLog{}
		if q.n > 0 {
			g.ts = make([]int64, q.rule.Rate)
		}
	}
	if g.judge(now, q, j); j.granted && q.n != 0 {
		s.setLog(sh, h, i, ok, g, q.rule.period, now)
	}
	return g
}

// undo takes back the change c stored.
func (s *MemoryStore) undo(c *change, now int64) {
	sh := &s.shards[s.shardIndex(c.h)]
	i, ok := sh.t.find(c.h)
	if c.log == nil {
		s.setAt(sh, c.h, i, ok, c.tat, now)
		return
	}
	c.log.pop(c.q.n)
	s.setLog(sh, c.h, i, ok, c.log, c.q.rule.period, now)
}

// setLog stores the strict key h with its log g: its time in the table is when its newest grant
// leaves the window, and a key with no grant left is forgotten.
func (s *MemoryStore) setLog(sh *memShard, h uint64, i int, ok bool, g *slidingLog, period, now int64) {
	leaves := now
	if g.n > 0 {
		leaves = g.newest() + period
	}
	s.setAt(sh, h, i, ok, leaves, now)
	if leaves <= now {
		delete(sh.logs, h)
		return
	}
	if sh.logs == nil {
		sh.logs = make(map[uint64]*slidingLog)
	}
	sh.logs[h] = g
}

// setAt sets the time of the fixed hash h, whose slot i was looked up (ok: it is there),
// deleting keys back to their full limit and making room for new keys. The shard is locked.
func (s *MemoryStore) setAt(sh *memShard, h uint64, i int, ok bool, next, now int64) {
	switch {
	case next <= now:
		if ok {
			sh.t.deleteAt(i)
		}
	case ok:
		sh.t.slots[i].tat = next
	default:
		s.insert(sh, h, i, next, now)
	}
}

// insert adds h, absent and meant for the empty slot i, after making room: it sweeps the keys
// back to their full limit when the shard has doubled since its last sweep (amortised O(1) per
// insert), and evicts when the shard is at its cap.
func (s *MemoryStore) insert(sh *memShard, h uint64, i int, tat, now int64) {
	n := sh.t.n
	sh.inserts++
	// Sweep when the shard has doubled since its last sweep, or, at the cap, after every
	// perShard/2 inserts: either way O(1) amortised per insert, and at the cap most room comes
	// from keys back to their full limit rather than from evictions.
	if n >= sh.sweepAt && n < s.perShard || n >= s.perShard && sh.inserts >= s.perShard/2 {
		sh.t.sweep(now)
		for k := range sh.logs {
			if _, ok := sh.t.find(k); !ok {
				delete(sh.logs, k)
			}
		}
		// Next sweep when the shard has doubled from its size before this sweep: keys that come
		// back to their full limit quickly are not forgotten and re-created over and over, and
		// memory stays within twice the working set (and under MaxKeys).
		sh.sweepAt = max(2*n, minSweep)
		sh.inserts = 0
		i, _ = sh.t.find(h)
	}
	if sh.t.n >= s.perShard {
		for sh.t.n >= max(s.perShard, 1) {
			victim, live := sh.t.evictOne(rand.Uint64, now, evictSample)
			delete(sh.logs, victim)
			if live {
				sh.evicted++
			}
		}
		i, _ = sh.t.find(h)
	}
	sh.t.insertAt(i, h, tat)
}

// sumCounts adds up counts under each shard's lock.
func (s *MemoryStore) sumCounts(counts []memCount) (allowed, limited uint64) {
	for i := range counts {
		s.shards[i].mu.Lock()
		allowed += counts[i].allowed
		limited += counts[i].limited
		s.shards[i].mu.Unlock()
	}
	return allowed, limited
}

// MemoryStats is a snapshot of a [MemoryStore].
type MemoryStats struct {
	Keys    int    // keys held, including keys back to their full limit not reclaimed yet
	Evicted uint64 // keys evicted by MaxKeys before they were back to their full limit
}

// Stats returns a snapshot. It locks each shard in turn, so call it for monitoring, not per request.
func (s *MemoryStore) Stats() MemoryStats {
	var st MemoryStats
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		st.Keys += sh.t.n
		st.Evicted += sh.evicted
		sh.mu.Unlock()
	}
	return st
}
