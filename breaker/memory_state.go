package breaker

import "math"

// sharedState is the shared state of one breaker in a MemoryStore: the hash of
// shared_state.lua, with the same operations and the same arithmetic (FuzzScriptMatchesMemory
// holds the two equal). Times are milliseconds of the store's clock.
type sharedState struct {
	gen, firstGen       int64 // firstGen: the generation the state was created with
	state               State
	openUntil           int64
	consecutiveFailures int64
	reopenings          int64 // consecutive reopenings from half-open, for the backoff
	probeSuccesses      int64
	outcomes, failures  int64 // counted since the state was created, for the totals
	// The last WindowCalls calls, estimated: calls and failures added per batch, scaled back.
	recentCalls, recentFailures int64
	buckets                     [10]windowBucket // the last Window, for FailureRate
	probeDeadlines              []int64          // per probe lease; 0 when free
	leaseIDs                    []string         // per probe lease
	// Tombstones of released leases whose acquisition may still come (the x<id> fields of
	// shared_state.lua): id -> when it lapses.
	released map[string]int64
	expires  int64
}

// windowBucket counts the calls of one tenth of the Window: the index-th since the epoch.
type windowBucket struct{ index, calls, failures int64 }

// apply runs one request at now and reports whether the state changed (the generation moved).
func (s *sharedState) apply(q *request, now int64) (out reply, changed bool) {
	p := q.policy
	if n := int(p.probes) - len(s.probeDeadlines); n > 0 {
		s.probeDeadlines = append(s.probeDeadlines, make([]int64, n)...)
		s.leaseIDs = append(s.leaseIDs, make([]string, n)...)
	}
	wrote := false
	if s.gen == 0 {
		// Generations start at 16 times the creation time: those of a state created again
		// after it expired are above every one of its former life.
		s.gen = now * 16
		s.firstGen = s.gen
		wrote = true
	}
	before := s.gen
	switch q.op {
	case opSync:
		out, wrote = s.sync(q, now, wrote)
	case opAcquire:
		out, wrote = s.acquire(q, now, wrote)
	case opRelease:
		wrote = s.release(q, now)
	case opReport:
		out, wrote = s.report(q, now, wrote)
	}
	changed = s.gen != before
	if s.state == StateOpen {
		out.waitMs = max(0, s.openUntil-now)
	}
	if wrote || changed {
		ttl := max(p.windowMs, p.probeTimeoutMs, p.openMs)
		switch s.state {
		case StateOpen:
			ttl += max(0, s.openUntil-now)
		case StateHalfOpen:
			ttl += p.probeTimeoutMs
		}
		s.expires = now + ttl
	}
	out.gen, out.state, out.first = s.gen, s.state, s.gen == s.firstGen
	return out, changed
}

// sync adds a batch of outcomes: all to the totals, those of the current closed generation (or
// of a former life of the state) to the policy, which may trip. A Retry-After opens the breaker
// for that long, whatever the state.
func (s *sharedState) sync(q *request, now int64, wrote bool) (reply, bool) {
	var out reply
	p := q.policy
	if q.successes+q.failures+q.lateOutcomes > 0 {
		s.outcomes += q.successes + q.failures + q.lateOutcomes
		s.failures += q.failures + q.lateFailures
		wrote = true
	}
	if s.state == StateClosed && (q.gen == s.gen || q.gen < s.firstGen) {
		switch {
		case q.successes+q.failures > 0:
			out.counted = true
			if q.successes > 0 || q.runEnded {
				s.consecutiveFailures = q.failuresAfterSuccess
			} else {
				s.consecutiveFailures += q.failuresAfterSuccess
			}
			tripped := s.consecutiveFailures >= p.failures
			if p.failureRate > 0 && s.addToWindow(q, now) {
				tripped = true
			}
			if tripped {
				s.trip(q, now, false)
			}
			wrote = true
		case q.runEnded && s.consecutiveFailures > 0:
			s.consecutiveFailures = 0
			wrote = true
		}
	}
	if q.holdMs > 0 && (s.state != StateOpen || s.openUntil < now+q.holdMs) {
		s.open(p, now+q.holdMs)
	}
	return out, wrote
}

// addToWindow adds the batch to the calls FailureRate looks at and reports whether their
// failure rate trips the breaker.
func (s *sharedState) addToWindow(q *request, now int64) bool {
	p := q.policy
	var calls, failed int64
	if p.windowCalls > 0 {
		s.recentCalls += q.successes + q.failures
		s.recentFailures += q.failures
		if s.recentCalls > p.windowCalls {
			s.recentFailures = int64(math.Floor(float64(s.recentFailures)*float64(p.windowCalls)/float64(s.recentCalls) + 0.5))
			s.recentCalls = p.windowCalls
		}
		calls, failed = s.recentCalls, s.recentFailures
	} else {
		index := now / max(1, p.windowMs/10)
		b := &s.buckets[index%10]
		if b.calls > 0 && b.index == index {
			b.calls += q.successes + q.failures
			b.failures += q.failures
		} else {
			*b = windowBucket{index: index, calls: q.successes + q.failures, failures: q.failures}
		}
		for _, b := range s.buckets {
			if b.calls > 0 && b.index > index-10 {
				calls += b.calls
				failed += b.failures
			}
		}
	}
	return calls >= p.minCalls && float64(failed) >= p.failureRate*float64(calls)
}

// acquire moves an open state whose time is over to half-open, and grants a free probe lease
// (or one whose deadline passed), or says when the earliest one ends.
func (s *sharedState) acquire(q *request, now int64, wrote bool) (reply, bool) {
	var out reply
	if s.state == StateOpen && now >= s.openUntil {
		s.gen, s.state = s.gen+1, StateHalfOpen
		s.clearProbes(q.policy)
	}
	// A lease given back before this request arrived (its acquisition timed out, and the
	// release overtook it) is never granted.
	if _, ok := s.released[q.leaseID]; ok {
		delete(s.released, q.leaseID)
		return out, true
	}
	if s.state != StateHalfOpen {
		return out, wrote
	}
	deadlines, ids := s.leases(q.policy)
	var earliest int64
	for i, d := range deadlines {
		if d <= now {
			out.slot, out.deadline = int64(i+1), now+q.policy.probeTimeoutMs
			deadlines[i], ids[i] = out.deadline, q.leaseID
			return out, true
		}
		if earliest == 0 || d < earliest {
			earliest = d
		}
	}
	out.waitMs = earliest - now
	return out, wrote
}

// release frees the lease of q.leaseID, if it holds one; otherwise the acquisition has not
// arrived yet (or never will), and a tombstone, kept one probe timeout, refuses it.
func (s *sharedState) release(q *request, now int64) bool {
	deadlines, ids := s.leases(q.policy)
	found := false
	for i, id := range ids {
		if deadlines[i] != 0 && id == q.leaseID {
			deadlines[i], ids[i] = 0, ""
			found = true
		}
	}
	if !found {
		if s.released == nil {
			s.released = make(map[string]int64)
		}
		for id, until := range s.released {
			if until <= now {
				delete(s.released, id)
			}
		}
		s.released[q.leaseID] = now + q.policy.probeTimeoutMs
	}
	return true
}

// report counts a probe's outcome in the totals and, in the probe's half-open generation, frees
// its lease and counts it: a failure reopens, Successes successes close.
func (s *sharedState) report(q *request, now int64, wrote bool) (reply, bool) {
	var out reply
	if q.outcome != OutcomeIgnored {
		s.outcomes++
		if q.outcome == OutcomeFailure {
			s.failures++
		}
		wrote = true
	}
	if s.state != StateHalfOpen || q.gen != s.gen {
		return out, wrote
	}
	deadlines, ids := s.leases(q.policy)
	if i := q.slot - 1; i >= 0 && i < int64(len(deadlines)) && deadlines[i] != 0 && deadlines[i] == q.deadline {
		deadlines[i], ids[i] = 0, ""
		wrote = true
	}
	switch q.outcome {
	case OutcomeFailure:
		out.counted = true
		s.trip(q, now, true)
	case OutcomeSuccess:
		out.counted = true
		s.probeSuccesses++
		if s.probeSuccesses >= q.policy.successes {
			s.close(q.policy)
		}
		wrote = true
	}
	return out, wrote
}

// trip opens the breaker for the open duration, doubled with jitter for a reopening.
func (s *sharedState) trip(q *request, now int64, reopen bool) {
	p := q.policy
	if reopen {
		s.reopenings++
	} else {
		s.reopenings = 0
	}
	d := p.openMs
	if p.maxOpenMs > d && s.reopenings > 0 {
		ceiling := p.maxOpenMs
		if s.reopenings < 30 && d<<s.reopenings < ceiling {
			ceiling = d << s.reopenings
		}
		d += int64(q.jitter * float64(ceiling-d+1))
	}
	s.open(p, now+d)
}

// open starts a new generation, open until the given time.
func (s *sharedState) open(p *policy, until int64) {
	s.gen, s.state, s.openUntil, s.consecutiveFailures = s.gen+1, StateOpen, until, 0
	s.clearProbes(p)
}

// close starts a new closed generation, which forgets the failures.
func (s *sharedState) close(p *policy) {
	s.gen, s.state, s.consecutiveFailures, s.reopenings = s.gen+1, StateClosed, 0, 0
	s.clearProbes(p)
	s.buckets = [10]windowBucket{}
	s.recentCalls, s.recentFailures = 0, 0
}

func (s *sharedState) clearProbes(p *policy) {
	deadlines, ids := s.leases(p)
	clear(deadlines)
	clear(ids)
	s.probeSuccesses = 0
}

// leases returns the probe leases of the policy.
func (s *sharedState) leases(p *policy) ([]int64, []string) {
	return s.probeDeadlines[:p.probes], s.leaseIDs[:p.probes]
}
