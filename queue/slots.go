package queue

import (
	"context"
	"sync"
	"time"
)

// slots hands a worker's run slots to the dispatchers of its queues. Without a shared
// Concurrency each queue has a pool of its own, with one member; with one, the queues are
// members of one pool, and each free slot goes to a queue that asks for one: by smooth weighted
// round robin over their Weights, or, with StrictPriority, to the asking queues of the highest
// Weight only (round robin among equals). A queue asks only while its dispatcher waits for
// slots, which it does only while it has jobs to claim: an idle queue leaves its share to the
// others, and no running job is ever stopped to make room for a queue of higher priority.
type slots struct {
	mu      sync.Mutex
	free    int
	strict  bool
	members []*member
}

// member is one queue's part of a pool.
type member struct {
	pool    *slots
	limit   int // the most slots the queue holds at once
	weight  int
	current int           // smooth weighted round robin: the member's running credit
	held    int           // slots granted and not released (running jobs, a claim in flight)
	ask     int           // slots the waiting dispatcher asks for; 0 while it does not wait
	granted int           // slots granted to the waiting dispatcher, not taken yet
	ready   chan struct{} // 1-buffered: granted grew
}

func newSlots(size int, strict bool) *slots { return &slots{free: size, strict: strict} }

func (s *slots) join(limit, weight int) *member {
	m := &member{pool: s, limit: limit, weight: weight, ready: make(chan struct{}, 1)}
	s.mu.Lock()
	s.members = append(s.members, m)
	s.mu.Unlock()
	return m
}

// acquire waits until at least one slot is granted, then, with a window, for up to window more
// until enough are; it returns the slots granted (at most the queue's limit), or 0 when ctx
// ended first. The queue then goes on asking: slots freed while its dispatcher claims are
// kept for its next acquire, so that a queue with a backlog keeps its share (or its rank)
// through its round trips. The dispatcher calls idle once the queue has no more jobs, and
// gives back with release the slots it does not use.
func (m *member) acquire(ctx context.Context, enough int, window time.Duration) int {
	s := m.pool
	s.mu.Lock()
	m.ask = m.limit
	s.distribute()
	s.mu.Unlock()
	var timeout <-chan time.Time
	for {
		s.mu.Lock()
		n := m.granted
		if n >= max(enough, 1) || n > 0 && window <= 0 {
			return m.take()
		}
		s.mu.Unlock()
		if n > 0 && timeout == nil {
			t := time.NewTimer(window)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-m.ready:
		case <-timeout:
			s.mu.Lock()
			return m.take()
		case <-ctx.Done():
			s.mu.Lock()
			return m.take()
		}
	}
}

// take returns the slots granted; s.mu is held, and released.
func (m *member) take() int {
	n := m.granted
	m.granted = 0
	select { // drained: a later acquire waits for grants made after this
	case <-m.ready:
	default:
	}
	m.pool.mu.Unlock()
	return n
}

// idle stops the queue's asking, and gives back the slots granted since its last acquire.
func (m *member) idle() {
	s := m.pool
	s.mu.Lock()
	m.ask = 0
	m.held -= m.granted
	s.free += m.granted
	m.granted = 0
	s.distribute()
	s.mu.Unlock()
}

// release gives back n slots taken from acquire.
func (m *member) release(n int) {
	if n <= 0 {
		return
	}
	s := m.pool
	s.mu.Lock()
	m.held -= n
	s.free += n
	s.distribute()
	s.mu.Unlock()
}

// distribute grants the free slots to the waiting members, one at a time. s.mu is held.
func (s *slots) distribute() {
	for s.free > 0 {
		top := 0 // strict: only the highest weight asking may have a slot
		if s.strict {
			for _, m := range s.members {
				if m.asking() && m.weight > top {
					top = m.weight
				}
			}
		}
		var best *member
		total := 0
		for _, m := range s.members {
			if !m.asking() || m.weight < top {
				continue
			}
			m.current += m.weight
			total += m.weight
			if best == nil || m.current > best.current {
				best = m
			}
		}
		if best == nil {
			return
		}
		best.current -= total
		best.granted++
		best.held++
		s.free--
		select {
		case best.ready <- struct{}{}:
		default:
		}
	}
}

// asking reports whether m waits for a slot it may hold.
func (m *member) asking() bool { return m.granted < m.ask && m.held < m.limit }
