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
	// MaxKeys caps the number of keys held; 0 means 1<<20 (about 40 MiB at worst). When the cap
	// is reached, a new key first displaces keys that are back to a full burst (forgetting them
	// changes nothing); only when a sample holds none is the key nearest to a full burst evicted,
	// which hands it its remaining units early and is counted in [MemoryStats].Evicted.
	MaxKeys int
}

// MemoryStore is a [Store] in process memory, for a single instance, for tests, and as the local
// fallback of a Redis-backed [Limiter].
//
// Keys are hashed (with a per-store random seed) into shards, each a mutex over a map from the
// 64-bit hash to the key's theoretical arrival time: about 20-40 bytes per key and no global
// lock. The clock is read inside each shard's critical section, so concurrent callers never
// decide on a stale time. Keys back to a full burst are reclaimed as new keys arrive: no
// goroutine, nothing to close.
//
// A MemoryStore must be created with [NewMemoryStore]; it is safe for concurrent use.
type MemoryStore struct {
	seed     maphash.Seed
	epoch    time.Time
	shift    uint // shard index = hash >> shift
	perShard int
	shards   []memShard
}

type memShard struct {
	shardState
	_ [128 - unsafe.Sizeof(shardState{})]byte // 128 bytes: shards never share a cache line
}

type shardState struct {
	mu      sync.Mutex
	t       table  // key hash -> theoretical arrival time, ns since epoch
	sweepAt int    // size at which the next insert sweeps fresh keys
	inserts int    // inserts since the last sweep
	evicted uint64 // live keys evicted by the cap
}

// Sweeps start once a shard holds this many keys; sampling for eviction looks at this many.
const (
	minSweep    = 64
	evictSample = 16
)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(cfg MemoryConfig) (*MemoryStore, error) {
	if cfg.MaxKeys < 0 {
		return nil, fmt.Errorf("ratelimit: MaxKeys %d must not be negative", cfg.MaxKeys)
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

func (s *MemoryStore) hash(policy, key string) uint64 {
	return s.hashWith(s.policyHash(policy), key)
}

// policyHash and hashWith split hash so that a Limiter can hash its policy name once. Two seeded
// hashes mixed: no string is built per decision.
func (s *MemoryStore) policyHash(policy string) uint64 {
	return maphash.String(s.seed, policy) * 0x9e3779b97f4a7c15
}

func (s *MemoryStore) hashWith(policyHash uint64, key string) uint64 {
	return maphash.String(s.seed, key) ^ policyHash
}

func (s *MemoryStore) shard(h uint64) *memShard {
	return &s.shards[(h>>s.shift)&uint64(len(s.shards)-1)]
}

func (s *MemoryStore) now() int64 { return int64(time.Since(s.epoch)) }

// Take implements [Store].
func (s *MemoryStore) Take(ctx context.Context, reqs []Request, res []Result) error {
	if err := checkBatch(reqs, res); err != nil {
		return err
	}
	s.take(reqs, res)
	return nil
}

// Reset implements [Store].
func (s *MemoryStore) Reset(ctx context.Context, req Request) error {
	h := s.hash(req.Policy, req.Key)
	sh := s.shard(h)
	sh.mu.Lock()
	sh.t.delete(h)
	sh.mu.Unlock()
	return nil
}

// take decides validated requests. Single requests, the common case, lock one shard and
// allocate nothing.
func (s *MemoryStore) take(reqs []Request, res []Result) {
	if len(reqs) == 1 {
		q := &reqs[0]
		res[0] = s.takeOne(s.hash(q.Policy, q.Key), q, nil)
		return
	}
	s.takeMany(reqs, res)
}

// memCount counts a Limiter's decisions in one shard, guarded by that shard's mutex: counting
// under a lock already held costs no atomic operation.
type memCount struct {
	allowed, limited uint64
	_                [48]byte
}

// takeOne decides one validated request whose key hashes to h, and counts it in counts (one per
// shard) unless counts is nil.
func (s *MemoryStore) takeOne(h uint64, q *Request, counts []memCount) Result {
	si := (h >> s.shift) & uint64(len(s.shards)-1)
	sh := &s.shards[si]
	h = fix(h)
	sh.mu.Lock()
	now := s.now()
	i, ok := sh.t.find(h)
	var tat int64
	if ok {
		tat = sh.t.slots[i].tat
	}
	r, next := gcra(tat, now, q.Limit, q.N)
	if q.N != 0 && (q.N < 0 || r.Allowed) {
		s.setAt(sh, h, i, ok, next, now)
	}
	if counts != nil {
		if r.Allowed {
			counts[si].allowed++
		} else {
			counts[si].limited++
		}
	}
	sh.mu.Unlock()
	r.Policy = q.Policy
	return r
}

// takeMany locks every shard involved, in index order so that concurrent batches cannot
// deadlock, charges the requests one by one and undoes every charge if one is denied.
func (s *MemoryStore) takeMany(reqs []Request, res []Result) {
	type undo struct {
		h   uint64
		tat int64
	}
	var hbuf [8]uint64
	var ibuf [8]int
	var ubuf [8]undo
	hs, idx, undos := hbuf[:0], ibuf[:0], ubuf[:0]
	for i := range reqs {
		h := s.hash(reqs[i].Policy, reqs[i].Key)
		hs = append(hs, h)
		idx = append(idx, int((h>>s.shift)&uint64(len(s.shards)-1)))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		s.shards[i].mu.Lock()
	}
	now := s.now()
	granted := true
	for i := range reqs {
		q := &reqs[i]
		sh := s.shard(hs[i])
		tat := sh.t.get(hs[i])
		r, next := gcra(tat, now, q.Limit, q.N)
		r.Policy = q.Policy
		res[i] = r
		if q.N > 0 && !r.Allowed {
			granted = false
		}
		if q.N != 0 && (q.N < 0 || r.Allowed) {
			undos = append(undos, undo{hs[i], tat})
			s.store(sh, hs[i], next, now)
		}
	}
	if !granted {
		for j := len(undos) - 1; j >= 0; j-- {
			u := undos[j]
			s.store(s.shard(u.h), u.h, u.tat, now)
		}
		for i := range reqs {
			uncharge(&res[i], reqs[i])
		}
	}
	for _, i := range idx {
		s.shards[i].mu.Unlock()
	}
}

// store sets the tat of h to next, deleting keys that are back to a full burst and making room
// for new keys. The shard is locked.
func (s *MemoryStore) store(sh *memShard, h uint64, next, now int64) {
	h = fix(h)
	i, ok := sh.t.find(h)
	s.setAt(sh, h, i, ok, next, now)
}

// setAt is store for a fixed hash h already looked up: i is its slot, ok whether it is there.
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
// back to a full burst when the shard has doubled since its last sweep (amortised O(1) per
// insert), and evicts when the shard is at its cap.
func (s *MemoryStore) insert(sh *memShard, h uint64, i int, tat, now int64) {
	n := sh.t.n
	sh.inserts++
	// Sweep when the shard has doubled since its last sweep, or, at the cap, after every
	// perShard/2 inserts: either way O(1) amortised per insert, and at the cap most room comes
	// from keys back to a full burst rather than from evictions.
	if n >= sh.sweepAt && n < s.perShard || n >= s.perShard && sh.inserts >= s.perShard/2 {
		sh.t.sweep(now)
		// Next sweep when the shard has doubled from its size before this sweep: keys that come
		// back to a full burst quickly are not forgotten and re-created over and over, and
		// memory stays within twice the working set (and under MaxKeys).
		sh.sweepAt = max(2*n, minSweep)
		sh.inserts = 0
		i, _ = sh.t.find(h)
	}
	if sh.t.n >= s.perShard {
		for sh.t.n >= max(s.perShard, 1) {
			if sh.t.evictOne(rand.Uint64, now, evictSample) {
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
	Keys    int    // keys held, including keys back to a full burst not reclaimed yet
	Evicted uint64 // keys evicted by MaxKeys before they were back to a full burst
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
