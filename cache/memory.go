package cache

import (
	"fmt"
	"hash/maphash"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// MemoryConfig configures a [MemoryStore]. The zero value is ready to use.
type MemoryConfig struct {
	// MaxEntries caps the number of entries held; DefaultMaxEntries when zero.
	MaxEntries int
	// MaxBytes, when positive, also caps the bytes held, counted as the length of each key plus
	// the size of its value: its length for []byte and string values, its encoded length for
	// values that came from Redis, and Config.Weigh (or 64 bytes) for other values.
	MaxBytes int64
}

// DefaultMaxEntries is a MemoryStore's capacity when MemoryConfig.MaxEntries is zero.
const DefaultMaxEntries = 10_000

// MemoryStore is the in-process layer: a [Store] on its own (one instance, tests), and the
// local layer (L1) in front of a [RedisStore].
//
// It holds decoded values, so a hit costs a lookup and no decoding or allocation. Keys are
// hashed once, with a per-store random seed: the high bits pick a shard, the low bits a slot in
// the shard's open-addressing table of atomic pointers. Readers take no lock; writers take
// their shard's mutex. Eviction follows SIEVE (Zhang et al., NSDI 2024): a
// hit only sets a flag on its entry, and when a shard is full a hand walks from its oldest
// entries, clearing flags, and evicts the first entry not read since the hand last passed. It
// keeps popular entries like LRU does while new entries read once leave early, and its hit
// ratio is at least LRU's on most workloads while a hit never takes the write lock. Expired
// entries are removed when read, when the hand meets them and a few at each insert: no
// goroutine, nothing to close.
//
// A MemoryStore serves one [Cache]. It must be created with [NewMemoryStore]; it is safe for
// concurrent use.
type MemoryStore struct {
	seed     maphash.Seed
	epoch    time.Time
	now      func() int64 // ns since epoch; replaced by tests
	wall     func() int64 // Unix ms, for the times stored in Redis; replaced by tests
	shift    uint         // shard index = hash >> shift; the low bits pick the slot in its table
	perShard int
	perBytes int64
	shards   []memShard

	// Generations guard fills against invalidations that happen while the data is fetched: a
	// fill started at generation g is dropped if the key (or the whole store) was invalidated
	// after g. See begin and fill.
	seq      atomic.Uint64 // bumped by every write, invalidation and flush
	floor    atomic.Uint64 // fills that started before it are dropped (set by flush)
	inflight atomic.Int64  // fills in progress; invalidations leave tombstones while > 0

	attached atomic.Bool
	counts   lookups
}

type memShard struct {
	shardState
	_ [(256 - unsafe.Sizeof(shardState{})%128) % 128]byte // shards never share a cache line
}

type shardState struct {
	tab   atomic.Pointer[table] // read by every lookup; replaced when it grows
	mu    sync.Mutex            // writers
	head  *entry                // newest
	tail  *entry                // oldest
	hand  *entry                // SIEVE hand: the next entry it looks at, moving from tail to head
	sweep *entry                // next entry the insert-time expiry sweep looks at
	bytes int64
	floor uint64 // fills of this shard that started before it are dropped (tombstones gone)

	evictions, expired atomic.Uint64
}

// lookups counts hits and misses, spread over stripes picked by key hash (bits the shard and
// slot choices do not use): every lookup writes one, and one counter per shard would make the
// cores reading hot keys fight over its cache line.
type lookups [64]lookupStripe

type lookupStripe struct {
	hits, misses atomic.Uint64
	_            [48]byte
}

func (l *lookups) at(h uint64) *lookupStripe { return &l[h>>20&63] }

// entry is one cached value. Everything but visited and the list links is immutable once the
// entry is in a map: a change replaces the entry.
type entry struct {
	key     string
	hash    uint64 // of key, with the store's seed
	value   any
	fresh   int64 // ns since epoch: fresh until
	stale   int64 // stale-while-revalidate until
	hard    int64 // removed at
	load    int64 // how long the value took to load, ns (for early refresh)
	gen     uint64
	weight  int64
	neg     bool // "not found", cached
	tomb    bool // an invalidation, kept while fills are in flight
	visited atomic.Bool

	prev, next *entry // prev is newer, next is older
}

// tombstoneTTL is how long an invalidation is remembered for fills in flight. When a tombstone
// goes, its generation becomes the shard's floor, so a fill older than it is still dropped.
const tombstoneTTL = int64(10 * time.Second)

// defaultWeight is the size of a value whose size the store cannot know.
const defaultWeight = 64

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(cfg MemoryConfig) (*MemoryStore, error) {
	if cfg.MaxEntries < 0 {
		return nil, fmt.Errorf("%w: MemoryConfig.MaxEntries is negative", ErrInvalidConfig)
	}
	if cfg.MaxBytes < 0 {
		return nil, fmt.Errorf("%w: MemoryConfig.MaxBytes is negative", ErrInvalidConfig)
	}
	n := cfg.MaxEntries
	if n == 0 {
		n = DefaultMaxEntries
	}
	// Enough shards that cores rarely meet, few enough that each holds at least 64 entries:
	// SIEVE judges entries against their shard, and tiny shards would evict by accident.
	shardBits := bits.Len(uint(4*runtime.GOMAXPROCS(0) - 1))
	for shardBits > 0 && n>>shardBits < 64 {
		shardBits--
	}
	shards := 1 << shardBits
	s := &MemoryStore{
		seed:     maphash.MakeSeed(),
		epoch:    time.Now(),
		shift:    uint(64 - shardBits),
		perShard: (n + shards - 1) / shards,
		shards:   make([]memShard, shards),
	}
	if cfg.MaxBytes > 0 {
		s.perBytes = max(1, cfg.MaxBytes/int64(shards))
	}
	s.now = func() int64 { return int64(time.Since(s.epoch)) }
	s.wall = func() int64 { return time.Now().UnixMilli() }
	for i := range s.shards {
		s.shards[i].tab.Store(newTable(0))
	}
	return s, nil
}

func (s *MemoryStore) layers() (*MemoryStore, *RedisStore) { return s, nil }

// attach claims the store for a Cache, emptied: entries of a former Cache may hold values of
// another type.
func (s *MemoryStore) attach() bool {
	if !s.attached.CompareAndSwap(false, true) {
		return false
	}
	s.flush()
	return true
}

func (s *MemoryStore) detach() { s.attached.Store(false) }

// shard returns the shard of hash h. With one shard, shift is 64 and h>>64 is 0.
func (s *MemoryStore) shard(h uint64) *shardState { return &s.shards[h>>s.shift].shardState }

func (s *MemoryStore) hash(key string) uint64 { return maphash.String(s.seed, key) }

// get returns the live entry of key: not expired and not a tombstone. It takes no lock, hashes
// the key once, and writes nothing shared but a counter unless the entry was not flagged yet.
func (s *MemoryStore) get(key string, now int64) *entry {
	h := s.hash(key)
	sh := s.shard(h)
	e := sh.tab.Load().get(h, key)
	n := s.counts.at(h)
	if e == nil || e.tomb {
		n.misses.Add(1)
		return nil
	}
	if now >= e.hard {
		n.misses.Add(1)
		sh.mu.Lock()
		if sh.tab.Load().get(h, key) == e {
			sh.remove(e, s)
			sh.expired.Add(1)
		}
		sh.mu.Unlock()
		return nil
	}
	if !e.visited.Load() {
		e.visited.Store(true)
	}
	if now < e.fresh {
		n.hits.Add(1)
	} else {
		n.misses.Add(1) // stale: served only by the Cache's stale windows, counted there
	}
	return e
}

// begin marks the start of a fill: it returns the generation to hand to fill, and the caller
// must call end when the fill is stored or dropped.
func (s *MemoryStore) begin() uint64 {
	// The order matters: an invalidation bumps seq and then reads inflight. Either it sees this
	// fill (and leaves a tombstone), or this fill sees its generation (and is not older).
	s.inflight.Add(1)
	return s.seq.Load()
}

func (s *MemoryStore) end() { s.inflight.Add(-1) }

// fill stores e unless the key, its shard or the store was invalidated after start. It reports
// whether e was stored.
func (s *MemoryStore) fill(e *entry, start uint64) bool { return s.fillGen(e, start, false) }

// fillWrite stores e, written by this instance, as the newest write of its key unless the key
// was invalidated after start (by a later write announced by another instance). Unlike fill it
// takes a new generation, so that a fill which started before this write cannot replace it.
func (s *MemoryStore) fillWrite(e *entry, start uint64) bool { return s.fillGen(e, start, true) }

func (s *MemoryStore) fillGen(e *entry, start uint64, write bool) bool {
	e.hash = s.hash(e.key)
	sh := s.shard(e.hash)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if start < s.floor.Load() || start < sh.floor {
		return false
	}
	if old := sh.tab.Load().get(e.hash, e.key); old != nil && old.gen > start {
		return false
	}
	e.gen = start
	if write {
		e.gen = s.seq.Add(1)
	}
	sh.put(e, s)
	return true
}

// set stores e as the newest write of its key.
func (s *MemoryStore) set(e *entry) {
	e.hash = s.hash(e.key)
	sh := s.shard(e.hash)
	sh.mu.Lock()
	e.gen = s.seq.Add(1)
	sh.put(e, s)
	sh.mu.Unlock()
}

// invalidate forgets key. While fills are in flight, it leaves a tombstone so that a fill which
// started before it cannot store what it fetched.
func (s *MemoryStore) invalidate(key string) {
	h := s.hash(key)
	sh := s.shard(h)
	sh.mu.Lock()
	g := s.seq.Add(1)
	if s.inflight.Load() > 0 {
		sh.put(&entry{key: key, hash: h, gen: g, tomb: true, hard: s.now() + tombstoneTTL}, s)
	} else if e := sh.tab.Load().get(h, key); e != nil {
		sh.remove(e, s)
	}
	sh.mu.Unlock()
}

// flush forgets every entry, and every fill in flight.
func (s *MemoryStore) flush() {
	g := s.seq.Add(1)
	for f := s.floor.Load(); f < g && !s.floor.CompareAndSwap(f, g); f = s.floor.Load() {
	}
	for i := range s.shards {
		sh := &s.shards[i].shardState
		sh.mu.Lock()
		sh.tab.Store(newTable(0))
		sh.head, sh.tail, sh.hand, sh.sweep, sh.bytes = nil, nil, nil, nil, 0
		sh.mu.Unlock()
	}
}

// put inserts e (replacing the key's entry) and evicts what the caps require. sh.mu is held.
func (sh *shardState) put(e *entry, s *MemoryStore) {
	tab := sh.tab.Load()
	if tab.full() {
		tab = tab.grown()
		sh.tab.Store(tab)
	}
	e.weight = int64(len(e.key)) + e.weight
	if old := tab.put(e); old != nil {
		e.visited.Store(old.visited.Load())
		sh.unlink(old)
	}
	sh.bytes += e.weight
	e.prev, e.next = nil, sh.head
	if sh.head != nil {
		sh.head.prev = e
	}
	sh.head = e
	if sh.tail == nil {
		sh.tail = e
	}
	now := s.now()
	sh.sweepExpired(now, s)
	for tab.live > s.perShard || (s.perBytes > 0 && sh.bytes > s.perBytes && tab.live > 1) {
		sh.evict(now, s)
	}
}

// sweepExpired removes up to two expired entries, walking the list a few entries per insert.
func (sh *shardState) sweepExpired(now int64, s *MemoryStore) {
	for range 4 {
		e := sh.sweep
		if e == nil {
			e = sh.tail
		}
		if e == nil {
			return
		}
		sh.sweep = e.prev
		if now >= e.hard && e != sh.head {
			sh.remove(e, s)
			sh.expired.Add(1)
		}
	}
}

// evict removes one entry, as SIEVE chooses: expired or not read since the hand last passed.
func (sh *shardState) evict(now int64, s *MemoryStore) {
	e := sh.hand
	if e == nil {
		e = sh.tail
	}
	for e.visited.Load() && now < e.hard && !e.tomb {
		e.visited.Store(false)
		e = e.prev
		if e == nil {
			e = sh.tail
		}
	}
	sh.hand = e.prev
	if now < e.hard && !e.tomb {
		sh.evictions.Add(1)
	}
	sh.remove(e, s)
}

// remove unlinks e and deletes it from the map. Its generation becomes the shard's floor: a
// fill that started before it (before an invalidation, or before a write) is dropped even
// though the entry that said so is gone.
func (sh *shardState) remove(e *entry, s *MemoryStore) {
	sh.floor = max(sh.floor, e.gen)
	sh.tab.Load().remove(e)
	sh.unlink(e)
}

func (sh *shardState) unlink(e *entry) {
	if sh.hand == e {
		sh.hand = e.prev
	}
	if sh.sweep == e {
		sh.sweep = e.prev
	}
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		sh.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		sh.tail = e.prev
	}
	e.prev, e.next = nil, nil
	sh.bytes -= e.weight
}

// MemoryStats counts what a MemoryStore did since it was created.
type MemoryStats struct {
	// Hits counts lookups that found fresh data; Misses the others (nothing, expired or stale).
	Hits, Misses uint64
	// Evictions counts live entries removed to make room; Expired counts entries removed
	// because their time was up.
	Evictions, Expired uint64
	// Entries and Bytes are what the store holds now (including invalidation tombstones).
	Entries int
	Bytes   int64
}

// Stats returns a snapshot of the store's counters.
func (s *MemoryStore) Stats() MemoryStats {
	var st MemoryStats
	for i := range s.counts {
		st.Hits += s.counts[i].hits.Load()
		st.Misses += s.counts[i].misses.Load()
	}
	for i := range s.shards {
		sh := &s.shards[i].shardState
		st.Evictions += sh.evictions.Load()
		st.Expired += sh.expired.Load()
		sh.mu.Lock()
		st.Entries += sh.tab.Load().live
		st.Bytes += sh.bytes
		sh.mu.Unlock()
	}
	return st
}

// Len returns the number of entries held, expired ones included until they are reclaimed.
func (s *MemoryStore) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i].shardState
		sh.mu.Lock()
		n += sh.tab.Load().live
		sh.mu.Unlock()
	}
	return n
}
