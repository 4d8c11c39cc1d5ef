package balancer

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// node is one backend, the same across snapshots while its ID stays in the set, so that its
// counters outlive set changes (a request picked before an Update calls Done on it after).
type node struct {
	id   string
	hash uint64 // of id, for IPHash
	// inflight is written by every LeastConnections and PowerOfTwo pick of the node, and read
	// by the others': a cache line of its own, shared with no other node's counter.
	_        [64]byte
	inflight atomic.Int64
	picks    atomic.Uint64 // picks counted in flight, ever
	fails    atomic.Int32  // consecutive failed requests observed (Pick.Observe)
	_        [44]byte
	// since is when the node came into rotation (Unix ns), while in slow start; 0 otherwise.
	since atomic.Int64
	base  atomic.Pointer[url.URL] // id as a base URL, parsed once (Proxy, Checker)

	// Guarded by Balancer.mu; snapshots copy them.
	weight int
	nodeState
}

// nodeState is what takes a backend out of rotation.
type nodeState struct {
	down     bool // its health check failed (or SetUp said so)
	ejected  bool // its requests failed (Config.Eject), until its cooldown ends
	draining bool
}

// routable reports whether the backend may be picked while others are up.
func (s nodeState) routable() bool { return !s.down && !s.ejected && !s.draining }

func (s nodeState) String() string { return s.state().String() }

// state is the backend's State, draining first, then down, then ejected.
func (s nodeState) state() State {
	switch {
	case s.draining:
		return Draining
	case s.down:
		return Down
	case s.ejected:
		return Ejected
	}
	return Up
}

func (n *node) state() *nodeState { return &n.nodeState }

func newNode(id string) *node { return &node{id: id, hash: hashString(id)} }

// snapshot is the set as picks see it: immutable once published.
type snapshot struct {
	all     []*node     // the set, by ID: IPHash's order, whatever the order of Update
	states  []nodeState // of all, as published
	weights []int       // of all, as published
	routes  []bool      // of all: may be picked now
	up      []*node     // the nodes that may be picked, by ID
	open    bool        // up holds backends that are down: none is up, failing open
	cycle   []uint32    // WeightedRoundRobin: one cycle, as indexes into up
	// warmUntil is when the last node of up in slow start ends it (Unix ns); 0 when none is.
	warmUntil int64
}

// maxCycle bounds a WeightedRoundRobin cycle. Weights whose cycle (their sum over their gcd)
// is longer are scaled down to fit, which keeps their proportions to within 1 in the cycle.
// Building a cycle costs its length times the number of backends, under the Balancer's lock,
// so the bound also keeps that work near cycleWork: at least one pick per backend.
const (
	maxCycle  = 1 << 16
	cycleWork = 1 << 20
)

// cycleBound returns the longest cycle built for n backends.
func cycleBound(n int) int { return max(n, min(maxCycle, cycleWork/max(n, 1))) }

// publish builds the snapshot of the current set and makes picks use it. b.mu is held.
func (b *Balancer) publish() {
	s := &snapshot{}
	for _, n := range b.nodes {
		s.all = append(s.all, n)
	}
	slices.SortFunc(s.all, func(x, y *node) int { return strings.Compare(x.id, y.id) })
	s.states = make([]nodeState, len(s.all))
	s.weights = make([]int, len(s.all))
	s.routes = make([]bool, len(s.all))
	anyUp := false
	for i, n := range s.all {
		s.states[i], s.weights[i] = n.nodeState, n.weight
		anyUp = anyUp || n.routable()
	}
	s.open = !anyUp && b.cfg.WhenNoneUp == FailOpen
	old := b.snap.Load()
	now := time.Now().UnixNano()
	for i, n := range s.all {
		if n.routable() || s.open && !n.draining {
			s.routes[i] = true
			s.up = append(s.up, n)
		}
		if b.cfg.SlowStart <= 0 || !n.routable() {
			n.since.Store(0)
			continue
		}
		if old != nil && !old.routable(n) {
			n.since.Store(now) // into rotation now (a node of the first set starts warm)
		}
		if since := n.since.Load(); since != 0 {
			if until := since + int64(b.cfg.SlowStart); until > now {
				s.warmUntil = max(s.warmUntil, until)
			} else {
				n.since.Store(0)
			}
		}
	}
	if s.open && len(s.up) > 0 {
		b.logger.Warn("balancer: no backend is up; failing open", "backends", len(s.up))
	}
	if s.warmUntil != 0 {
		// Once the last warm-up ends, a snapshot without one spares picks the clock. One
		// timer per Balancer, moved to the latest end.
		d := time.Duration(s.warmUntil-now) + time.Millisecond
		if b.warmTimer == nil {
			b.warmTimer = time.AfterFunc(d, func() {
				b.mu.Lock()
				defer b.mu.Unlock()
				if b.snap.Load().warmUntil != 0 {
					b.publish()
				}
			})
		} else {
			b.warmTimer.Reset(d)
		}
	}
	if b.cfg.Algorithm == WeightedRoundRobin {
		w := make([]int, len(s.up))
		for i, n := range s.up {
			w[i] = n.weight
		}
		s.cycle = smoothCycle(w)
	}
	b.snap.Store(s)
}

// smoothCycle returns one cycle of NGINX's smooth weighted round robin over weights (all ≥ 1),
// as indexes: each pick adds every weight to its current value, takes the largest current (the
// first on ties) and takes the total off it. Over a cycle of sum(w)/gcd(w) picks, index i
// comes w[i]/gcd times, spread out.
func smoothCycle(weights []int) []uint32 {
	if len(weights) == 0 {
		return nil
	}
	g := 0
	for _, w := range weights {
		g = gcd(g, w)
	}
	total := 0
	w := make([]int, len(weights))
	for i, x := range weights {
		w[i] = x / g
		total += w[i]
	}
	if bound := cycleBound(len(weights)); total > bound {
		// Scale down, keeping every backend at least once.
		total = 0
		for i, x := range weights {
			w[i] = max(1, int(int64(x/g)*int64(bound)/int64(sumOf(weights)/g)))
			total += w[i]
		}
	}
	cycle := make([]uint32, total)
	current := make([]int, len(w))
	for k := range cycle {
		best := 0
		for i := range w {
			current[i] += w[i]
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		cycle[k] = uint32(best)
	}
	return cycle
}

func sumOf(xs []int) int {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// leastLoaded returns the node of up with the fewest requests in flight, scanning from turn so
// that ties go in turn.
func (s *snapshot) leastLoaded(turn uint64) *node {
	n := len(s.up)
	start := int(turn % uint64(n))
	best := s.up[start]
	least := best.inflight.Load()
	for k := 1; k < n && least > 0; k++ {
		c := s.up[(start+k)%n]
		if l := c.inflight.Load(); l < least {
			best, least = c, l
		}
	}
	return best
}

// twoChoices samples two distinct nodes of up and returns the one with fewer in flight.
func (s *snapshot) twoChoices() *node {
	n := len(s.up)
	if n == 1 {
		return s.up[0]
	}
	// Both samples from one 64-bit draw (its halves), half the cost of two draws; the
	// modulo bias is below n/2^32.
	r := rand.Uint64()
	i := int(uint32(r) % uint32(n))
	j := int(uint32(r>>32) % uint32(n-1))
	if j >= i {
		j++
	}
	a, c := s.up[i], s.up[j]
	if c.inflight.Load() < a.inflight.Load() {
		return c
	}
	return a
}

// byHash returns the routable node of highest rendezvous score for key: each (key, node) pair
// scores independently, so a node's arrival or departure moves only the keys it wins or held.
func (s *snapshot) byHash(key uint64) *node {
	var best *node
	var top uint64
	for i, n := range s.all {
		if !s.routes[i] {
			continue
		}
		if score := mix(key ^ n.hash); best == nil || score > top {
			best, top = n, score
		}
	}
	return best
}

// hashString is 64-bit FNV-1a: stable across processes and versions, so that every balancer
// with the same set hashes alike (a seeded hash would not).
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix(h)
}

// hashAddr hashes a client's address, IPv4 and IPv4-mapped IPv6 alike.
func hashAddr(a netip.Addr) uint64 {
	b := a.Unmap().As16()
	return mix(binary.LittleEndian.Uint64(b[:8]) ^ mix(binary.LittleEndian.Uint64(b[8:])))
}

// mix is SplitMix64's finalizer: every input bit flips about half of the output bits.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// routable reports whether n was in rotation in s (up, not failing open).
func (s *snapshot) routable(n *node) bool {
	i, found := slices.BinarySearchFunc(s.all, n.id, func(x *node, id string) int { return strings.Compare(x.id, id) })
	return found && s.all[i] == n && s.states[i].routable()
}

// baseURL returns the node's ID as a base URL, parsed on first use.
func (n *node) baseURL() (*url.URL, error) {
	if u := n.base.Load(); u != nil {
		return u, nil
	}
	u, err := parseBaseURL(n.id)
	if err != nil {
		return nil, err
	}
	n.base.Store(u)
	return u, nil
}
