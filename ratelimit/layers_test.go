package ratelimit

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stack is one instance's three layered limiters of the scenario: per IP (50/h), per API
// key (3/h) and per user (10/h).
type stack struct{ ip, apikey, user *Limiter }

func newStack(t *testing.T, s Store, cfg Config) stack {
	t.Helper()
	named := func(name string) Config { cfg.Name = name; return cfg }
	return stack{
		ip:     newLimiter(t, s, PerHour(50), named("ip")),
		apikey: newLimiter(t, s, PerHour(3), named("apikey")),
		user:   newLimiter(t, s, PerHour(10), named("user")),
	}
}

func (s stack) layers(ip, key, user string) []Layer {
	return []Layer{{Limiter: s.ip, Key: ip}, {Limiter: s.apikey, Key: key}, {Limiter: s.user, Key: user}}
}

var (
	stormIPs   = []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"}
	stormKeys  = []string{"key-a", "key-b", "key-c"}
	stormUsers = []string{"ada", "bob", "cy", "dee"}
)

// TestLayeredStormReportsOnlyRealDenials is the scenario: three layers keyed by IP, API
// key and user (50/h, 3/h, 10/h), hammered by 4 instances (each with its own client) x 16
// goroutines, deny caches on. Admissions never exceed a limit; every layer reported denied
// really lacked the units (budgets only shrink within the hour, so a layer with units left at
// the end was denied falsely); and afterwards a request on layers that still have units is
// granted on every instance, which a denial cached falsely would refuse.
func TestLayeredStormReportsOnlyRealDenials(t *testing.T) {
	eachStore(t, func(t *testing.T, e *env) {
		stacks := make([]stack, 4)
		for i := range stacks {
			stacks[i] = newStack(t, e.instance(), Config{})
		}
		var mu sync.Mutex
		granted := map[string]int{}     // policy/key -> units granted
		denied := map[string][]Result{} // policy/key -> its denials
		var wg sync.WaitGroup
		for inst, st := range stacks {
			for g := range 16 {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(inst), uint64(g)))
					for range 20 {
						layers := st.layers(stormIPs[rng.IntN(4)], stormKeys[rng.IntN(3)], stormUsers[rng.IntN(4)])
						d, err := AllowAll(context.Background(), layers...)
						if !assert.NoError(t, err) {
							return
						}
						mu.Lock()
						for i, ly := range layers {
							id, r := ly.Limiter.Name()+"/"+ly.Key, d.Results[i]
							if d.Allowed {
								granted[id]++
							} else if !r.Allowed && r.Remaining >= 0 {
								denied[id] = append(denied[id], r)
							}
						}
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()

		ctx := context.Background()
		st := stacks[0]
		left := func(l *Limiter, key string) int {
			p, err := l.Peek(ctx, key)
			require.NoError(t, err)
			return p.Remaining
		}
		for _, l := range []*Limiter{st.ip, st.apikey, st.user} {
			for _, k := range append(append(append([]string(nil), stormIPs...), stormKeys...), stormUsers...) {
				id := l.Name() + "/" + k
				assert.LessOrEqual(t, granted[id], l.Limit().Rate, "%s admitted over its limit", id)
				if rs := denied[id]; len(rs) > 0 {
					assert.Zero(t, left(l, k), "%s was reported denied %d times (first: %+v) but has units left", id, len(rs), rs[0])
				}
			}
		}
		assert.NotEmpty(t, denied, "the storm exhausted the API keys")

		// Every instance grants requests on layers that still have units: no false denial
		// stayed in a deny cache.
		for inst, st := range stacks {
			for i, ip := range stormIPs {
				layers := []Layer{{Limiter: st.ip, Key: ip}}
				if u := stormUsers[i]; left(st.user, u) > 0 {
					layers = append(layers, Layer{Limiter: st.user, Key: u})
				}
				d, err := AllowAll(ctx, layers...)
				require.NoError(t, err)
				assert.True(t, d.Allowed, "instance %d refused %v: %+v", inst, layers, d.Results)
			}
		}
	})
}

// TestLayeredSequenceMatchesMemory: one request sequence over the three layers (with a strict
// user limit and costs of 1 or 2) gets the same decisions, field by field, on every store.
func TestLayeredSequenceMatchesMemory(t *testing.T) {
	limits := map[string]Limit{
		"ip":     PerHour(6),
		"apikey": {Rate: 4, Period: time.Hour, Burst: 2},
		"user":   {Rate: 3, Period: time.Hour, Strict: true},
	}
	run := func(t *testing.T, s Store, cfg Config) []Decision {
		stacks := make(map[string]*Limiter)
		for name, l := range limits {
			cfg.Name = name
			stacks[name] = newLimiter(t, s, l, cfg)
		}
		for name, l := range stacks { // the same start on every run
			for _, k := range append(append(append([]string(nil), stormIPs...), stormKeys...), stormUsers...) {
				require.NoError(t, l.Reset(context.Background(), k), name)
			}
		}
		rng := rand.New(rand.NewPCG(7, 7))
		var ds []Decision
		for range 80 {
			layers := []Layer{
				{Limiter: stacks["ip"], Key: stormIPs[rng.IntN(2)]},
				{Limiter: stacks["apikey"], Key: stormKeys[rng.IntN(3)], N: 1 + rng.IntN(2)},
				{Limiter: stacks["user"], Key: stormUsers[rng.IntN(4)]},
			}
			d, err := AllowAll(context.Background(), layers[:1+rng.IntN(3)]...)
			require.NoError(t, err)
			ds = append(ds, d)
		}
		return ds
	}
	var want []Decision
	synctest.Test(t, func(t *testing.T) { want = run(t, memStore(t), Config{}) })

	eachStore(t, func(t *testing.T, e *env) {
		tolerance := e.slack * 10 // real servers: the time the sequence takes
		got := run(t, e.store, Config{DisableDenyCache: true})
		granted := 0
		for i := range want {
			w, g := want[i], got[i]
			require.Equal(t, w.Allowed, g.Allowed, "decision %d: %+v, want %+v", i, g, w)
			require.Equal(t, w.Denied, g.Denied, "decision %d", i)
			for j := range w.Results {
				wr, gr := w.Results[j], g.Results[j]
				assert.InDelta(t, wr.RetryAfter, gr.RetryAfter, float64(tolerance), "decision %d layer %d", i, j)
				assert.InDelta(t, wr.ResetAfter, gr.ResetAfter, float64(tolerance), "decision %d layer %d", i, j)
				wr.RetryAfter, wr.ResetAfter, gr.RetryAfter, gr.ResetAfter = 0, 0, 0, 0
				require.Equal(t, wr, gr, "decision %d layer %d", i, j)
			}
			if w.Allowed {
				granted++
			}
		}
		assert.Positive(t, granted)
		assert.Less(t, granted, len(want), "the sequence meets denials")

		if e.name == "memory" {
			return
		}
		// With the deny cache on, the decisions are the same.
		got = run(t, e.instance(), Config{})
		for i := range want {
			require.Equal(t, want[i].Allowed, got[i].Allowed, "decision %d with the deny cache on", i)
		}
	})
}
