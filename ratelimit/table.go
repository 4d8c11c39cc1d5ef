package ratelimit

// table is an open-addressing hash table from a key hash to a time (a GCRA key's theoretical
// arrival time, or when a strict key's newest grant leaves the window), with linear probing, at
// most 13/16 full. It replaces a Go map on the memory store's hot path: a decision finds its slot
// once and updates it in place (a map needs a lookup and an assignment), and a slot is 16 bytes
// with no per-entry overhead. Not safe for concurrent use: each shard guards its own.
type table struct {
	slots []slot // length is a power of two, at most 13/16 full
	n     int    // occupied slots
}

// slot holds a key hash (never 0: 0 marks an empty slot) and its value.
type slot struct {
	h   uint64
	tat int64
}

const minTable = 8

// fix maps the hash 0, which marks empty slots, to 1.
func fix(h uint64) uint64 {
	if h == 0 {
		return 1
	}
	return h
}

// find returns the index of h's slot and whether it is occupied by h; if not, the index is the
// empty slot where h belongs.
func (t *table) find(h uint64) (int, bool) {
	if len(t.slots) == 0 {
		t.slots = make([]slot, minTable)
	}
	mask := len(t.slots) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		switch t.slots[i].h {
		case h:
			return i, true
		case 0:
			return i, false
		}
	}
}

// get returns the value of h, or 0 if absent.
func (t *table) get(h uint64) int64 {
	if i, ok := t.find(fix(h)); ok {
		return t.slots[i].tat
	}
	return 0
}

// insertAt fills the empty slot i found for h. It may grow the table, so indexes found before
// are invalid afterwards.
func (t *table) insertAt(i int, h uint64, tat int64) {
	if 16*(t.n+1) > 13*len(t.slots) {
		t.resize(2 * len(t.slots))
		i, _ = t.find(h)
	}
	t.slots[i] = slot{h, tat}
	t.n++
}

// set sets the value of h.
func (t *table) set(h uint64, tat int64) {
	h = fix(h)
	i, ok := t.find(h)
	if ok {
		t.slots[i].tat = tat
		return
	}
	t.insertAt(i, h, tat)
}

// deleteAt empties slot i and shifts back the entries of its probe run, so that every entry
// stays reachable from its home slot without tombstones.
func (t *table) deleteAt(i int) {
	mask := len(t.slots) - 1
	for j := (i + 1) & mask; t.slots[j].h != 0; j = (j + 1) & mask {
		home := int(t.slots[j].h) & mask
		// Move j into the hole at i unless its home lies cyclically in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = slot{}
	t.n--
}

// delete removes h if present.
func (t *table) delete(h uint64) {
	if i, ok := t.find(fix(h)); ok {
		t.deleteAt(i)
	}
}

// resize rehashes every entry into a table of size slots.
func (t *table) resize(size int) {
	old := t.slots
	t.slots = make([]slot, size)
	mask := size - 1
	for _, s := range old {
		if s.h == 0 {
			continue
		}
		i := int(s.h) & mask
		for t.slots[i].h != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = s
	}
}

// sweep drops every entry whose value is at or before now (keys back to a full burst) and
// shrinks the table to fit what is left.
func (t *table) sweep(now int64) {
	live := 0
	for _, s := range t.slots {
		if s.h != 0 && s.tat > now {
			live++
		}
	}
	size := minTable
	for 8*live > 5*size { // at most 5/8 full after a sweep, room to grow
		size *= 2
	}
	old := t.slots
	t.slots, t.n = make([]slot, size), live
	mask := size - 1
	for _, s := range old {
		if s.h == 0 || s.tat <= now {
			continue
		}
		i := int(s.h) & mask
		for t.slots[i].h != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = s
	}
}

// evictOne removes one entry, looking at up to sample entries at random places: the first one
// at or before now if any (forgetting it changes nothing), else the one with the earliest value
// (the nearest to a full burst). Random places, not a run from one place: linear probing packs
// recent inserts together at the ends of clusters, so a run would see only live entries. It
// returns the hash removed and whether its entry was still live.
func (t *table) evictOne(rnd func() uint64, now int64, sample int) (h uint64, live bool) {
	if t.n == 0 {
		return 0, false
	}
	mask := len(t.slots) - 1
	victim, best, seen := -1, int64(0), 0
	for tries := 0; seen < sample && (tries < 8*sample || victim < 0); tries++ {
		i := int(rnd()) & mask
		s := t.slots[i]
		if s.h == 0 {
			continue
		}
		if s.tat <= now {
			t.deleteAt(i)
			return s.h, false
		}
		if victim < 0 || s.tat < best {
			victim, best = i, s.tat
		}
		seen++
	}
	h = t.slots[victim].h
	t.deleteAt(victim)
	return h, true
}
