package breaker

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Store shares the state of breakers between instances: breakers with the same Name on stores
// over the same Redis (or on one [MemoryStore]) open, probe and close together. Set it in
// Config.Store. It is sealed: [*MemoryStore] and [*RedisStore] implement it, with the same
// semantics.
//
// The contract:
//   - Admission never waits for the store: each breaker decides from its local state, which
//     the store keeps in step, and trips at once on its own outcomes.
//   - Outcomes add up across instances: consecutive failures and failure rates are those of
//     the calls of every instance, up to the interleaving within one flush interval. Outcomes
//     that reach the store after the shared breaker changed state count in the totals only.
//   - A transition on one instance reaches the others within about a round trip, or at their
//     next flush if the announcement is lost.
//   - Half-open probes are leases taken from the store: exactly Config.Probes probes run at a
//     time across all instances, and a lease whose probe hangs ends after Config.ProbeTimeout.
//   - When the store fails, breakers decide alone, as without a store, and rejoin once it
//     answers again; no call fails because of the store. Outcomes counted while it failed reach
//     the totals, never the policy, except that a success among them ends the shared run of
//     consecutive failures.
type Store interface {
	batcher() *batcher
}

// StoreStats is a snapshot of a store's counters, a plain value. The zero value is a store that
// has done nothing.
type StoreStats struct {
	Flushes       uint64 // batches sent (one round trip each, for every breaker with news)
	Calls         uint64 // probe leases and probe reports, one round trip each
	Errors        uint64 // failed round trips
	Notifications uint64 // announcements of another instance's transition received
	Down          bool   // the store is failing, or closed: breakers are deciding alone
}

// errStoreDown is wrapped by the errors of a store that failed. They never reach a caller: a
// breaker whose store failed decides alone.
var errStoreDown = errors.New("breaker: store unavailable")

// backend runs operations on the shared states of breakers: the MemoryStore in this process,
// the RedisStore with shared_state.lua. Both apply the same state machine.
type backend interface {
	// run applies reqs in order, in one round trip where it can, bounded by timeout. It sets
	// res[i].err for a request that failed and returns the first error.
	run(ctx context.Context, timeout time.Duration, reqs []request, res []reply) error
	// down reports that the backend is failing: it fails fast after recent failures.
	down() bool
}

// policy is what the shared state machine needs of a Config, with durations in milliseconds.
type policy struct {
	failures       int64   // consecutive failures that open
	failureRate    float64 // 0: no rate rule
	minCalls       int64
	windowMs       int64
	windowCalls    int64 // 0: the rate looks at windowMs
	openMs         int64
	maxOpenMs      int64
	probes         int64
	successes      int64
	probeTimeoutMs int64
}

func policyOf(c *Config) policy {
	ms := func(d time.Duration) int64 { return max(1, int64((d+time.Millisecond-1)/time.Millisecond)) }
	return policy{
		failures: int64(min(c.Failures, 1<<50)), failureRate: c.FailureRate, minCalls: int64(c.MinCalls),
		windowMs: ms(c.Window), windowCalls: int64(c.WindowCalls),
		openMs: ms(c.OpenDuration), maxOpenMs: ms(max(c.MaxOpenDuration, c.OpenDuration)),
		probes: int64(c.Probes), successes: int64(c.Successes), probeTimeoutMs: ms(c.ProbeTimeout),
	}
}

// operation is what a request does to a breaker's shared state.
type operation byte

const (
	opSync    operation = 's' // add a batch of outcomes, read the state
	opAcquire operation = 'a' // take a half-open probe lease
	opReport  operation = 'r' // report a probe's outcome
	opRelease operation = 'x' // give back a lease whose acquisition or report failed
)

// request is one operation on the shared state of the breakers called name.
type request struct {
	name   string
	op     operation
	policy *policy
	jitter float64 // opReport: in [0, 1), where a reopening's open duration falls within its range
	gen    int64   // opSync, opReport: the generation the outcomes or the probe belong to; -1 unknown

	// opSync: the outcomes of gen, which count in the policy (failuresAfterSuccess: the
	// failures after the batch's last success), and those that count in the totals only.
	successes, failures, failuresAfterSuccess int64
	lateOutcomes, lateFailures                int64
	runEnded                                  bool  // a success among the late outcomes ended the run of failures
	holdMs                                    int64 // how long the dependency asked to be left alone (Retry-After)
	// instance and seq number the batch, so that one sent again after a timeout is applied
	// once; seq is 0 for a batch with nothing to apply.
	instance string
	seq      int64

	// opReport: the lease and the probe's outcome.
	slot, deadline int64
	outcome        Outcome
	// opAcquire, opRelease: the lease's id, so that one whose acquisition timed out after it
	// was granted can be given back.
	leaseID string
}

// hasOutcomes reports whether a sync request changes the shared state, so it must be numbered.
func (r *request) hasOutcomes() bool {
	return r.successes+r.failures+r.lateOutcomes > 0 || r.holdMs > 0
}

// reply is the shared state after a request.
type reply struct {
	gen      int64
	state    State
	waitMs   int64 // until open ends, or until a busy probe lease expires
	slot     int64 // a granted probe lease (1-based), 0 when none
	deadline int64 // of the granted lease, ms of the store's clock: it identifies the lease
	counted  bool  // the outcome reported counted in the policy
	first    bool  // gen is the state's first: created (again) with no transition since
	err      error
}

// jitter returns where a reopening's open duration falls within its range, in millionths, so
// that both backends (Redis gets it as text) use the same value.
func jitter() float64 { return float64(rand.IntN(1_000_000)) / 1e6 }
