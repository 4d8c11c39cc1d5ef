package redisscript

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/outgrow/outgrow/internal/redistest"
)

const incr = `return redis.call('INCRBY', KEYS[1], ARGV[1])`

func TestRunLoadsScriptAndPipelines(t *testing.T) {
	for _, k := range redistest.Kinds()[1:] { // every Redis; Kinds()[0] is memory
		t.Run(string(k), func(t *testing.T) {
			b := redistest.Open(t, k)
			ctx := context.Background()
			s := New(incr + " -- " + b.Prefix) // a script this server has never seen: NOSCRIPT first
			calls := []*Call{
				{Args: []any{1, b.Prefix + "{a}", 2}},
				{Args: []any{1, b.Prefix + "{b}", 3}},
			}
			if err := s.Run(ctx, b.Client, calls); err != nil {
				t.Fatal(err)
			}
			for i, want := range []int64{2, 3} {
				if got, err := calls[i].Cmd.Int64(); err != nil || got != want {
					t.Fatalf("call %d: %d, %v; want %d", i, got, err, want)
				}
			}
			// Loaded now: one more run adds once (a NOSCRIPT resend must never run a script twice).
			one := []*Call{{Args: []any{1, b.Prefix + "{a}", 2}}}
			if err := s.Run(ctx, b.Client, one); err != nil {
				t.Fatal(err)
			}
			if got, _ := b.Client.Get(ctx, b.Prefix+"{a}").Int64(); got != 4 {
				t.Fatalf("a = %d, want 4", got)
			}
		})
	}
}

func TestRunReportsPartialFailure(t *testing.T) {
	b := redistest.Open(t, redistest.Miniredis)
	ctx := context.Background()
	s := New(incr)
	calls := []*Call{
		{Args: []any{1, b.Prefix + "{a}", 2}},
		{Args: []any{1, b.Prefix + "{b}", "not a number"}},
	}
	err := s.Run(ctx, b.Client, calls)
	var partial *PartialError
	if !errors.As(err, &partial) {
		t.Fatalf("err = %v, want a *PartialError", err)
	}
	if calls[0].Cmd.Err() != nil || calls[1].Cmd.Err() == nil {
		t.Fatalf("errors: %v, %v", calls[0].Cmd.Err(), calls[1].Cmd.Err())
	}
}

func TestBoundStopsWaitingAtTimeout(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	start := time.Now()
	err := Bound(context.Background(), 20*time.Millisecond, false, func(ctx context.Context) error {
		<-release // ignores its context, as go-redis does without ContextTimeoutEnabled
		return nil
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("waited %v", d)
	}
	if err := Bound(context.Background(), time.Second, true, func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			return errors.New("no deadline")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
