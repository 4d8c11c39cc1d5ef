package risefall_test

import (
	"math/rand/v2"
	"testing"

	"github.com/outgrow/outgrow/internal/risefall"
)

// checkSequence records outcomes into a zero Machine under p and checks each step against the
// contract, stated in terms of the sequence so far rather than of the Machine's fields: the
// counters are the trailing run; the state changes only at the outcome that reaches a threshold
// (or, under FirstResult, at the first outcome and at the first success ever) and always does
// there.
func checkSequence(t *testing.T, p risefall.Policy, outcomes []bool) {
	t.Helper()
	rise, fall := max(p.Rise, 1), max(p.Fall, 1)
	first := p.Start == risefall.FirstResult
	var m risefall.Machine
	prev := risefall.Unknown
	everUp := false
	run := 0 // consecutive equal outcomes ending with the current one
	for i, ok := range outcomes {
		if i > 0 && outcomes[i-1] == ok {
			run++
		} else {
			run = 1
		}
		from, to := m.Record(ok, p)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("policy %+v, outcome %d (ok=%v, run %d), %v -> %v: "+format,
				append([]any{p, i, ok, run, from, to}, args...)...)
		}
		if from != prev {
			fail("from should be the state after the previous outcome, %v", prev)
		}
		if to != m.State() {
			fail("State() = %v", m.State())
		}
		succ, fails := 0, run
		if ok {
			succ, fails = run, 0
		}
		if m.Successes() != succ || m.Failures() != fails {
			fail("counters %d/%d, want %d/%d", m.Successes(), m.Failures(), succ, fails)
		}

		// Changes happen only where due.
		if to != from {
			switch {
			case to == risefall.Unknown:
				fail("nothing returns to Unknown")
			case ok != (to == risefall.Up):
				fail("a success may only turn it Up and a failure only Down")
			case to == risefall.Up && run != rise && !(first && !everUp && run == 1):
				fail("Up only at the Rise-th consecutive success (or, under FirstResult, the first success ever)")
			case to == risefall.Down && run != fall && !(first && from == risefall.Unknown && i == 0):
				fail("Down only at the Fall-th consecutive failure (or, under FirstResult, the first outcome)")
			}
		}
		// And always happen where due.
		switch {
		case ok && run >= rise && to != risefall.Up:
			fail("Rise consecutive successes must make it Up")
		case !ok && run >= fall && to != risefall.Down:
			fail("Fall consecutive failures must make it Down")
		case first && to == risefall.Unknown:
			fail("under FirstResult the first outcome decides")
		case first && ok && !everUp && to != risefall.Up:
			fail("under FirstResult the first success ever makes it Up")
		case !first && !everUp && to == risefall.Up && run < rise:
			fail("under Counted nothing is Up before Rise consecutive successes")
		}
		if to == risefall.Up {
			everUp = true
		}
		prev = to
	}
}

// FuzzRecord reads each bit of seq as one outcome (1 = success).
func FuzzRecord(f *testing.F) {
	f.Add([]byte{0b00000001, 0b11110000}, uint8(2), uint8(3), true)
	f.Add([]byte{0b01010101, 0b00110011}, uint8(2), uint8(3), false)
	f.Add([]byte{0xff, 0x00, 0xf0, 0x0f}, uint8(1), uint8(1), false)
	f.Add([]byte{0x00, 0x00, 0xff, 0xff}, uint8(7), uint8(5), true)
	f.Add([]byte{}, uint8(0), uint8(0), false)
	f.Fuzz(func(t *testing.T, seq []byte, rise, fall uint8, first bool) {
		if len(seq) > 512 {
			seq = seq[:512]
		}
		p := risefall.Policy{Rise: int(rise % 12), Fall: int(fall % 12)}
		if first {
			p.Start = risefall.FirstResult
		}
		outcomes := make([]bool, 0, 8*len(seq))
		for _, b := range seq {
			for bit := range 8 {
				outcomes = append(outcomes, b>>bit&1 == 1)
			}
		}
		checkSequence(t, p, outcomes)
	})
}

// TestRandomSequences checks the contract on sequences made of runs of random lengths, so that
// runs reach, just miss and exceed the thresholds, without needing -fuzz.
func TestRandomSequences(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		p := risefall.Policy{Rise: rng.IntN(6), Fall: rng.IntN(6)}
		if rng.IntN(2) == 0 {
			p.Start = risefall.FirstResult
		}
		var outcomes []bool
		ok := rng.IntN(2) == 0
		for range 1 + rng.IntN(20) {
			for range 1 + rng.IntN(7) {
				outcomes = append(outcomes, ok)
			}
			ok = !ok
		}
		checkSequence(t, p, outcomes)
	}
}
