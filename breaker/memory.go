package breaker

import (
	"context"
	"sync"
	"time"
)

// MemoryConfig configures a [MemoryStore]. The zero value is ready to use; a MemoryConfig is a
// plain value, and NewMemoryStore copies it.
type MemoryConfig struct {
	// FlushInterval is how often each breaker's outcomes are sent to the shared state.
	// Default: 100ms.
	FlushInterval time.Duration
	// FlushOutcomes sends a breaker's outcomes at once when that many failures are waiting.
	// Successes wait for the next FlushInterval. Default: 64.
	FlushOutcomes int
}

// MemoryStore is the in-memory implementation of the [Store] contract: breakers created on one
// MemoryStore with the same Name act as one, exactly as the breakers of different instances
// sharing a [RedisStore] do, with the same batching, announcements and probe leases. Use it to
// test code that shares breakers without a Redis, or to make several breakers of one process
// act as one. A breaker that is not shared needs no store.
//
// The zero value is not usable; create a MemoryStore with [NewMemoryStore]. It is safe for
// concurrent use. It runs one goroutine, stopped by Close.
type MemoryStore struct {
	bt      *batcher
	clock   func() time.Time // time.Now; tests move it
	mu      sync.Mutex
	states  map[string]*sharedState
	batches map[string]appliedBatch // the last batch number applied, by breaker name and instance
	ops     int                     // operations since the last sweep of expired entries
}

var _ Store = (*MemoryStore)(nil)

// appliedBatch is the number of the last batch applied for one instance of a breaker.
type appliedBatch struct{ seq, expires int64 }

// batchMemory is how long a store remembers the number of the last batch it applied for an
// instance, in ms: a batch sent again within it is applied once.
const batchMemory = 600_000

// NewMemoryStore returns an empty MemoryStore. Its error wraps ErrInvalidConfig and names the
// field at fault.
func NewMemoryStore(cfg MemoryConfig) (*MemoryStore, error) {
	bc := batcherConfig{every: cfg.FlushInterval, failures: cfg.FlushOutcomes}
	if err := bc.check("MemoryConfig"); err != nil {
		return nil, err
	}
	s := newMemoryStore(time.Now)
	s.bt = newBatcher(s, bc)
	return s, nil
}

func newMemoryStore(clock func() time.Time) *MemoryStore {
	return &MemoryStore{states: make(map[string]*sharedState), batches: make(map[string]appliedBatch), clock: clock}
}

func (s *MemoryStore) batcher() *batcher {
	if s == nil {
		return nil
	}
	return s.bt
}

// Close sends the outcomes still waiting and stops the store's goroutine. Breakers on a closed
// store decide alone. Close is idempotent and always returns nil.
func (s *MemoryStore) Close() error {
	s.bt.close()
	return nil
}

// Stats returns a snapshot of the store's counters.
func (s *MemoryStore) Stats() StoreStats { return s.bt.stats() }

func (s *MemoryStore) down() bool { return false }

func (s *MemoryStore) run(_ context.Context, _ time.Duration, reqs []request, res []reply) error {
	var changed []string
	s.mu.Lock()
	now := s.clock().UnixMilli()
	s.sweep(now)
	for i := range reqs {
		q := &reqs[i]
		if q.op == opSync && q.seq > 0 {
			k := q.name + "\x00" + q.instance
			if v, ok := s.batches[k]; ok && now < v.expires && q.seq <= v.seq {
				r := q.withoutOutcomes() // applied before: read only
				q = &r
				s.batches[k] = appliedBatch{seq: v.seq, expires: now + batchMemory} // remembered while sent again
			} else {
				s.batches[k] = appliedBatch{seq: q.seq, expires: now + batchMemory}
			}
		}
		st := s.states[q.name]
		if st == nil || now >= st.expires {
			st = &sharedState{}
			s.states[q.name] = st
		}
		var c bool
		res[i], c = st.apply(q, now)
		if c {
			changed = append(changed, q.name)
		}
	}
	s.mu.Unlock()
	for _, name := range changed {
		s.bt.announced(name)
	}
	return nil
}

// sweep drops expired entries every 1024 operations. s.mu is held.
func (s *MemoryStore) sweep(now int64) {
	if s.ops++; s.ops < 1024 {
		return
	}
	s.ops = 0
	for k, st := range s.states {
		if now >= st.expires {
			delete(s.states, k)
		}
	}
	for k, v := range s.batches {
		if now >= v.expires {
			delete(s.batches, k)
		}
	}
}

// withoutOutcomes returns the sync request r with nothing to apply: a read.
func (r request) withoutOutcomes() request {
	r.successes, r.failures, r.failuresAfterSuccess, r.lateOutcomes, r.lateFailures = 0, 0, 0, 0, 0
	r.holdMs, r.runEnded = 0, false
	return r
}
