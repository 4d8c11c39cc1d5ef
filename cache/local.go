package cache

import (
	"hash/maphash"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// localLayer holds decoded values in process memory: a MemoryStore's data, shared by its
// caches, or the private layer (L1) of a Cache over a RedisStore. A hit costs a lookup and no
// decoding or allocation.
//
// Keys are hashed once, with a per-layer random seed, and the hash is xored with the salt of
// the Cache that owns the key: caches sharing a layer never match each other's entries (equal
// keys of two caches differ in their hashes). The high bits of the hash pick a shard, the low
// bits a slot in the shard's open-addressing table of atomic pointers. Readers take no lock;
// writers take their shard's mutex.
//
// Eviction follows SIEVE (Zhang et al., NSDI 2024): a hit only sets a flag on its entry, and
// when a shard is full a hand walks from its oldest entries, clearing flags, and evicts the
// first entry not read since the hand last passed. It keeps popular entries as LRU does while
// new entries read once leave early, and a hit never takes the write lock. Expired entries are
// removed when read, when the hand meets them and a few at each insert: no goroutine.
type localLayer struct {
	seed     maphash.Seed
	clock    *clock
	shift    uint // shard index = hash >> shift; the low bits pick the slot in its table
	perShard int
	perBytes int64
	off      bool // holds nothing (Config.DisableLocal): reads miss, writes are dropped
	shards   []memShard

	// Generations guard fills against invalidations that happen while the data is fetched: a
	// fill started at generation g is dropped if the key (or the whole layer) was invalidated
	// after g. See begin and fill.
	seq      atomic.Uint64 // bumped by every write, invalidation and flush
	floor    atomic.Uint64 // fills that started before it are dropped (set by flush)
	inflight atomic.Int64  // fills in progress; invalidations leave tombstones while > 0
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

// entry is one cached value. Everything but visited and the list links is immutable once the
// entry is in a table: a change replaces the entry.
type entry struct {
	key     string
	hash    uint64 // of key, with the layer's seed, xored with its Cache's salt
	value   any
	fresh   int64 // ns on the layer's clock: fresh until
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

// defaultWeight is the size of a value whose size the layer cannot know.
const defaultWeight = 64

// defaultMaxEntries is a local layer's capacity when MemoryConfig.MaxEntries is zero.
const defaultMaxEntries = 10_000

func newLocalLayer(cfg MemoryConfig, clk *clock, off bool) *localLayer {
	n := cfg.MaxEntries
	if n == 0 {
		n = defaultMaxEntries
	}
	// Enough shards that cores rarely meet, few enough that each holds at least 64 entries:
	// SIEVE judges entries against their shard, and tiny shards would evict by accident.
	shardBits := bits.Len(uint(4*runtime.GOMAXPROCS(0) - 1))
	for shardBits > 0 && n>>shardBits < 64 || off && shardBits > 0 {
		shardBits--
	}
	shards := 1 << shardBits
	l := &localLayer{
		seed:     maphash.MakeSeed(),
		clock:    clk,
		shift:    uint(64 - shardBits),
		perShard: (n + shards - 1) / shards,
		off:      off,
		shards:   make([]memShard, shards),
	}
	if cfg.MaxBytes > 0 {
		l.perBytes = max(1, cfg.MaxBytes/int64(shards))
	}
	for i := range l.shards {
		l.shards[i].tab.Store(newTable(0))
	}
	return l
}

// shard returns the shard of hash h. With one shard, shift is 64 and h>>64 is 0.
func (l *localLayer) shard(h uint64) *shardState { return &l.shards[h>>l.shift].shardState }

// hash returns the hash of key for the Cache of the given salt.
func (l *localLayer) hash(key string, salt uint64) uint64 { return maphash.String(l.seed, key) ^ salt }

// get returns the live entry of key (hashed to h): not expired and not a tombstone. It takes
// no lock, and writes nothing shared unless the entry was not flagged yet.
func (l *localLayer) get(h uint64, key string, now int64) *entry {
	sh := l.shard(h)
	e := sh.tab.Load().get(h, key)
	if e == nil || e.tomb {
		return nil
	}
	if now >= e.hard {
		sh.mu.Lock()
		if sh.tab.Load().get(h, key) == e {
			sh.remove(e)
			sh.expired.Add(1)
		}
		sh.mu.Unlock()
		return nil
	}
	if !e.visited.Load() {
		e.visited.Store(true)
	}
	return e
}

// begin marks the start of a fill: it returns the generation to hand to fill, and the caller
// must call end when the fill is stored or dropped.
func (l *localLayer) begin() uint64 {
	// The order matters: an invalidation bumps seq and then reads inflight. Either it sees this
	// fill (and leaves a tombstone), or this fill sees its generation (and is not older).
	l.inflight.Add(1)
	return l.seq.Load()
}

func (l *localLayer) end() { l.inflight.Add(-1) }

// fill stores e unless its key, its shard or the layer was invalidated after start. It
// reports whether e was refused for that reason. now is the layer's clock, read by the caller.
func (l *localLayer) fill(e *entry, start uint64, now int64) (refused bool) {
	return l.fillGen(e, start, false, now)
}

// fillWrite stores e, written by this instance, as the newest write of its key unless the key
// was invalidated after start (by a later write announced by another instance). Unlike fill it
// takes a new generation, so that a fill which started before this write cannot replace it.
func (l *localLayer) fillWrite(e *entry, start uint64, now int64) { l.fillGen(e, start, true, now) }

func (l *localLayer) fillGen(e *entry, start uint64, write bool, now int64) (refused bool) {
	if l.off {
		return false
	}
	sh := l.shard(e.hash)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if start < l.floor.Load() || start < sh.floor {
		return true
	}
	if old := sh.tab.Load().get(e.hash, e.key); old != nil && old.gen > start {
		return true
	}
	e.gen = start
	if write {
		e.gen = l.seq.Add(1)
	}
	sh.put(e, l, now)
	return false
}

// set stores e as the newest write of its key.
func (l *localLayer) set(e *entry, now int64) {
	if l.off {
		return
	}
	sh := l.shard(e.hash)
	sh.mu.Lock()
	e.gen = l.seq.Add(1)
	sh.put(e, l, now)
	sh.mu.Unlock()
}

// invalidate forgets key (hashed to h). While fills are in flight, it leaves a tombstone so
// that a fill which started before it cannot store what it fetched.
func (l *localLayer) invalidate(h uint64, key string) {
	if l.off {
		return
	}
	sh := l.shard(h)
	sh.mu.Lock()
	g := l.seq.Add(1)
	if l.inflight.Load() > 0 {
		now := l.clock.now()
		sh.put(&entry{key: key, hash: h, gen: g, tomb: true, hard: now + tombstoneTTL}, l, now)
	} else if e := sh.tab.Load().get(h, key); e != nil {
		sh.remove(e)
	}
	sh.mu.Unlock()
}

// flush forgets every entry, and every fill in flight.
func (l *localLayer) flush() {
	g := l.seq.Add(1)
	for f := l.floor.Load(); f < g && !l.floor.CompareAndSwap(f, g); f = l.floor.Load() {
	}
	for i := range l.shards {
		sh := &l.shards[i].shardState
		sh.mu.Lock()
		sh.tab.Store(newTable(0))
		sh.head, sh.tail, sh.hand, sh.sweep, sh.bytes = nil, nil, nil, nil, 0
		sh.mu.Unlock()
	}
}

// purge removes the entries of the Cache of the given salt, which closed.
func (l *localLayer) purge(salt uint64) {
	for i := range l.shards {
		sh := &l.shards[i].shardState
		sh.mu.Lock()
		for e := sh.head; e != nil; {
			next := e.next
			if l.hash(e.key, salt) == e.hash {
				sh.remove(e)
			}
			e = next
		}
		sh.mu.Unlock()
	}
}

// put inserts e (replacing the key's entry) and evicts what the caps require, expired at now.
// sh.mu is held.
func (sh *shardState) put(e *entry, l *localLayer, now int64) {
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
	sh.sweepExpired(now, l)
	for tab.live > l.perShard || (l.perBytes > 0 && sh.bytes > l.perBytes && tab.live > 1) {
		sh.evict(now, l)
	}
}

// sweepExpired removes expired entries among the next four the sweep looks at, walking the
// list a few entries per insert.
func (sh *shardState) sweepExpired(now int64, l *localLayer) {
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
			sh.remove(e)
			sh.expired.Add(1)
		}
	}
}

// evict removes one entry, as SIEVE chooses: expired or not read since the hand last passed.
func (sh *shardState) evict(now int64, l *localLayer) {
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
	sh.remove(e)
}

// remove unlinks e and deletes it from the table. Its generation becomes the shard's floor: a
// fill that started before it (before an invalidation, or before a write) is dropped even
// though the entry that said so is gone.
func (sh *shardState) remove(e *entry) {
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

// MemoryStats describes a local layer: a MemoryStore's, or a Cache's own in front of a
// RedisStore. It is a snapshot, a plain value; the zero value counts nothing.
type MemoryStats struct {
	// Evictions counts live entries removed to make room; Expired counts entries removed
	// because their time was up.
	Evictions, Expired uint64
	// Entries and Bytes are what the layer holds now (including invalidation tombstones, and
	// expired entries not yet reclaimed).
	Entries int
	Bytes   int64
}

func (l *localLayer) stats() MemoryStats {
	var st MemoryStats
	for i := range l.shards {
		sh := &l.shards[i].shardState
		st.Evictions += sh.evictions.Load()
		st.Expired += sh.expired.Load()
		sh.mu.Lock()
		st.Entries += sh.tab.Load().live
		st.Bytes += sh.bytes
		sh.mu.Unlock()
	}
	return st
}

// len returns the number of entries held.
func (l *localLayer) len() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i].shardState
		sh.mu.Lock()
		n += sh.tab.Load().live
		sh.mu.Unlock()
	}
	return n
}

// clock is the time of the local layers and of the times a Cache writes to Redis. Tests of
// Redis paths move it with miniredis's clock; otherwise it is the process's clock.
type clock struct {
	epoch time.Time
	fake  atomic.Pointer[atomic.Int64] // Unix ns, when set by a test
}

func newClock() *clock { return &clock{epoch: time.Now()} }

// now returns monotonic ns since the clock's epoch (a test's fake clock: Unix ns).
func (c *clock) now() int64 {
	if f := c.fake.Load(); f != nil {
		return f.Load()
	}
	return int64(time.Since(c.epoch))
}

// times returns now and the wall clock (Unix ms, the clock of the times stored in Redis) read
// at one instant.
func (c *clock) times() (now, wall int64) {
	if f := c.fake.Load(); f != nil {
		ns := f.Load()
		return ns, ns / 1e6
	}
	t := time.Now()
	return int64(t.Sub(c.epoch)), t.UnixMilli()
}
