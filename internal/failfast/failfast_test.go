package failfast

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestWindowOpensAfterConsecutiveFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := New(500*time.Millisecond, 3)
		if !w.Admit() || w.Down() {
			t.Fatal("a new window is up")
		}
		for i := range 2 {
			if w.Record(Failed) || w.Down() || !w.Admit() {
				t.Fatalf("failure %d of 3 must not open the window", i+1)
			}
		}
		w.Record(Succeeded) // a success in between: the run starts again
		for range 2 {
			w.Record(Failed)
		}
		if w.Down() {
			t.Fatal("two failures after a success must not open the window")
		}
		if !w.Record(Failed) || !w.Down() || w.Admit() {
			t.Fatal("the third consecutive failure opens the window, once")
		}
		time.Sleep(500 * time.Millisecond)
		if !w.Admit() {
			t.Fatal("after the retry interval one call probes")
		}
		if w.Admit() {
			t.Fatal("only one probe at a time")
		}
		if w.Record(Failed) || w.Admit() {
			t.Fatal("a failed probe starts a new interval without reporting a new outage")
		}
		time.Sleep(500 * time.Millisecond)
		if !w.Admit() {
			t.Fatal("probe")
		}
		w.Record(Unknown) // the caller went away: says nothing
		if !w.Down() || !w.Admit() {
			t.Fatal("still down, and the next call may probe")
		}
		if !w.Record(Succeeded) || w.Down() || !w.Admit() || !w.Admit() {
			t.Fatal("a success ends the outage and says so")
		}
		if w.Record(Failed) || w.Down() {
			t.Fatal("the failure run starts from zero after an outage")
		}
	})
}

func TestWindowOneFailureOpensWhenAfterIsOne(t *testing.T) {
	w := New(time.Second, 0) // at least one
	if !w.Record(Failed) || !w.Down() {
		t.Fatal("after 1: the first failure opens the window")
	}
}

func TestWindowUpEndsOutageWithoutCall(t *testing.T) {
	w := New(time.Hour, 1)
	w.Record(Failed)
	if !w.Down() {
		t.Fatal("down")
	}
	if !w.Up() || w.Down() || !w.Admit() {
		t.Fatal("Up ends the outage at once, without waiting for the retry interval")
	}
	if w.Up() {
		t.Fatal("Up reports a change only once")
	}
}
