package breaker

import (
	crand "crypto/rand"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// storeLink is a breaker's link to its store: the shared generation it last saw, the outcomes
// waiting for its next batch, and the probe leases it holds.
type storeLink struct {
	batcher   *batcher
	policy    policy
	gen       atomic.Int64 // the newest shared generation seen; -1 before the first reply
	queued    atomic.Bool  // in the next batch; read by every call
	acquiring atomic.Bool  // a probe lease request is in flight
	_         [64]byte
	// Outcomes not yet sent. Each is swapped out whole when a batch is made, so every outcome
	// is sent once; a success and a failure racing with it may go in different batches.
	// Successes, the common case, are striped over cache lines of their own.
	successes                      [4]paddedCount
	failures, failuresAfterSuccess atomic.Int64
	lateOutcomes, lateFailures     atomic.Int64
	holdMs                         atomic.Int64 // the longest Retry-After not yet sent

	leaseMu    sync.Mutex
	leaseIDs   map[int64]string // the ids of this breaker's shared leases, by deadline
	lostLeases []string         // leases to give back: their acquisition or report failed

	// Owned by the batcher's flush.
	instance string   // this breaker's name in batch numbers: random, unique to this Breaker
	seq      int64    // the last batch number
	unsent   *request // a batch that failed, to send again as is
	behind   bool     // a batch failed since the last one made: the outcomes waiting are of an outage
}

func newStoreLink(bt *batcher, c *Config) *storeLink {
	l := &storeLink{batcher: bt, policy: policyOf(c), instance: crand.Text()}
	l.gen.Store(-1)
	return l
}

// queue puts b in the next batch, once.
func (l *storeLink) queue(b *Breaker) {
	if !l.queued.Load() && l.queued.CompareAndSwap(false, true) {
		l.batcher.queue(b)
	}
}

// add counts an outcome for the next batch; current says it belongs to the present generation.
func (l *storeLink) add(b *Breaker, o Outcome, current bool) {
	switch {
	case !current:
		l.lateOutcomes.Add(1)
		if o == OutcomeFailure {
			l.lateFailures.Add(1)
		}
	case o == OutcomeSuccess:
		// Successes wait for the next tick: sending them early tells the others nothing urgent.
		l.successes[rand.Uint32()%uint32(len(l.successes))].n.Add(1)
		if l.failuresAfterSuccess.Load() != 0 {
			l.failuresAfterSuccess.Store(0)
		}
	default:
		if l.failures.Add(1)%l.batcher.failures == 0 {
			l.batcher.flushSoon()
		}
		l.failuresAfterSuccess.Add(1)
	}
	l.queue(b)
}

// holdFor asks every instance to stay open for d (a Retry-After), in a batch sent now.
func (l *storeLink) holdFor(b *Breaker, d time.Duration) {
	ms := int64((d + time.Millisecond - 1) / time.Millisecond)
	for old := l.holdMs.Load(); ms > old && !l.holdMs.CompareAndSwap(old, ms); old = l.holdMs.Load() {
	}
	l.queue(b)
	l.batcher.flushSoon()
}

// nextBatch returns b's request for the batch being made: a batch that failed, sent again
// alone, or else the outcomes waiting. It is called by the flush only.
func (l *storeLink) nextBatch(b *Breaker) request {
	l.queued.Store(false)
	if l.unsent != nil {
		// The batch whose fate is unknown goes first, alone, with its number; newer outcomes
		// wait for the next batch, one round trip later.
		return *l.unsent
	}
	r := request{
		name: b.cfg.Name, op: opSync, policy: &l.policy, gen: l.gen.Load(),
		successes: l.takeSuccesses(), failures: l.failures.Swap(0),
		failuresAfterSuccess: l.failuresAfterSuccess.Swap(0),
		lateOutcomes:         l.lateOutcomes.Swap(0), lateFailures: l.lateFailures.Swap(0),
		holdMs: l.holdMs.Swap(0), instance: l.instance,
	}
	if l.behind {
		// Counted while the store failed: their moment has passed.
		l.behind = false
		makeLate(&r)
	}
	if r.hasOutcomes() {
		l.seq++
		r.seq = l.seq
	}
	return r
}

// makeLate turns the outcomes of r into late ones, which count in the totals only, except that
// a success among them ended the run of failures before it. A Retry-After is dropped.
func makeLate(r *request) {
	r.runEnded = r.runEnded || r.successes > 0
	r.lateOutcomes += r.successes + r.failures
	r.lateFailures += r.failures
	r.successes, r.failures, r.failuresAfterSuccess, r.holdMs = 0, 0, 0, 0
}

// failed keeps a batch that failed, to send it again with the same number (the store may have
// applied it before the failure: its number makes sure it is applied once) and its outcomes
// made late. The outcomes counted until the next batch is made are of the outage too.
func (l *storeLink) failed(b *Breaker, r *request) {
	l.behind = true
	if r.seq == 0 {
		return // a read: the next batch reads again
	}
	u := *r
	makeLate(&u)
	l.unsent = &u
	l.queue(b)
}

// sent records that b's batch reached the store. It reports whether outcomes that waited
// behind a batch sent again are now queued.
func (l *storeLink) sent(b *Breaker) bool {
	if l.unsent == nil {
		return false
	}
	l.unsent = nil
	if !l.pending() {
		return false
	}
	l.queue(b)
	return true
}

// pending reports whether outcomes wait to be sent.
func (l *storeLink) pending() bool {
	for i := range l.successes {
		if l.successes[i].n.Load() != 0 {
			return true
		}
	}
	return l.failures.Load() != 0 || l.lateOutcomes.Load() != 0 || l.holdMs.Load() != 0
}

func (l *storeLink) takeSuccesses() int64 {
	var n uint64
	for i := range l.successes {
		n += l.successes[i].n.Swap(0)
	}
	return int64(n)
}

// leased remembers the id of a lease this breaker holds; unlease forgets and returns it.
func (l *storeLink) leased(deadline int64, id string) {
	l.leaseMu.Lock()
	if l.leaseIDs == nil {
		l.leaseIDs = make(map[int64]string)
	}
	l.leaseIDs[deadline] = id
	l.leaseMu.Unlock()
}

func (l *storeLink) unlease(deadline int64) string {
	l.leaseMu.Lock()
	defer l.leaseMu.Unlock()
	id := l.leaseIDs[deadline]
	delete(l.leaseIDs, deadline)
	return id
}

// loseLease queues a lease to give back in the next batch that reaches the store.
func (l *storeLink) loseLease(b *Breaker, id string) {
	l.leaseMu.Lock()
	l.lostLeases = append(l.lostLeases, id)
	l.leaseMu.Unlock()
	l.queue(b)
}

func (l *storeLink) takeLostLeases() []string {
	l.leaseMu.Lock()
	defer l.leaseMu.Unlock()
	ids := l.lostLeases
	l.lostLeases = nil
	return ids
}
