package cache

import "sync/atomic"

// table is a shard's index from key to entry: open addressing with linear probing over atomic
// slots. Readers take no lock and hash the key once (the hash that chose the shard also picks
// the slot); writers hold the shard's mutex. A full table is never mutated again once replaced
// by a bigger one, so a reader still probing it sees a consistent, slightly older index.
//
// The zero value is not usable; create one with newTable.
type table struct {
	slots []atomic.Pointer[entry]
	mask  uint64
	// Written by writers only, under the shard's mutex.
	live int // entries
	used int // slots that are not nil: entries and removed markers
}

// removed marks a slot whose entry left: probes go on past it, inserts may reuse it.
var removed = &entry{}

const minTableSize = 8

func newTable(size int) *table {
	n := minTableSize
	for n < size {
		n *= 2
	}
	return &table{slots: make([]atomic.Pointer[entry], n), mask: uint64(n - 1)}
}

// get returns key's entry, or nil. It is safe without the shard's mutex.
func (t *table) get(h uint64, key string) *entry {
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		e := t.slots[i].Load()
		if e == nil {
			return nil
		}
		if e != removed && e.hash == h && e.key == key {
			return e
		}
	}
}

// put stores e, replacing the entry of its key, and returns the entry it replaced. The caller
// holds the shard's mutex and has made room (see full).
func (t *table) put(e *entry) *entry {
	free := -1
	for i := e.hash & t.mask; ; i = (i + 1) & t.mask {
		s := t.slots[i].Load()
		switch {
		case s == nil:
			if free < 0 {
				free = int(i)
				t.used++
			}
			t.slots[free].Store(e)
			t.live++
			return nil
		case s == removed:
			if free < 0 {
				free = int(i)
			}
		case s.hash == e.hash && s.key == e.key:
			t.slots[i].Store(e)
			return s
		}
	}
}

// remove takes e out of the table, if it is there. The caller holds the shard's mutex.
func (t *table) remove(e *entry) {
	for i := e.hash & t.mask; ; i = (i + 1) & t.mask {
		s := t.slots[i].Load()
		if s == nil {
			return
		}
		if s == e {
			t.slots[i].Store(removed)
			t.live--
			return
		}
	}
}

// full reports whether one more insert would leave too few empty slots for probes to end soon.
func (t *table) full() bool { return (t.used+1)*4 > len(t.slots)*3 }

// grown returns a table holding t's entries with room for as many again, dropping the removed
// markers.
func (t *table) grown() *table {
	n := newTable(2 * (t.live + 1))
	for i := range t.slots {
		if e := t.slots[i].Load(); e != nil && e != removed {
			n.put(e)
		}
	}
	return n
}
