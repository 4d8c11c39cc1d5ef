package breaker

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// After the shared entry expires (idle longer than its TTL), the generation restarts at 0 and
// instances that saw a higher generation are never counted again.
func TestReviewGenerationResetAfterExpiry(t *testing.T) {
	s, err := NewMemoryStore(MemoryConfig{FlushInterval: 5 * time.Millisecond})
	require.NoError(t, err)
	defer s.Close()
	cfg := Config{Name: "x", OpenDuration: 50 * time.Millisecond, Window: 100 * time.Millisecond, ProbeTimeout: 50 * time.Millisecond, Store: s}
	a, b := newBreaker(t, cfg), newBreaker(t, cfg)
	for range 5 {
		_ = call(a, errDown)
	}
	require.Eventually(t, func() bool { return b.State() != StateClosed }, time.Second, time.Millisecond)
	time.Sleep(80 * time.Millisecond)
	require.NoError(t, call(a, nil)) // probe closes
	require.Eventually(t, func() bool { return a.State() == StateClosed && b.State() == StateClosed }, time.Second, time.Millisecond)
	t.Logf("gen a=%d b=%d", a.sh.gen.Load(), b.sh.gen.Load())
	time.Sleep(300 * time.Millisecond) // idle: the entry expires
	for range 3 {
		_ = call(a, errDown)
	}
	s.h.flush()
	for range 2 {
		_ = call(b, errDown)
	}
	s.h.flush()
	time.Sleep(50 * time.Millisecond)
	t.Logf("after: a=%v b=%v gen a=%d b=%d totals", a.State(), b.State(), a.sh.gen.Load(), b.sh.gen.Load())
	n, f := s.totals("x")
	t.Logf("totals %d %d", n, f)
	if a.State() != StateOpen || b.State() != StateOpen {
		t.Errorf("5 failures across instances did not open the shared breaker: a=%v b=%v", a.State(), b.State())
	}
	// wedge: a trips locally, shared stays closed at gen 0 < a's gen
	for range 5 {
		_ = call(a, errDown)
	}
	time.Sleep(60 * time.Millisecond)
	calls0 := s.Stats().Calls
	for range 20 {
		_ = call(a, nil)
	}
	t.Logf("a state %v, store calls made by 20 successful calls: %d", a.State(), s.Stats().Calls-calls0)
	if a.State() != StateClosed {
		t.Errorf("a never closes after successes: %v", a.State())
	}
	_ = context.Background
}
