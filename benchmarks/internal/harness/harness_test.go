package harness

import (
	"context"
	"testing"
)

func TestCommandStatsCountsCommands(t *testing.T) {
	rdb, prefix := Redis(t)
	ctx := context.Background()
	before, err := CommandStats(ctx, rdb)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := rdb.Set(ctx, prefix+"k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	after, err := CommandStats(ctx, rdb)
	if err != nil {
		t.Fatal(err)
	}
	// Other clients may use a shared server, so only a lower bound holds.
	if got := after["set"] - before["set"]; got < 5 {
		t.Fatalf("SET calls grew by %d, want at least 5", got)
	}
	if Delta(before, after) < 5 {
		t.Fatalf("Delta = %d, want at least 5", Delta(before, after))
	}
}
