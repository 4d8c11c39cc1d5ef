// Package failfast keeps a component from waiting on a Redis that is failing: after a run of
// consecutive failures, calls fail at once for a retry interval, then one call probes, and the
// first success ends the outage. A single slow or failed call among successes never opens it.
package failfast

import (
	"sync/atomic"
	"time"
)

// Window is the outage state of one store. The zero value is not usable; create it with New.
// It is safe for concurrent use.
type Window struct {
	retry     time.Duration
	after     int64
	epoch     time.Time
	failures  atomic.Int64 // consecutive failures while up
	downUntil atomic.Int64 // ns since epoch until which calls fail fast; 0 when up
	probing   atomic.Bool  // one probe at a time once downUntil has passed
}

// New returns a Window that opens after `after` consecutive failures (at least 1) and then
// fails fast for retry after each failed probe.
func New(retry time.Duration, after int) *Window {
	return &Window{retry: retry, after: int64(max(after, 1)), epoch: time.Now()}
}

func (w *Window) now() int64 { return int64(time.Since(w.epoch)) + 1 }

// Admit reports whether a call may go to the store: always when it is up; during an outage,
// once per retry interval (the probe). A caller that was admitted must call Record.
func (w *Window) Admit() bool {
	until := w.downUntil.Load()
	if until == 0 {
		return true
	}
	return w.now() >= until && w.probing.CompareAndSwap(false, true)
}

// Outcome is what a call admitted by [Window.Admit] says about the store.
type Outcome int

const (
	// Unknown: the call says nothing about the store (its caller went away first).
	Unknown Outcome = iota
	// Succeeded: the store answered.
	Succeeded
	// Failed: the store failed or did not answer in time.
	Failed
)

// Record reports how an admitted call went. It returns changed true when the call opened or
// ended an outage, for the caller to log the transition once.
func (w *Window) Record(o Outcome) (changed bool) {
	// Written only when a probe was let through: a store on every call would make every
	// caller contend for this cache line.
	if w.probing.Load() {
		defer w.probing.Store(false)
	}
	switch o {
	case Succeeded:
		return w.Up()
	case Failed:
		if w.downUntil.Load() != 0 {
			w.downUntil.Store(w.now() + int64(w.retry)) // a failed probe: wait again
			return false
		}
		if w.failures.Add(1) >= w.after {
			return w.downUntil.Swap(w.now()+int64(w.retry)) == 0
		}
	}
	return false
}

// Up records that the store answered, outside any admitted call (a subscription confirmed):
// the outage, if any, ends. It reports whether one did.
func (w *Window) Up() bool {
	if w.failures.Load() != 0 {
		w.failures.Store(0)
	}
	return w.downUntil.Load() != 0 && w.downUntil.Swap(0) != 0
}

// Down reports whether the store is in an outage.
func (w *Window) Down() bool { return w.downUntil.Load() != 0 }
