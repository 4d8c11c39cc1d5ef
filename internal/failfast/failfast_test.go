package failfast

import (
	"context"
	"errors"
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

func TestDo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := New(time.Second)
		boom := errors.New("boom")
		calls := 0
		fail := func() error { calls++; return boom }
		if err := w.Do(context.Background(), fail); err != boom || !w.Down() {
			t.Fatalf("a failure is returned and opens the outage: %v", err)
		}
		if err := w.Do(context.Background(), fail); !errors.Is(err, ErrDown) || calls != 1 {
			t.Fatalf("refused without calling: %v, %d calls", err, calls)
		}
		time.Sleep(time.Second)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := w.Do(ctx, fail); err != context.Canceled || calls != 2 {
			t.Fatalf("a caller that went away gets its own error: %v", err)
		}
		if err := w.Do(context.Background(), func() error { return nil }); err != nil || w.Down() {
			t.Fatalf("the next probe may run, and its success ends the outage: %v", err)
		}
	})
}
