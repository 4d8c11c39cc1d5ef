package balancer

import (
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newBalancer(t testing.TB, cfg Config, backends ...Backend) *Balancer {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	b, err := New(cfg, backends...)
	require.NoError(t, err)
	return b
}

func ids(names ...string) []Backend {
	out := make([]Backend, len(names))
	for i, n := range names {
		out[i] = Backend{ID: n}
	}
	return out
}

// picks makes n picks (each Done at once) and counts them by backend.
func picks(t testing.TB, b *Balancer, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		p, err := b.Pick(nil)
		require.NoError(t, err)
		got[p.ID()]++
		p.Done()
	}
	return got
}

func TestRoundRobin(t *testing.T) {
	b := newBalancer(t, Config{}, ids("a", "b", "c")...)
	// Every round of 3 takes each backend once.
	for range 50 {
		assert.Equal(t, map[string]int{"a": 1, "b": 1, "c": 1}, picks(t, b, 3))
	}
}

// TestRoundRobinRandomStart: balancers started together do not all begin with one backend.
func TestRoundRobinRandomStart(t *testing.T) {
	first := map[string]int{}
	for range 60 {
		b := newBalancer(t, Config{}, ids("a", "b", "c")...)
		p, err := b.Pick(nil)
		require.NoError(t, err)
		first[p.ID()]++
	}
	assert.Len(t, first, 3, "first picks of 60 new balancers: %v", first)
}

// TestWeightedExactShares: every window of one cycle holds exactly each backend's weight, and
// the picks are spread (NGINX's 5,1,1 is a a b a c a a).
func TestWeightedExactShares(t *testing.T) {
	b := newBalancer(t, Config{Algorithm: WeightedRoundRobin}, Backend{ID: "a", Weight: 5}, Backend{ID: "b", Weight: 1}, Backend{ID: "c", Weight: 1})
	var seq []string
	for range 70 {
		p, err := b.Pick(nil)
		require.NoError(t, err)
		seq = append(seq, p.ID())
		p.Done()
	}
	for i := 0; i+7 <= len(seq); i++ {
		count := map[string]int{}
		for _, id := range seq[i : i+7] {
			count[id]++
		}
		require.Equal(t, map[string]int{"a": 5, "b": 1, "c": 1}, count, "window %d of %v", i, seq)
	}
	assert.Equal(t, []uint32{0, 0, 1, 0, 2, 0, 0}, smoothCycle([]int{5, 1, 1}))
}

// TestWeightedProperty: for random weights, each window of one cycle has the exact shares
// (weights over their gcd), and no backend waits longer than it must.
func TestWeightedProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		w := make([]int, 1+r.IntN(8))
		for i := range w {
			w[i] = 1 + r.IntN(20)
		}
		cycle := smoothCycle(w)
		g := 0
		for _, x := range w {
			g = gcd(g, x)
		}
		count := make([]int, len(w))
		for _, i := range cycle {
			count[i]++
		}
		for i := range w {
			require.Equal(t, w[i]/g, count[i], "weights %v: cycle %v", w, cycle)
		}
	}
}

func TestWeightedHugeCycleScaled(t *testing.T) {
	cycle := smoothCycle([]int{maxWeight, maxWeight - 1, 1})
	assert.LessOrEqual(t, len(cycle), maxCycle+3)
	count := make([]int, 3)
	for _, i := range cycle {
		count[i]++
	}
	assert.Positive(t, count[2], "the lightest backend keeps a pick per cycle")
	assert.InDelta(t, 1.0, float64(count[0])/float64(count[1]), 0.001)
}

// TestLeastConnections: requests in flight steer picks; Done frees a backend.
func TestLeastConnections(t *testing.T) {
	b := newBalancer(t, Config{Algorithm: LeastConnections}, ids("a", "b", "c")...)
	held := map[string][]Pick{}
	for range 9 {
		p, err := b.Pick(nil)
		require.NoError(t, err)
		held[p.ID()] = append(held[p.ID()], p)
	}
	for _, id := range []string{"a", "b", "c"} {
		assert.Len(t, held[id], 3, id)
	}
	held["b"][0].Done()
	held["b"][1].Done()
	for range 2 {
		p, err := b.Pick(nil)
		require.NoError(t, err)
		assert.Equal(t, "b", p.ID(), "the least loaded")
	}
}

// TestPowerOfTwoDistinct: the two samples are distinct backends, so the less loaded of two
// always wins.
func TestPowerOfTwoDistinct(t *testing.T) {
	b := newBalancer(t, Config{Algorithm: PowerOfTwo}, ids("busy", "idle")...)
	for {
		p, err := b.Pick(nil)
		require.NoError(t, err)
		if p.ID() == "idle" {
			p.Done()
			continue
		}
		break // busy holds one in flight from now on
	}
	for range 100 {
		p, err := b.Pick(nil)
		require.NoError(t, err)
		require.Equal(t, "idle", p.ID())
		p.Done()
	}
}

func TestRandom(t *testing.T) {
	b := newBalancer(t, Config{Algorithm: Random}, ids("a", "b", "c")...)
	got := picks(t, b, 3000)
	for _, id := range []string{"a", "b", "c"} {
		assert.InDelta(t, 1000, got[id], 150, id)
	}
}

func requestFrom(ip string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = ip + ":1234"
	return r
}

// ipPicks returns the backend each of the clients is sent to.
func ipPicks(t *testing.T, b *Balancer, clients []string) map[string]string {
	t.Helper()
	out := make(map[string]string, len(clients))
	for _, c := range clients {
		p, err := b.Pick(requestFrom(c))
		require.NoError(t, err)
		out[c] = p.ID()
		p.Done()
	}
	return out
}

func clients(n int) []string {
	r := rand.New(rand.NewPCG(3, 4))
	out := make([]string, n)
	for i := range out {
		if i%2 == 0 {
			out[i] = netip.AddrFrom4([4]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))}).String()
		} else {
			var a [16]byte
			for k := range a {
				a[k] = byte(r.IntN(256))
			}
			out[i] = "[" + netip.AddrFrom16(a).String() + "]"
		}
	}
	return out
}

// TestIPHashMovement: adding an 11th backend moves about 1/11 of the clients, all to it;
// removing one moves only its clients; a backend down moves only its clients, who come back.
func TestIPHashMovement(t *testing.T) {
	set := make([]Backend, 10)
	for i := range set {
		set[i] = Backend{ID: fmt.Sprintf("10.0.0.%d:8080", i+1)}
	}
	b := newBalancer(t, Config{Algorithm: IPHash}, set...)
	cs := clients(20000)
	before := ipPicks(t, b, cs)
	load := map[string]int{}
	for _, id := range before {
		load[id]++
	}
	for _, be := range set {
		assert.InDelta(t, 2000, load[be.ID], 2000*0.1, "spread over 10 backends: %v", load)
	}

	require.NoError(t, b.Update(append(set, Backend{ID: "10.0.0.11:8080"})...))
	after := ipPicks(t, b, cs)
	moved := 0
	for _, c := range cs {
		if after[c] != before[c] {
			moved++
			require.Equal(t, "10.0.0.11:8080", after[c], "a client moved to an old backend")
		}
	}
	ideal := float64(len(cs)) / 11
	assert.InDelta(t, ideal, float64(moved), ideal*0.05, "moved %d of %d on adding an 11th", moved, len(cs))

	require.NoError(t, b.Update(set...))
	assert.Equal(t, before, ipPicks(t, b, cs), "removing it brings every client back")

	require.NoError(t, b.SetUp("10.0.0.3:8080", false))
	down := ipPicks(t, b, cs)
	for _, c := range cs {
		if before[c] != "10.0.0.3:8080" {
			require.Equal(t, before[c], down[c], "a backend down moved another's client")
		} else {
			require.NotEqual(t, "10.0.0.3:8080", down[c])
		}
	}
	require.NoError(t, b.SetUp("10.0.0.3:8080", true))
	assert.Equal(t, before, ipPicks(t, b, cs), "its clients come back")

	// Another balancer with the same set, listed in another order, agrees.
	other := newBalancer(t, Config{Algorithm: IPHash}, append([]Backend{set[9]}, set[:9]...)...)
	assert.Equal(t, before, ipPicks(t, other, cs))
}

func TestIPHashTrustedProxy(t *testing.T) {
	b := newBalancer(t, Config{Algorithm: IPHash, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, ids("a", "b", "c", "d")...)
	direct := ipPicks(t, b, []string{"198.51.100.7"})["198.51.100.7"]
	r := requestFrom("10.1.2.3")
	r.Header.Set("X-Forwarded-For", "198.51.100.7")
	p, err := b.Pick(r)
	require.NoError(t, err)
	assert.Equal(t, direct, p.ID(), "the client behind the trusted proxy hashes as itself")
	r = requestFrom("")
	r.RemoteAddr = "@"
	_, err = b.Pick(r)
	assert.ErrorIs(t, err, ErrNoClientIP)
}

// TestDownDrainAndFailOpen: down and draining backends get no picks; with none up the
// balancer fails open (not to draining ones) or closed.
func TestDownDrainAndFailOpen(t *testing.T) {
	for _, alg := range []Algorithm{RoundRobin, WeightedRoundRobin, LeastConnections, IPHash, PowerOfTwo, Random} {
		t.Run(alg.String(), func(t *testing.T) {
			b := newBalancer(t, Config{Algorithm: alg}, ids("a", "b", "c")...)
			pick := func() (string, error) {
				p, err := b.Pick(requestFrom(clients(1)[0]))
				if err != nil {
					return "", err
				}
				p.Done()
				return p.ID(), nil
			}
			require.NoError(t, b.SetUp("a", false))
			require.NoError(t, b.Drain("b", true))
			for range 20 {
				id, err := pick()
				require.NoError(t, err)
				require.Equal(t, "c", id)
			}
			require.NoError(t, b.SetUp("c", false))
			for range 20 {
				id, err := pick()
				require.NoError(t, err)
				require.NotEqual(t, "b", id, "failing open never picks a draining backend")
			}
			assert.Positive(t, b.Stats().FailOpenPicks)
			require.NoError(t, b.Drain("a", true))
			require.NoError(t, b.Drain("c", true))
			_, err := pick()
			assert.ErrorIs(t, err, ErrNoBackend, "all draining")
		})
	}
	b := newBalancer(t, Config{WhenNoneUp: FailClosed}, ids("a")...)
	require.NoError(t, b.SetUp("a", false))
	_, err := b.Pick(nil)
	assert.ErrorIs(t, err, ErrNoBackend)
	assert.Equal(t, uint64(1), b.Stats().NoBackend)
	assert.ErrorIs(t, b.SetUp("nope", true), ErrUnknownBackend)
	assert.ErrorIs(t, b.Drain("nope", true), ErrUnknownBackend)
}

// TestUpdateKeepsState: a backend that stays keeps its state and requests in flight.
func TestUpdateKeepsState(t *testing.T) {
	b := newBalancer(t, Config{Algorithm: LeastConnections}, ids("a", "b")...)
	p, err := b.Pick(nil)
	require.NoError(t, err)
	other := map[string]string{"a": "b", "b": "a"}[p.ID()]
	require.NoError(t, b.SetUp(other, false))
	require.NoError(t, b.Update(Backend{ID: "a", Weight: 2}, Backend{ID: "b"}, Backend{ID: "c"}))
	st := b.Stats()
	require.Len(t, st.Backends, 3)
	byID := map[string]BackendStats{}
	for _, s := range st.Backends {
		byID[s.ID] = s
	}
	assert.Equal(t, int64(1), byID[p.ID()].InFlight)
	assert.False(t, byID[other].Up, "still down")
	assert.True(t, byID["c"].Up, "a new backend starts up")
	assert.Equal(t, 2, byID["a"].Weight)
	p.Done()
	assert.Zero(t, b.Stats().Backends[0].InFlight+b.Stats().Backends[1].InFlight)

	for name, set := range map[string][]Backend{
		"ID is empty":    {{}},
		"repeated":       {{ID: "x"}, {ID: "x"}},
		"Weight -1":      {{ID: "x", Weight: -1}},
		"Weight 1000001": {{ID: "x", Weight: maxWeight + 1}},
	} {
		err := b.Update(set...)
		require.ErrorIs(t, err, ErrInvalidConfig, name)
		assert.Contains(t, err.Error(), name)
	}
	assert.Len(t, b.Stats().Backends, 3, "a refused Update changes nothing")
}

func TestConfigErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"Algorithm":  {Algorithm: 99},
		"WhenNoneUp": {WhenNoneUp: 9},
		"Header":     {ForwardedHeader: "X-Real-IP"},
	} {
		_, err := New(cfg)
		require.ErrorIs(t, err, ErrInvalidConfig, name)
	}
	b := newBalancer(t, Config{})
	_, err := b.Pick(nil)
	assert.ErrorIs(t, err, ErrNoBackend, "an empty set")
	for _, a := range []Algorithm{RoundRobin, WeightedRoundRobin, LeastConnections, IPHash, PowerOfTwo, Random} {
		got, err := ParseAlgorithm(a.String())
		require.NoError(t, err)
		assert.Equal(t, a, got)
	}
	_, err = ParseAlgorithm("fastest")
	assert.ErrorIs(t, err, ErrInvalidConfig)
}

// TestPicksAllocateNothing: Pick and Done allocate nothing, for every algorithm.
func TestPicksAllocateNothing(t *testing.T) {
	for _, alg := range []Algorithm{RoundRobin, WeightedRoundRobin, LeastConnections, IPHash, PowerOfTwo, Random} {
		b := newBalancer(t, Config{Algorithm: alg}, Backend{ID: "a", Weight: 3}, Backend{ID: "b"}, Backend{ID: "c", Weight: 2})
		r := requestFrom("192.0.2.1")
		allocs := testing.AllocsPerRun(1000, func() {
			p, err := b.Pick(r)
			if err != nil {
				t.Fatal(err)
			}
			p.Done()
		})
		assert.Zero(t, allocs, alg.String())
	}
}

// TestConcurrentPicksAndUpdates: picks during set changes (under -race) always get a backend of
// the set, and every request in flight is counted back to zero.
func TestConcurrentPicksAndUpdates(t *testing.T) {
	b := newBalancer(t, Config{Algorithm: LeastConnections}, ids("a", "b", "c")...)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				p, err := b.Pick(nil)
				if err != nil {
					t.Error(err)
					return
				}
				p.Done()
			}
		})
	}
	for i := range 200 {
		switch i % 3 {
		case 0:
			require.NoError(t, b.Update(ids("a", "b", "c", "d")...))
		case 1:
			require.NoError(t, b.SetUp("a", i%2 == 0))
		case 2:
			require.NoError(t, b.Update(ids("a", "b", "c")...))
		}
	}
	close(stop)
	wg.Wait()
	for _, s := range b.Stats().Backends {
		assert.Zero(t, s.InFlight, s.ID)
	}
}

// TestSlowStart: a backend that joins, or comes back up, takes a share of the picks that grows
// from a tenth to its full share over SlowStart.
func TestSlowStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBalancer(t, Config{SlowStart: 10 * time.Second}, ids("a", "b")...)
		share := func() float64 {
			return float64(picks(t, b, 4000)["b"]) / 4000
		}
		assert.InDelta(t, 0.5, share(), 0.01, "the first set starts warm")
		require.NoError(t, b.SetUp("b", false))
		require.NoError(t, b.SetUp("b", true))
		early := share()
		time.Sleep(5 * time.Second)
		mid := share()
		time.Sleep(6 * time.Second)
		late := share()
		// Round robin: b's turn kept with the warmth's odds, else a second choice (a's turn).
		assert.InDelta(t, 0.08, early, 0.03, "a tenth of b's turns at first")
		assert.InDelta(t, 0.33, mid, 0.04, "half of them at 5s")
		assert.InDelta(t, 0.5, late, 0.01, "warm after 10s")
		assert.Zero(t, b.snap.Load().warmUntil, "republished once warm")

		require.NoError(t, b.Update(ids("a", "b", "c")...))
		assert.Less(t, float64(picks(t, b, 3000)["c"])/3000, 0.2, "a new backend starts cold")
		_, err := New(Config{SlowStart: -1})
		assert.ErrorIs(t, err, ErrInvalidConfig)
	})
}

// TestLeastConnectionsVariableDurations: with requests of random durations, one backend twice
// as slow as the others, least connections keeps the requests in flight even across backends
// (within a few: a sample may fall among requests that ended at the same instant) and sends
// the slow one fewer requests; round robin gives it its third regardless.
func TestLeastConnectionsVariableDurations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		run := func(alg Algorithm) (served map[string]int, maxSpread int64) {
			b := newBalancer(t, Config{Algorithm: alg}, ids("slow", "b", "c")...)
			served = map[string]int{}
			var mu sync.Mutex
			var wg sync.WaitGroup
			r := rand.New(rand.NewPCG(5, 6))
			for i := range 3000 {
				p, err := b.pick(nil, true)
				require.NoError(t, err)
				d := time.Duration(1+r.IntN(20)) * time.Millisecond
				if p.ID() == "slow" {
					d *= 2
				}
				wg.Go(func() {
					time.Sleep(d)
					mu.Lock()
					served[p.ID()]++
					mu.Unlock()
					p.Done()
				})
				if i%100 == 99 {
					st := b.Stats()
					lo, hi := st.Backends[0].InFlight, st.Backends[0].InFlight
					for _, s := range st.Backends {
						lo, hi = min(lo, s.InFlight), max(hi, s.InFlight)
					}
					maxSpread = max(maxSpread, hi-lo)
				}
				time.Sleep(100 * time.Microsecond) // 10,000 requests a second
			}
			wg.Wait()
			return served, maxSpread
		}
		lc, spread := run(LeastConnections)
		rr, rrSpread := run(RoundRobin)
		assert.LessOrEqual(t, spread, int64(8), "requests in flight stay even")
		assert.Greater(t, rrSpread, 2*spread, "round robin lets the slow backend's pile up")
		t.Logf("largest gap in flight: least connections %d, round robin %d", spread, rrSpread)
		assert.Less(t, lc["slow"], 900, "least connections spares the slow backend: %v", lc)
		assert.InDelta(t, 1000, rr["slow"], 1, "round robin does not: %v", rr)
	})
}

// TestWeightedCycleWorkBounded: a set of many backends with large weights builds its cycle in
// bounded work, every backend kept in it.
func TestWeightedCycleWorkBounded(t *testing.T) {
	w := make([]int, 1000)
	for i := range w {
		w[i] = maxWeight - i
	}
	cycle := smoothCycle(w)
	assert.LessOrEqual(t, len(cycle)*len(w), 2*cycleWork+len(w)*len(w))
	seen := make([]bool, len(w))
	for _, i := range cycle {
		seen[i] = true
	}
	assert.NotContains(t, seen, false, "every backend in the cycle")
}
