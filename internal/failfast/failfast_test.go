package failfast

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := New(500 * time.Millisecond)
		if !w.Admit() || w.Down() {
			t.Fatal("a new window is up")
		}
		w.Record(true, false)
		if !w.Down() || w.Admit() {
			t.Fatal("after a failure calls fail fast")
		}
		time.Sleep(500 * time.Millisecond)
		if !w.Admit() {
			t.Fatal("after the retry interval one call probes")
		}
		if w.Admit() {
			t.Fatal("only one probe at a time")
		}
		w.Record(true, false)
		if w.Admit() {
			t.Fatal("a failed probe starts a new interval")
		}
		time.Sleep(500 * time.Millisecond)
		if !w.Admit() {
			t.Fatal("probe")
		}
		w.Record(false, false) // the caller went away: says nothing
		if !w.Down() || !w.Admit() {
			t.Fatal("still down, and the next call may probe")
		}
		w.Record(false, true)
		if w.Down() || !w.Admit() || !w.Admit() {
			t.Fatal("a success ends the outage")
		}
	})
}
