package balancer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outgrow/outgrow/internal/clientip"
)

// Algorithm is how a [Balancer] picks among its routable backends.
type Algorithm uint8

const (
	// RoundRobin takes the backends in turn, from a random start (so that balancers started
	// together do not all begin with the first backend), keeping its place when the set
	// changes.
	RoundRobin Algorithm = iota
	// WeightedRoundRobin takes the backends in turn in proportion to their Weights, spread
	// evenly through each cycle (NGINX's smooth weighted round robin: weights 5, 1, 1 give
	// a a b a c a a, not a a a a a b c), exactly Weight picks per backend per cycle.
	WeightedRoundRobin
	// LeastConnections takes the backend with the fewest requests in flight (counted from Pick
	// to Done), the ties in turn.
	LeastConnections
	// IPHash sends each client to the same backend while the set is unchanged (session
	// affinity), by rendezvous hashing of the client's IP address: adding or removing one of N
	// backends moves only the clients of that backend (about 1/N of them), and a backend that
	// is down moves only its own clients, who come back when it does. The client's address is
	// the peer's unless Config.TrustedProxies vouch for a forwarding header.
	IPHash
	// PowerOfTwo samples two distinct backends at random and takes the one with fewer requests
	// in flight: least-connections' balance at random's cost, and no herd on the least loaded
	// backend when many balancers share the backends.
	PowerOfTwo
	// Random takes a backend at random.
	Random
)

var algorithms = [...]string{"round-robin", "weighted-round-robin", "least-connections", "ip-hash", "power-of-two", "random"}

// String returns the algorithm's name, as ParseAlgorithm reads it.
func (a Algorithm) String() string {
	if int(a) < len(algorithms) {
		return algorithms[a]
	}
	return fmt.Sprintf("Algorithm(%d)", a)
}

// ParseAlgorithm returns the Algorithm named s ("round-robin", "weighted-round-robin",
// "least-connections", "ip-hash", "power-of-two", "random"), for flags and configuration files.
func ParseAlgorithm(s string) (Algorithm, error) {
	if i := slices.Index(algorithms[:], strings.ToLower(s)); i >= 0 {
		return Algorithm(i), nil
	}
	return 0, fmt.Errorf("%w: unknown algorithm %q (want one of %s)", ErrInvalidConfig, s, strings.Join(algorithms[:], ", "))
}

// Backend is one server of a [Balancer]'s set.
type Backend struct {
	// ID names the backend, uniquely in the set. For a Proxy or a Checker it is the
	// backend's base URL ("http://10.0.0.5:8080"); otherwise any name. IPHash hashes it, so
	// that every balancer with the same set sends a client to the same backend. Required.
	ID string
	// Weight is the backend's share under WeightedRoundRobin, relative to the others' (a
	// backend of Weight 3 gets three picks for every one of Weight 1); other algorithms ignore
	// it. At most 1,000,000. Default: 1. Take a backend out of rotation with Balancer.Drain,
	// not with a weight.
	Weight int
}

// WhenNoneUp says what a [Balancer] does when no backend is up.
type WhenNoneUp uint8

const (
	// FailOpen picks among every backend that is not draining, as if all were up: a broken
	// health check (all backends "down" while they serve) must not take the service down.
	// AWS ALB and Envoy do the same. Stats counts these picks in FailOpenPicks.
	FailOpen WhenNoneUp = iota
	// FailClosed makes Pick return ErrNoBackend (the proxy answers 503).
	FailClosed
)

// State is a backend's place in rotation, as Hooks.OnStateChange reports it.
type State uint8

const (
	// Up: picked.
	Up State = iota
	// Down: its health check failed (or Balancer.SetUp said so).
	Down
	// Ejected: its requests failed, until its cooldown ends (Config.Eject).
	Ejected
	// Draining: out of rotation for good (Balancer.Drain), its requests in flight finishing.
	Draining
)

// String returns "up", "down", "ejected" or "draining".
func (s State) String() string {
	switch s {
	case Up:
		return "up"
	case Down:
		return "down"
	case Ejected:
		return "ejected"
	case Draining:
		return "draining"
	}
	return fmt.Sprintf("State(%d)", s)
}

// Hooks are optional functions called as the set changes. They are called synchronously,
// while the set is being changed: they must be quick and must not call the Balancer. The
// zero value calls nothing.
type Hooks struct {
	// OnStateChange follows each change of a backend's state. ctx is context.Background():
	// changes come from health checks and timers, not from one request.
	OnStateChange func(ctx context.Context, id string, from, to State)
}

// Config configures a [Balancer]. The zero value is ready to use: round robin, failing open.
type Config struct {
	// Algorithm picks among the routable backends. Default: RoundRobin.
	Algorithm Algorithm
	// WhenNoneUp says what happens when no backend is up. Default: FailOpen.
	WhenNoneUp WhenNoneUp
	// TrustedProxies are the peers whose forwarding header tells IPHash the client's address
	// (the same parser as package ratelimit's). Default: none (the peer's address is the
	// client's: behind a proxy, list it here, or every client hashes to one backend).
	TrustedProxies []netip.Prefix
	// ForwardedHeader is the header read from trusted proxies: "X-Forwarded-For" or
	// "Forwarded". Default: "X-Forwarded-For".
	ForwardedHeader string
	// SlowStart, when set, ramps up a backend that joins the set or comes back into rotation:
	// its share of the picks grows from a tenth to the full share over this long, so that a
	// cold instance (empty caches, a JIT, a connection pool to fill) is not flooded at once.
	// IPHash ignores it: a client's backend does not change with warmth. Default: 0 (off).
	SlowStart time.Duration
	// Eject configures passive health: backends whose requests keep failing are taken out of
	// rotation for a cooldown. Default: 5 consecutive failures, 30s, at most half the set.
	Eject EjectConfig
	// Logger receives the set's state changes (a backend up, down, ejected, draining; none
	// up). Default: slog.Default().
	Logger *slog.Logger
	// Hooks observe the set's changes. Default: none.
	Hooks Hooks
}

// Errors of the package.
var (
	// ErrInvalidConfig is wrapped by the errors of New and Update for a configuration that
	// cannot work, naming the field at fault.
	ErrInvalidConfig = errors.New("balancer: invalid config")
	// ErrNoBackend is returned by Pick when no backend may be picked: the set is empty, every
	// backend is draining, or none is up and Config.WhenNoneUp is FailClosed.
	ErrNoBackend = errors.New("balancer: no backend available")
	// ErrUnknownBackend is returned for an ID that is not in the set.
	ErrUnknownBackend = errors.New("balancer: unknown backend")
	// ErrNoClientIP is returned by an IPHash Pick for a request whose client address cannot
	// be read (RemoteAddr empty or not an IP address, as on a unix socket).
	ErrNoClientIP = clientip.ErrNoClientIP
)

// maxWeight bounds a Backend's Weight, so that a cycle's sums stay far from overflow.
const maxWeight = 1_000_000

// Balancer picks a backend for each request from a set of backends, skipping those that are
// down or draining.
//
// Picks take no lock and allocate nothing: they read an immutable snapshot of the set, which
// Update, SetUp and Drain replace. The zero value is not usable; create a Balancer with [New].
// It is safe for concurrent use.
type Balancer struct {
	cfg    Config
	logger *slog.Logger
	ip     *clientip.Resolver

	snap atomic.Pointer[snapshot]
	// next is the turn of RoundRobin, WeightedRoundRobin and LeastConnections' ties. Every
	// pick writes it: it has a cache line of its own, so that reading snap costs no miss.
	_    [64]byte
	next atomic.Uint64
	_    [56]byte

	mu        sync.Mutex // serializes the writers of the set
	nodes     map[string]*node
	warmTimer *time.Timer // republishes once slow starts end

	noBackend, failOpen, ejections, ejectRefused atomic.Uint64
}

// New returns a Balancer over backends. Its error wraps ErrInvalidConfig and names the field
// at fault.
func New(cfg Config, backends ...Backend) (*Balancer, error) {
	if int(cfg.Algorithm) >= len(algorithms) {
		return nil, fmt.Errorf("%w: Config.Algorithm %d is not an algorithm", ErrInvalidConfig, cfg.Algorithm)
	}
	if cfg.WhenNoneUp > FailClosed {
		return nil, fmt.Errorf("%w: Config.WhenNoneUp %d is neither FailOpen nor FailClosed", ErrInvalidConfig, cfg.WhenNoneUp)
	}
	if cfg.SlowStart < 0 {
		return nil, fmt.Errorf("%w: Config.SlowStart %v is negative", ErrInvalidConfig, cfg.SlowStart)
	}
	if err := cfg.Eject.validate(); err != nil {
		return nil, err
	}
	ip, err := clientip.New(clientip.Config{TrustedProxies: cfg.TrustedProxies, Header: cfg.ForwardedHeader})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	b := &Balancer{cfg: cfg, logger: logger, ip: ip, nodes: map[string]*node{}}
	b.next.Store(rand.Uint64())
	if err := b.Update(backends...); err != nil {
		return nil, err
	}
	return b, nil
}

// Update replaces the set with backends. A backend that stays keeps its state (up or down,
// draining, requests in flight); a new one starts up. Its error wraps ErrInvalidConfig for a
// backend without an ID, a repeated ID or a weight out of range; the set is then unchanged.
func (b *Balancer) Update(backends ...Backend) error {
	seen := make(map[string]bool, len(backends))
	for i, be := range backends {
		switch {
		case be.ID == "":
			return fmt.Errorf("%w: backends[%d].ID is empty", ErrInvalidConfig, i)
		case seen[be.ID]:
			return fmt.Errorf("%w: backends[%d].ID %q is repeated", ErrInvalidConfig, i, be.ID)
		case be.Weight < 0 || be.Weight > maxWeight:
			return fmt.Errorf("%w: backends[%d].Weight %d is not in [0, %d]", ErrInvalidConfig, i, be.Weight, maxWeight)
		}
		seen[be.ID] = true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	nodes := make(map[string]*node, len(backends))
	for _, be := range backends {
		n := b.nodes[be.ID]
		if n == nil {
			n = newNode(be.ID)
		}
		n.weight = max(be.Weight, 1)
		nodes[be.ID] = n
	}
	b.nodes = nodes
	b.publish()
	return nil
}

// SetUp marks the backend id up or down: a backend that is down is picked only when none is up
// and Config.WhenNoneUp is FailOpen. Health checks call it; so may an operator.
func (b *Balancer) SetUp(id string, up bool) error {
	return b.set(id, func(n *node) { n.down = !up })
}

// Drain takes the backend id out of rotation (draining) or puts it back: a draining backend
// gets no new picks, under any algorithm and even when failing open, while its requests in
// flight finish (see Stats). Drain a backend before removing it or shutting it down.
func (b *Balancer) Drain(id string, draining bool) error {
	return b.set(id, func(n *node) { n.draining = draining })
}

func (b *Balancer) set(id string, change func(*node)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.nodes[id]
	if n == nil {
		return fmt.Errorf("%w: %q", ErrUnknownBackend, id)
	}
	before := *n.state()
	change(n)
	if after := *n.state(); after != before {
		b.logger.Info("balancer: backend state changed", "backend", id, "from", before.String(), "to", after.String())
		b.changed(id, before, after)
		b.publish()
	}
	return nil
}

// Pick is a backend picked for one request. Call Done exactly once when the request is over
// (its response body closed, for a streamed response): LeastConnections and PowerOfTwo count
// the requests in flight from Pick to Done. The other algorithms count nothing per pick (one
// atomic add is a round robin pick's whole cost), but call Done all the same.
//
// The zero value picks nothing. A Pick is a small value, safe to copy, but Done is not
// idempotent: call it once per pick made, not once per copy.
type Pick struct {
	n       *node
	b       *Balancer
	counted bool
}

// ID returns the picked backend's ID; "" for the zero Pick.
func (p Pick) ID() string {
	if p.n == nil {
		return ""
	}
	return p.n.id
}

// Done ends the request.
func (p Pick) Done() {
	if p.counted {
		p.n.inflight.Add(-1)
	}
}

// Pick picks a backend for r (read only by IPHash, for the client's address; it may be nil
// otherwise). Its error is ErrNoBackend when none may be picked, or ErrNoClientIP.
func (b *Balancer) Pick(r *http.Request) (Pick, error) {
	return b.pick(r, b.cfg.Algorithm == LeastConnections || b.cfg.Algorithm == PowerOfTwo)
}

// pick is Pick, counting the pick in flight when track is set (the algorithms that read the
// counts need it; a Proxy tracks every pick, for Stats).
func (b *Balancer) pick(r *http.Request, track bool) (Pick, error) {
	s := b.snap.Load()
	if len(s.up) == 0 {
		b.noBackend.Add(1)
		return Pick{}, ErrNoBackend
	}
	if s.open {
		b.failOpen.Add(1)
	}
	if b.cfg.Algorithm == IPHash {
		addr, err := b.ip.Addr(r)
		if err != nil {
			return Pick{}, err
		}
		return b.picked(s.byHash(hashAddr(addr)), track), nil // no slow start: affinity first
	}
	n := b.choose(s)
	if s.warmUntil != 0 && b.cold(n, s) {
		n = b.choose(s) // a second choice, taken whatever its warmth
	}
	return b.picked(n, track), nil
}

// picked returns the Pick of n, counted in flight when track is set.
func (b *Balancer) picked(n *node, track bool) Pick {
	if track {
		n.inflight.Add(1)
		n.picks.Add(1)
	}
	return Pick{n: n, b: b, counted: track}
}

// choose picks a node of s.up by the algorithm (IPHash aside).
func (b *Balancer) choose(s *snapshot) *node {
	switch b.cfg.Algorithm {
	case RoundRobin:
		return s.up[b.next.Add(1)%uint64(len(s.up))]
	case WeightedRoundRobin:
		return s.up[s.cycle[b.next.Add(1)%uint64(len(s.cycle))]]
	case Random:
		return s.up[rand.N(len(s.up))]
	case LeastConnections:
		return s.leastLoaded(b.next.Add(1))
	}
	return s.twoChoices()
}

// cold reports whether n, in slow start, turns this pick down: it takes a share of its picks
// that grows from a tenth to all of them over Config.SlowStart.
func (b *Balancer) cold(n *node, s *snapshot) bool {
	since := n.since.Load()
	if since == 0 {
		return false
	}
	now := time.Now().UnixNano()
	if now >= s.warmUntil {
		return false
	}
	warmth := max(0.1, float64(now-since)/float64(b.cfg.SlowStart))
	return warmth < 1 && rand.Float64() >= warmth
}

// BackendStats is the state of one backend.
type BackendStats struct {
	ID       string
	Weight   int
	Up       bool  // not marked down by its health check
	Ejected  bool  // out of rotation until its cooldown ends: its requests failed
	Draining bool  // out of rotation
	InFlight int64 // picks not Done yet: a Proxy's (any algorithm), or LeastConnections' and PowerOfTwo's
	// Picks counts the picks counted in flight (the same ones) since the backend joined.
	Picks uint64
}

// Stats is a snapshot of a Balancer: a plain value.
type Stats struct {
	// Backends are the set's backends, by ID.
	Backends []BackendStats
	// NoBackend counts the Picks that found no backend to pick.
	NoBackend uint64
	// FailOpenPicks counts the picks made while no backend was up (Config.WhenNoneUp FailOpen).
	FailOpenPicks uint64
	// Ejections counts the backends ejected by their failed requests; EjectionsRefused, the
	// ejections that Config.Eject.MaxEjected refused.
	Ejections, EjectionsRefused uint64
}

// Stats returns the Balancer's state and counters.
func (b *Balancer) Stats() Stats {
	s := b.snap.Load()
	st := Stats{Backends: make([]BackendStats, len(s.all)), NoBackend: b.noBackend.Load(), FailOpenPicks: b.failOpen.Load(),
		Ejections: b.ejections.Load(), EjectionsRefused: b.ejectRefused.Load()}
	for i, n := range s.all {
		st.Backends[i] = BackendStats{ID: n.id, Weight: s.weights[i], Up: !s.states[i].down, Ejected: s.states[i].ejected,
			Draining: s.states[i].draining,
			InFlight: n.inflight.Load(), Picks: n.picks.Load()}
	}
	return st
}

// Algorithm returns the Balancer's algorithm.
func (b *Balancer) Algorithm() Algorithm { return b.cfg.Algorithm }

// pickOther picks a routable backend whose ID is not in tried, for a retry: IPHash's next best
// for the client, the next in turn otherwise. Its error is ErrNoBackend when every one was
// tried.
func (b *Balancer) pickOther(r *http.Request, tried []string, track bool) (Pick, error) {
	s := b.snap.Load()
	var n *node
	if b.cfg.Algorithm == IPHash {
		addr, err := b.ip.Addr(r)
		if err != nil {
			return Pick{}, err
		}
		key := hashAddr(addr)
		var top uint64
		for i, c := range s.all {
			if s.routes[i] && !slices.Contains(tried, c.id) {
				if score := mix(key ^ c.hash); n == nil || score > top {
					n, top = c, score
				}
			}
		}
	} else if len(s.up) > 0 {
		start := b.next.Load() // the turn stays the next request's
		for k := range uint64(len(s.up)) {
			if c := s.up[(start+k)%uint64(len(s.up))]; !slices.Contains(tried, c.id) {
				n = c
				break
			}
		}
	}
	if n == nil {
		return Pick{}, ErrNoBackend
	}
	return b.picked(n, track), nil
}

// changed calls Hooks.OnStateChange when a backend's State changed. b.mu is held.
func (b *Balancer) changed(id string, before, after nodeState) {
	if h := b.cfg.Hooks.OnStateChange; h != nil && before.state() != after.state() {
		h(context.Background(), id, before.state(), after.state())
	}
}

// isUp reports whether backend id is in the set and not marked down.
func (b *Balancer) isUp(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.nodes[id]
	return n != nil && !n.down
}
