package breaker

import (
	"context"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redisclient"
	"github.com/outgrow/outgrow/internal/rediskey"
	"github.com/outgrow/outgrow/internal/redistest"
)

// FuzzScriptMatchesMemory runs one random sequence of operations (outcome batches of the
// current, an older or an unknown generation, probe leases and reports, Retry-After holds,
// time jumps past leases, open periods and TTLs) against shared_state.lua on miniredis and against the
// MemoryStore, on the same clock, and requires the same reply at every step: the two stores
// share one state machine.
func FuzzScriptMatchesMemory(f *testing.F) {
	for seed := range uint64(8) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		be := redistest.Open(t, redistest.Miniredis)
		mini := be.Mini
		rc, err := redisclient.New(be.Client, redisclient.Config{
			Prefix: be.Prefix, DefaultTimeout: time.Second, Unavailable: errStoreDown,
		})
		if err != nil {
			t.Fatal(err)
		}
		rs := newRedisStore(rc)

		now := time.UnixMilli(1_800_000_000_000)
		mini.SetTime(now)
		ms := newMemoryStore(func() time.Time { return now })
		ms.bt = &batcher{} // announcements go nowhere

		pol := policy{
			failures: 1 + rng.Int64N(5), minCalls: 1 + rng.Int64N(10), probes: 1 + rng.Int64N(3),
			successes: 1 + rng.Int64N(3), windowMs: 100 + rng.Int64N(2000), openMs: 50 + rng.Int64N(500),
			probeTimeoutMs: 20 + rng.Int64N(500),
		}
		pol.maxOpenMs = pol.openMs + rng.Int64N(4)*pol.openMs
		if rng.IntN(2) == 0 {
			pol.failureRate = float64(1+rng.IntN(9)) / 10
			if rng.IntN(2) == 0 {
				pol.windowCalls = 3 + rng.Int64N(20)
			}
		}
		var gen int64 = -1
		var lease reply
		var seq int64
		var sent []request // batches, to send again as after a timeout
		for step := range 60 {
			q := request{name: "b", policy: &pol, jitter: float64(rng.IntN(1_000_000)) / 1e6, instance: "fz"}
			switch rng.IntN(12) {
			case 10:
				if len(sent) > 0 {
					q = sent[rng.IntN(len(sent))] // sent again, maybe after newer ones: applied once
				} else {
					q.op = opAcquire
				}
			case 0, 1, 2, 3, 4:
				q.op = opSync
				q.gen = gen
				if rng.IntN(5) == 0 {
					q.gen = gen - 1 - rng.Int64N(2)
				}
				q.successes, q.failures = rng.Int64N(4), rng.Int64N(6)
				q.failuresAfterSuccess = q.failures
				if q.successes > 0 {
					q.failuresAfterSuccess = rng.Int64N(q.failures + 1)
				}
				q.lateOutcomes = rng.Int64N(3)
				q.lateFailures = rng.Int64N(q.lateOutcomes + 1)
				q.runEnded = rng.IntN(3) == 0
				if rng.IntN(12) == 0 {
					q.holdMs = 1 + rng.Int64N(1000)
				}
				if q.hasOutcomes() {
					seq++
					q.seq = seq
					sent = append(sent, q)
				}
			case 5, 6:
				q.op = opAcquire
				q.gen = gen
				q.leaseID = "L" + strconv.Itoa(rng.IntN(3))
			case 11:
				q.op = opRelease
				q.leaseID = "L" + strconv.Itoa(rng.IntN(3))
			default:
				q.op = opReport
				q.gen, q.slot, q.deadline = lease.gen, lease.slot, lease.deadline
				if q.slot == 0 || rng.IntN(4) == 0 {
					q.slot, q.deadline = 1+rng.Int64N(pol.probes), rng.Int64N(3)
				}
				q.outcome = Outcome(rng.IntN(3))
			}
			want := make([]reply, 1)
			require.NoError(t, ms.run(context.Background(), 0, []request{q}, want))
			got := make([]reply, 1)
			require.NoError(t, rs.run(context.Background(), time.Second, []request{q}, got))
			require.Equal(t, want[0], got[0], "step %d: %+v (policy %+v)", step, q, pol)
			gen = got[0].gen
			if got[0].slot > 0 {
				lease = got[0]
			}
			d := time.Duration(rng.Int64N(3*max(pol.openMs, pol.probeTimeoutMs))) * time.Millisecond
			switch rng.IntN(40) {
			case 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12:
				d = 0
			case 13:
				d = 11 * time.Minute // past the memory of batch numbers
			}
			now = now.Add(d)
			mini.SetTime(now)
			mini.FastForward(d)
		}
		n, nf := ms.totals("b")
		require.Equal(t, n, hashInt(t, be.Client, be.Prefix, "b", "n"), "totals")
		require.Equal(t, nf, hashInt(t, be.Client, be.Prefix, "b", "nf"), "failed totals")
	})
}

// TestLeaseTombstones: a lease whose acquisition timed out is given back; if the release reaches
// the store before the acquisition (they travel on different connections), the acquisition must
// not be granted when it arrives, or the lease would be held for ProbeTimeout by nobody. The
// release leaves a tombstone for that, which the acquisition consumes; a tombstone whose
// acquisition never comes is pruned by the next release that leaves one, once a probe timeout
// has passed, so they never pile up. On the memory state machine and the script, on every
// backend.
func TestLeaseTombstones(t *testing.T) {
	const probeTimeout = 400 * time.Millisecond
	redistest.Each(t, func(t *testing.T, be redistest.Backend) {
		pol := policy{failures: 1, minCalls: 1, probes: 1, successes: 1, windowMs: 1000, openMs: 50,
			maxOpenMs: 50, probeTimeoutMs: probeTimeout.Milliseconds()}
		name := t.Name()
		var store backend
		var tombstones func() []string
		if be.IsRedis() {
			rc, err := redisclient.New(be.Client, redisclient.Config{
				Prefix: be.Prefix, DefaultTimeout: time.Second, Unavailable: errStoreDown,
			})
			require.NoError(t, err)
			store = newRedisStore(rc)
			tombstones = func() []string {
				fields, err := be.Client.HKeys(context.Background(), rediskey.Key(be.Prefix, name, "")).Result()
				require.NoError(t, err)
				var ids []string
				for _, f := range fields {
					if id, ok := strings.CutPrefix(f, "x"); ok {
						ids = append(ids, id)
					}
				}
				return ids
			}
		} else {
			ms := newMemoryStore(time.Now)
			ms.bt = &batcher{} // announcements go nowhere
			store = ms
			tombstones = func() []string {
				ms.mu.Lock()
				defer ms.mu.Unlock()
				return slices.Collect(maps.Keys(ms.states[name].released))
			}
		}
		run := func(q request) reply {
			q.name, q.policy, q.instance = name, &pol, "i"
			res := make([]reply, 1)
			require.NoError(t, store.run(context.Background(), time.Second, []request{q}, res))
			require.NoError(t, res[0].err)
			return res[0]
		}
		r := run(request{op: opSync, gen: -1, failures: 1, failuresAfterSuccess: 1, seq: 1})
		require.Equal(t, StateOpen, r.state, "tripped")
		time.Sleep(100 * time.Millisecond) // the open period is over

		run(request{op: opRelease, leaseID: "overtaken"})
		assert.Equal(t, []string{"overtaken"}, tombstones(), "a release that finds no lease leaves a tombstone")
		if r := run(request{op: opAcquire, leaseID: "overtaken"}); r.slot != 0 {
			t.Fatalf("an acquisition whose release came first was granted slot %d", r.slot)
		}
		assert.Empty(t, tombstones(), "the acquisition consumed its tombstone")
		if r := run(request{op: opAcquire, leaseID: "next"}); r.slot != 1 {
			t.Fatalf("the lease stays free for the next prober, got slot %d", r.slot)
		}
		run(request{op: opRelease, leaseID: "next"})
		assert.Empty(t, tombstones(), "a release that finds its lease leaves none")

		run(request{op: opRelease, leaseID: "never"}) // its acquisition was refused, or lost
		run(request{op: opRelease, leaseID: "recent"})
		assert.ElementsMatch(t, []string{"never", "recent"}, tombstones())
		time.Sleep(probeTimeout / 2) // (a busy machine may add up to half a probe timeout)
		run(request{op: opRelease, leaseID: "later"})
		assert.ElementsMatch(t, []string{"never", "recent", "later"}, tombstones(), "kept one probe timeout")
		time.Sleep(probeTimeout/2 + 50*time.Millisecond) // (or a third of it)
		run(request{op: opRelease, leaseID: "last"})
		assert.ElementsMatch(t, []string{"later", "last"}, tombstones(), "older ones are pruned")
	})
}
