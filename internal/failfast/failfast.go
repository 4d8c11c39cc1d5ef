// Package failfast keeps a component from waiting on a Redis that just failed: after a failure,
// calls fail at once for a retry interval, then one call probes, and the first success ends the
// outage. Components that degrade (a local fallback) and components that answer 503 share it.
package failfast

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// ErrDown reports a call refused because the store failed recently.
var ErrDown = errors.New("failed recently")

// Window is the outage state of one store. The zero value is not usable; create it with New.
// It is safe for concurrent use.
type Window struct {
	retry     time.Duration
	epoch     time.Time
	downUntil atomic.Int64 // ns since epoch until which calls fail fast; 0 when up
	probing   atomic.Bool  // one probe at a time once downUntil has passed
}

// New returns a Window that fails fast for retry after each failure.
func New(retry time.Duration) *Window {
	return &Window{retry: retry, epoch: time.Now()}
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

// Record reports how an admitted call went: failed opens (or extends) the outage; a success ends
// it. A call that says nothing about the store (the caller went away) is recorded as neither.
func (w *Window) Record(failed, success bool) {
	switch {
	case success:
		if w.downUntil.Load() != 0 {
			w.downUntil.Store(0)
		}
	case failed:
		w.downUntil.Store(w.now() + int64(w.retry))
	}
	w.probing.Store(false)
}

// Down reports whether the store is in an outage.
func (w *Window) Down() bool { return w.downUntil.Load() != 0 }

// Retry is the retry interval.
func (w *Window) Retry() time.Duration { return w.retry }

// Do runs call unless the store is in an outage, and records how it went. A refused call gets
// an error matching ErrDown that says when the next attempt is due. An error while ctx has
// ended (the caller went away or ran out of its own time) says nothing about the store: Do
// records neither outcome and returns ctx.Err().
func (w *Window) Do(ctx context.Context, call func() error) error {
	if !w.Admit() {
		return fmt.Errorf("%w; next attempt in at most %v", ErrDown, w.retry)
	}
	err := call()
	if err != nil && ctx.Err() != nil {
		w.Record(false, false)
		return ctx.Err()
	}
	w.Record(err != nil, err == nil)
	return err
}
