package ratelimit

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// FuzzScriptMatchesMemory: one random sequence of batches (GCRA and strict limits, costs up to
// the burst, peeks, give-backs, a Rate or Burst changed under a key, time moving by whole
// microseconds)
// gets the same results, field by field, from a MemoryStore (gcra.go, slidinglog.go) and from
// ratelimit.lua on miniredis, in one call per batch and with the holds of the Cluster protocol.
func FuzzScriptMatchesMemory(f *testing.F) {
	for seed := range uint64(8) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, seed uint64) {
		steps := fuzzSteps(seed)
		var want [][]Result
		synctest.Test(t, func(t *testing.T) {
			want = playSteps(t, memStore(t), steps, time.Sleep)
		})
		for _, holds := range []bool{false, true} {
			m, s := miniStore(t, RedisConfig{Timeout: 5 * time.Second}) // fuzzing loads the machine
			s.holds = holds
			now := time.Now().Truncate(time.Second)
			m.SetTime(now)
			got := playSteps(t, s, steps, func(d time.Duration) {
				now = now.Add(d)
				m.SetTime(now)
				m.FastForward(d)
			})
			for i := range steps {
				require.Equal(t, want[i], got[i], "step %d of %v (holds %v): %v", i, steps, holds, steps[i])
			}
		}
	})
}

// fuzzStep is one batch, after a pause.
type fuzzStep struct {
	pause time.Duration
	reqs  []request
}

func (s fuzzStep) String() string {
	out := fmt.Sprintf("\n+%v", s.pause)
	for _, q := range s.reqs {
		out += fmt.Sprintf(" [%s/%s %v n=%d]", q.policy, q.key, q.rule.Limit, q.n)
	}
	return out
}

func fuzzSteps(seed uint64) []fuzzStep {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	randLimit := func(strict bool) Limit {
		l := Limit{Rate: 1 + rng.IntN(5), Period: time.Duration(1+rng.IntN(5_000_000)) * time.Microsecond, Strict: strict}
		l.Period = max(l.Period, time.Duration(l.Rate)*time.Microsecond)
		if !strict {
			l.Burst = rng.IntN(2 * l.Rate) // 0 is the default, Rate
		}
		return l
	}
	// Two limits per policy, the second as after a change of configuration (a key's state is
	// read under one window: the change keeps the Period).
	policies := []string{"g", "h", "s"}
	limits := map[string][2]Limit{}
	for _, p := range policies {
		l, changed := randLimit(p == "s"), randLimit(p == "s")
		changed.Period = max(l.Period, time.Duration(changed.Rate)*time.Microsecond)
		limits[p] = [2]Limit{l, changed}
	}
	steps := make([]fuzzStep, 40)
	for i := range steps {
		st := &steps[i]
		if rng.IntN(3) > 0 {
			st.pause = time.Duration(1+rng.Int64N(3_000_000)) * time.Microsecond
		}
		kind := rng.IntN(8) // 0: peek, 1: give back, else take
		for range 1 + rng.IntN(3) {
			p := policies[rng.IntN(len(policies))]
			l := limits[p][min(1, rng.IntN(8))]
			q := req(p, []string{"a", "b"}[rng.IntN(2)], l, 0)
			switch kind {
			case 0:
			case 1:
				q.n = -1 - rng.IntN(q.rule.max)
			default:
				q.n = 1 + rng.IntN(q.rule.max)
			}
			st.reqs = append(st.reqs, q)
		}
	}
	return steps
}

// playSteps runs steps on s, pausing with pause, and returns the results of each batch.
func playSteps(t *testing.T, s Store, steps []fuzzStep, pause func(time.Duration)) [][]Result {
	t.Helper()
	res := make([][]Result, len(steps))
	for i, st := range steps {
		if st.pause > 0 {
			pause(st.pause)
		}
		res[i] = take(t, s, st.reqs...)
	}
	return res
}
