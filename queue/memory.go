package queue

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"
)

// MemoryConfig configures a [MemoryStore]. The zero value is ready to use.
type MemoryConfig struct {
	// DeadRetention is how long dead jobs are kept, for Dead and Redrive. Default: 168h (7
	// days).
	DeadRetention time.Duration
}

// DefaultDeadRetention is the default of DeadRetention.
const DefaultDeadRetention = 7 * 24 * time.Hour

// MemoryStore keeps jobs in process memory: for a service on one machine, and as the fake of
// application tests. It has the semantics of every store (leases, fencing, delays, retries,
// dead jobs) and loses its jobs with the process.
//
// The zero value is not usable; create one with [NewMemoryStore]. It is safe for concurrent use
// and has no goroutine.
type MemoryStore struct {
	cfg    MemoryConfig
	mu     sync.RWMutex
	byName map[string]*memQueue
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(cfg MemoryConfig) (*MemoryStore, error) {
	if cfg.DeadRetention < 0 {
		return nil, fmt.Errorf("%w: MemoryConfig.DeadRetention %v is negative", ErrInvalidConfig, cfg.DeadRetention)
	}
	if cfg.DeadRetention == 0 {
		cfg.DeadRetention = DefaultDeadRetention
	}
	return &MemoryStore{cfg: cfg, byName: map[string]*memQueue{}}, nil
}

func (s *MemoryStore) backend() backend { return s }

// queue returns the queue named name, made on first use.
func (s *MemoryStore) queue(name string) *memQueue {
	s.mu.RLock()
	q := s.byName[name]
	s.mu.RUnlock()
	if q != nil {
		return q
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if q = s.byName[name]; q == nil {
		q = &memQueue{
			name:  name,
			jobs:  map[string]*memJob{},
			due:   jobHeap{less: dueFirst},
			sched: jobHeap{less: func(a, b *memJob) bool { return a.RunAt.Before(b.RunAt) }},
			run:   jobHeap{less: func(a, b *memJob) bool { return a.deadline.Before(b.deadline) }},
		}
		s.byName[name] = q
	}
	return q
}

// memQueue is one queue's jobs. Each waiting or running job is in exactly one heap: due,
// sched or run; a dead one is in dead, oldest first.
type memQueue struct {
	name  string
	mu    sync.Mutex
	seq   int64
	jobs  map[string]*memJob
	due   jobHeap // waiting and due: dueFirst order
	sched jobHeap // waiting until runAt
	run   jobHeap // claimed, by lease deadline
	dead  []*memJob
	wake  chan struct{} // closed when a job may have become due; nil while nobody waits
	// paused stops claims; named says a job was enqueued (the queue is listed).
	paused, named bool
	// unique holds the UniqueKeys in force, until when; expired ones are swept once the map
	// doubles since the last sweep.
	unique  map[string]uniqueHold
	sweepAt int
}

// uniqueHold is a UniqueKey in force: until when, and for which job.
type uniqueHold struct {
	until time.Time
	id    string
}

// memJob is a job in a MemoryStore.
type memJob struct {
	Delivery
	seq         int64
	attempts    int // failures reported
	interrupted int // runs whose lease expired
	token       int64
	deadline    time.Time
	lastErr     string
	diedAt      time.Time
	idx         int // position in its heap
}

// dueFirst orders due jobs: higher priority, then earlier runAt, then earlier enqueue.
func dueFirst(a, b *memJob) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	if !a.RunAt.Equal(b.RunAt) {
		return a.RunAt.Before(b.RunAt)
	}
	return a.seq < b.seq
}

// notify wakes the waiters of q. q.mu is held.
func (q *memQueue) notify() {
	if q.wake != nil {
		close(q.wake)
		q.wake = nil
	}
}

// makeDue puts a waiting job in due or sched by its runAt. q.mu is held.
func (q *memQueue) makeDue(j *memJob, now time.Time) {
	if j.RunAt.After(now) {
		q.sched.push(j)
		return
	}
	q.due.push(j)
}

// takeBack takes back expired leases (dead after maxInterrupted interruptions): claims only,
// as on Redis, so that until a claim an expired lease stays its worker's (it may extend it)
// and counts as running. q.mu is held.
func (q *memQueue) takeBack(now time.Time, maxInterrupted int) {
	for len(q.run.items) > 0 && !q.run.items[0].deadline.After(now) {
		j := q.run.pop()
		j.interrupted++
		if maxInterrupted > 0 && j.interrupted >= maxInterrupted {
			q.kill(j, now, "lease expired "+strconv.Itoa(j.interrupted)+" times: the worker crashed or stalled")
			continue
		}
		q.due.push(j)
	}
}

// advance makes due the scheduled jobs whose time came and forgets the dead jobs past the
// retention. q.mu is held.
func (q *memQueue) advance(now time.Time, retention time.Duration) {
	for len(q.sched.items) > 0 && !q.sched.items[0].RunAt.After(now) {
		q.due.push(q.sched.pop())
	}
	i := 0
	for i < len(q.dead) && now.Sub(q.dead[i].diedAt) > retention {
		delete(q.jobs, q.dead[i].ID)
		i++
	}
	q.dead = q.dead[i:]
}

// holdUnique takes j's UniqueKey until now+UniqueFor and returns "", or returns the ID of the
// job that holds it. q.mu is held.
func (q *memQueue) holdUnique(j *Job, now time.Time) (holder string) {
	if j.UniqueKey == "" {
		return ""
	}
	if h, ok := q.unique[j.UniqueKey]; ok && now.Before(h.until) {
		return h.id
	}
	if q.unique == nil {
		q.unique = map[string]uniqueHold{}
	}
	if len(q.unique) >= q.sweepAt {
		for k, h := range q.unique {
			if !now.Before(h.until) {
				delete(q.unique, k)
			}
		}
		q.sweepAt = max(64, 2*len(q.unique))
	}
	q.unique[j.UniqueKey] = uniqueHold{until: now.Add(j.UniqueFor), id: j.ID}
	return ""
}

// kill makes j dead. j is in no heap; q.mu is held.
func (q *memQueue) kill(j *memJob, now time.Time, why string) {
	j.lastErr, j.diedAt = why, now
	q.dead = append(q.dead, j)
}

func (s *MemoryStore) enqueue(_ context.Context, jobs []Job) ([]string, error) {
	held := make([]string, len(jobs))
	now := time.Now()
	// One lock per run of jobs of one queue (a batch is usually of one queue).
	for i := 0; i < len(jobs); {
		q := s.queue(jobs[i].Queue)
		q.mu.Lock()
		stored := false
		for ; i < len(jobs) && jobs[i].Queue == q.name; i++ {
			j := &jobs[i]
			if old := q.jobs[j.ID]; old != nil && !old.diedAt.IsZero() && now.Sub(old.diedAt) > s.cfg.DeadRetention {
				q.advance(now, s.cfg.DeadRetention) // a dead job past its retention is gone
			}
			if _, ok := q.jobs[j.ID]; ok {
				held[i] = j.ID
				continue
			}
			if holder := q.holdUnique(j, now); holder != "" {
				held[i] = holder
				continue
			}
			q.seq++
			q.named = true
			mj := &memJob{seq: q.seq, Delivery: Delivery{
				ID: j.ID, Queue: j.Queue, Payload: append([]byte{}, j.Payload...), Priority: j.Priority, // never nil, as from Redis
				MaxAttempts: j.MaxAttempts, EnqueuedAt: now, RunAt: j.RunAt,
			}}
			q.jobs[j.ID] = mj
			q.makeDue(mj, now)
			stored = true
		}
		if stored {
			q.notify()
		}
		q.mu.Unlock()
	}
	return held, nil
}

func (s *MemoryStore) settleClaim(ctx context.Context, queue string, ops []op, n int, lease time.Duration, maxInterrupted int) ([]claimed, []bool, error) {
	var ok []bool
	if len(ops) > 0 {
		ok, _ = s.settle(ctx, ops)
	}
	got, err := s.claim(ctx, queue, n, lease, maxInterrupted)
	return got, ok, err
}

func (s *MemoryStore) claim(_ context.Context, queue string, n int, lease time.Duration, maxInterrupted int) ([]claimed, error) {
	q := s.queue(queue)
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	q.takeBack(now, maxInterrupted)
	q.advance(now, s.cfg.DeadRetention)
	if q.paused {
		n = 0
	}
	out := make([]claimed, 0, min(n, len(q.due.items)))
	for len(out) < n && len(q.due.items) > 0 {
		j := q.due.pop()
		j.token++
		j.Deliveries++
		j.deadline = now.Add(lease)
		q.run.push(j)
		d := j.Delivery
		d.Attempt = j.attempts + 1
		out = append(out, claimed{Delivery: d, token: j.token, deadline: j.deadline})
	}
	return out, nil
}

func (s *MemoryStore) settle(_ context.Context, ops []op) ([]bool, error) {
	ok := make([]bool, len(ops))
	now := time.Now()
	for i, o := range ops {
		q := s.queue(o.queue)
		q.mu.Lock()
		j := q.jobs[o.id]
		if j == nil || j.token != o.token || !j.diedAt.IsZero() || !q.run.holds(j) {
			q.mu.Unlock()
			continue
		}
		ok[i] = true
		switch o.kind {
		case opExtend:
			j.deadline = now.Add(o.lease)
			q.run.fix(j)
			q.mu.Unlock()
			continue
		case opAck:
			q.run.remove(j)
			delete(q.jobs, j.ID)
		case opRetry:
			q.run.remove(j)
			j.attempts++
			j.lastErr, j.RunAt = o.err, now.Add(o.delay)
			q.makeDue(j, now)
		case opDead:
			q.run.remove(j)
			j.attempts++
			q.kill(j, now, o.err)
		case opRelease:
			q.run.remove(j)
			j.Deliveries--
			q.due.push(j)
		}
		q.notify()
		q.mu.Unlock()
	}
	return ok, nil
}

func (s *MemoryStore) wait(ctx context.Context, queue string, timeout time.Duration) error {
	q := s.queue(queue)
	q.mu.Lock()
	now := time.Now()
	if len(q.due.items) > 0 && !q.paused {
		q.mu.Unlock()
		return nil
	}
	next := timeout
	for _, h := range []*jobHeap{&q.sched, &q.run} {
		if len(h.items) > 0 && !q.paused { // paused: only a resume (or timeout) ends the wait
			t := h.items[0].RunAt
			if h == &q.run {
				t = h.items[0].deadline
			}
			next = min(next, max(0, t.Sub(now)))
		}
	}
	if q.wake == nil {
		q.wake = make(chan struct{})
	}
	wake := q.wake
	q.mu.Unlock()
	if next <= 0 {
		return nil
	}
	timer := time.NewTimer(next)
	defer timer.Stop()
	select {
	case <-wake:
	case <-timer.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

func (s *MemoryStore) stats(_ context.Context, queue string) (QueueStats, error) {
	q := s.queue(queue)
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	q.advance(now, s.cfg.DeadRetention)
	st := QueueStats{Due: len(q.due.items), Scheduled: len(q.sched.items), Running: len(q.run.items), Dead: len(q.dead),
		Paused: q.paused}
	for _, j := range q.due.items {
		st.Lag = max(st.Lag, now.Sub(j.RunAt))
	}
	return st, nil
}

func (s *MemoryStore) dead(_ context.Context, queue string, limit int) ([]DeadJob, error) {
	q := s.queue(queue)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.advance(time.Now(), s.cfg.DeadRetention)
	out := make([]DeadJob, 0, min(limit, len(q.dead)))
	for i := len(q.dead) - 1; i >= 0 && len(out) < limit; i-- {
		j := q.dead[i]
		d := j.Delivery
		d.Attempt = j.attempts
		d.Payload = slices.Clone(j.Payload)
		out = append(out, DeadJob{Delivery: d, LastError: j.lastErr, DiedAt: j.diedAt})
	}
	return out, nil
}

func (s *MemoryStore) redrive(_ context.Context, queue string, ids []string) (int, error) {
	q := s.queue(queue)
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	q.advance(now, s.cfg.DeadRetention)
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	n := 0
	kept := q.dead[:0]
	for _, j := range q.dead {
		if ids != nil && !want[j.ID] {
			kept = append(kept, j)
			continue
		}
		j.attempts, j.interrupted, j.Deliveries = 0, 0, 0
		j.lastErr, j.diedAt = "", time.Time{}
		j.RunAt = now
		q.due.push(j)
		n++
	}
	clear(q.dead[len(kept):])
	q.dead = kept
	if n > 0 {
		q.notify()
	}
	return n, nil
}

func (s *MemoryStore) pause(_ context.Context, queue string, paused bool) error {
	q := s.queue(queue)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.paused = paused
	if !paused {
		q.notify()
	}
	return nil
}

func (s *MemoryStore) queues(context.Context) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var names []string
	for name, q := range s.byName {
		q.mu.Lock()
		if q.named {
			names = append(names, name)
		}
		q.mu.Unlock()
	}
	slices.Sort(names)
	return names, nil
}
