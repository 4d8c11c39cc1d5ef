// Load balancer picks side by side: outgrow/balancer against grpc-go's pickers (round_robin and
// least_request_experimental, built through grpc-go's balancer API over a fake ClientConn whose
// SubConns are all READY) and against a mutex-guarded NGINX smooth weighted round robin, the
// implementation most Go code bases carry.
//
// Every balancer holds the same 10 backends (weights 1, 2, 3, 1, 2, ... where weighted). Each
// benchmark runs one pick at a time (mode=serial) and from every goroutine at once
// (mode=parallel); run them at -cpu 1,2. A pick includes its Done: outgrow's Pick.Done, and
// grpc-go's PickResult.Done when the picker returns one (least_request counts requests in flight
// from Pick to Done; round_robin returns none).
//
// buraksezer/consistent, the anchor for hash lookups, is not served by the module proxy this
// module is built from, so there is no hash comparison here.
package benchmarks

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"

	grpcbalancer "google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/leastrequest"
	"google.golang.org/grpc/balancer/roundrobin"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"

	"github.com/outgrow/outgrow/balancer"
)

// lbBackends is the size of every balancer's set.
const lbBackends = 10

func lbBackendSet() []balancer.Backend {
	set := make([]balancer.Backend, lbBackends)
	for i := range set {
		set[i] = balancer.Backend{ID: fmt.Sprintf("10.0.0.%d:8080", i+1), Weight: 1 + i%3}
	}
	return set
}

func outgrowBalancer(tb testing.TB, alg balancer.Algorithm) *balancer.Balancer {
	bal, err := balancer.New(balancer.Config{Algorithm: alg, Logger: quiet}, lbBackendSet()...)
	if err != nil {
		tb.Fatal(err)
	}
	return bal
}

// pickFunc makes one pick and ends it.
type pickFunc func() error

func outgrowPick(bal *balancer.Balancer, r *http.Request) pickFunc {
	return func() error {
		p, err := bal.Pick(r)
		if err != nil {
			return err
		}
		p.Done()
		return nil
	}
}

func grpcPick(p grpcbalancer.Picker) pickFunc {
	return func() error {
		res, err := p.Pick(grpcbalancer.PickInfo{})
		if err != nil {
			return err
		}
		if res.Done != nil {
			res.Done(grpcbalancer.DoneInfo{})
		}
		return nil
	}
}

// benchPicks runs the pick of each lib under mode=serial and mode=parallel. Each lib's pick is
// made (its balancer built) once per sub-benchmark, outside the timer.
func benchPicks(b *testing.B, libs []string, make func(b *testing.B, lib string) pickFunc) {
	b.Run("mode=serial", func(b *testing.B) {
		for _, lib := range libs {
			b.Run("lib="+lib, func(b *testing.B) {
				pick := make(b, lib)
				b.ReportAllocs()
				for b.Loop() {
					if err := pick(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	})
	b.Run("mode=parallel", func(b *testing.B) {
		for _, lib := range libs {
			b.Run("lib="+lib, func(b *testing.B) {
				pick := make(b, lib)
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := pick(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	})
}

// BenchmarkBalancerRoundRobin: a round robin pick over 10 backends. outgrow is RoundRobin;
// grpc is the picker of grpc-go's round_robin balancer (endpointsharding's round robin over one
// pick_first child per backend).
func BenchmarkBalancerRoundRobin(b *testing.B) {
	benchPicks(b, []string{"outgrow", "grpc"}, func(b *testing.B, lib string) pickFunc {
		if lib == "grpc" {
			return grpcPick(grpcPicker(b, roundrobin.Name, nil))
		}
		return outgrowPick(outgrowBalancer(b, balancer.RoundRobin), nil)
	})
}

// BenchmarkBalancerWeighted: a weighted round robin pick over 10 backends of weights 1 to 3.
// outgrow is WeightedRoundRobin (one precomputed smooth cycle); swrr-mutex is NGINX's smooth
// weighted round robin computed pick by pick under a sync.Mutex.
func BenchmarkBalancerWeighted(b *testing.B) {
	benchPicks(b, []string{"outgrow", "swrr-mutex"}, func(b *testing.B, lib string) pickFunc {
		if lib == "swrr-mutex" {
			s := newMutexSWRR(lbBackendSet())
			return func() error {
				if s.next() == "" {
					return fmt.Errorf("swrr: no backend")
				}
				return nil
			}
		}
		return outgrowPick(outgrowBalancer(b, balancer.WeightedRoundRobin), nil)
	})
}

// BenchmarkBalancerLeastRequest: a pick and its Done over 10 backends, each pick counted in
// flight until its Done. outgrow is PowerOfTwo (two distinct backends sampled, the one with
// fewer in flight taken: the algorithm of grpc's), outgrow-leastconn is LeastConnections (a scan for the fewest, ties in
// turn); grpc is grpc-go's least_request_experimental picker with choiceCount 2 (two samples,
// not necessarily distinct).
//
// Under mode=serial and mode=parallel each Done follows its pick at once, so the counts read by
// a pick are 0 (or, in parallel, the other goroutines' one): LeastConnections' scan stops at the
// first backend it reads with none in flight. Under mode=held each goroutine keeps its latest 16
// picks open, ending the oldest before each new pick, as a server with requests in flight does:
// the counts differ, and LeastConnections reads all 10.
func BenchmarkBalancerLeastRequest(b *testing.B) {
	libs := []string{"outgrow", "outgrow-leastconn", "grpc"}
	outgrowAlg := map[string]balancer.Algorithm{"outgrow": balancer.PowerOfTwo, "outgrow-leastconn": balancer.LeastConnections}
	lrConfig := json.RawMessage(`{"choiceCount": 2}`)
	benchPicks(b, libs, func(b *testing.B, lib string) pickFunc {
		if alg, ok := outgrowAlg[lib]; ok {
			return outgrowPick(outgrowBalancer(b, alg), nil)
		}
		return grpcPick(grpcPicker(b, leastrequest.Name, lrConfig))
	})
	const held = 16
	b.Run("mode=held", func(b *testing.B) {
		for _, lib := range libs {
			b.Run("lib="+lib, func(b *testing.B) {
				// newPicker returns one goroutine's pick: it ends the oldest of the picks it
				// holds, then picks.
				var newPicker func() pickFunc
				if alg, ok := outgrowAlg[lib]; ok {
					bal := outgrowBalancer(b, alg)
					newPicker = func() pickFunc {
						var open [held]balancer.Pick // the zero Pick's Done does nothing
						i := 0
						return func() error {
							open[i].Done()
							p, err := bal.Pick(nil)
							open[i] = p
							i = (i + 1) % held
							return err
						}
					}
				} else {
					picker := grpcPicker(b, leastrequest.Name, lrConfig)
					newPicker = func() pickFunc {
						var open [held]func(grpcbalancer.DoneInfo)
						i := 0
						return func() error {
							if open[i] != nil {
								open[i](grpcbalancer.DoneInfo{})
							}
							res, err := picker.Pick(grpcbalancer.PickInfo{})
							open[i] = res.Done
							i = (i + 1) % held
							return err
						}
					}
				}
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					pick := newPicker()
					for pb.Next() {
						if err := pick(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	})
}

// mutexSWRR is NGINX's smooth weighted round robin as Go code bases usually write it: on each
// pick, under one mutex, every backend's current weight grows by its weight, the largest current
// is picked and the total taken off it.
type mutexSWRR struct {
	mu    sync.Mutex
	peers []swrrPeer
}

type swrrPeer struct {
	id              string
	weight, current int
}

func newMutexSWRR(set []balancer.Backend) *mutexSWRR {
	s := &mutexSWRR{}
	for _, be := range set {
		s.peers = append(s.peers, swrrPeer{id: be.ID, weight: be.Weight})
	}
	return s
}

func (s *mutexSWRR) next() string {
	s.mu.Lock()
	total, best := 0, -1
	for i := range s.peers {
		p := &s.peers[i]
		p.current += p.weight
		total += p.weight
		if best < 0 || p.current > s.peers[best].current {
			best = i
		}
	}
	s.peers[best].current -= total
	id := s.peers[best].id
	s.mu.Unlock()
	return id
}

// grpcConn is the least of a grpc-go balancer.ClientConn that a balancer needs to be driven
// without a channel: it hands out fake SubConns and keeps the latest Picker. The embedded
// interface (required by grpc-go) is nil: the methods not written here are never called.
type grpcConn struct {
	grpcbalancer.ClientConn
	subConns []*grpcSubConn
	state    grpcbalancer.State
}

func (c *grpcConn) NewSubConn(_ []resolver.Address, opts grpcbalancer.NewSubConnOptions) (grpcbalancer.SubConn, error) {
	sc := &grpcSubConn{listener: opts.StateListener}
	c.subConns = append(c.subConns, sc)
	return sc, nil
}

func (c *grpcConn) UpdateState(s grpcbalancer.State)                         { c.state = s }
func (c *grpcConn) ResolveNow(resolver.ResolveNowOptions)                    {}
func (c *grpcConn) RemoveSubConn(grpcbalancer.SubConn)                       {}
func (c *grpcConn) UpdateAddresses(grpcbalancer.SubConn, []resolver.Address) {}

// grpcSubConn is a SubConn that connects nowhere; the test reports its state through the
// listeners the balancer gave it.
type grpcSubConn struct {
	grpcbalancer.SubConn
	listener, health func(grpcbalancer.SubConnState)
}

func (sc *grpcSubConn) Connect()                                                 {}
func (sc *grpcSubConn) Shutdown()                                                {}
func (sc *grpcSubConn) UpdateAddresses([]resolver.Address)                       {}
func (sc *grpcSubConn) RegisterHealthListener(f func(grpcbalancer.SubConnState)) { sc.health = f }

// grpcPicker builds grpc-go's balancer name (with the service config cfg, parsed by its builder,
// when not nil) over lbBackends endpoints, reports every SubConn CONNECTING then READY (and
// healthy, as pick_first asks under these balancers), and returns the READY picker.
func grpcPicker(tb testing.TB, name string, cfg json.RawMessage) grpcbalancer.Picker {
	builder := grpcbalancer.Get(name)
	if builder == nil {
		tb.Fatalf("grpc balancer %q is not registered", name)
	}
	var lbCfg serviceconfig.LoadBalancingConfig
	if cfg != nil {
		var err error
		if lbCfg, err = builder.(grpcbalancer.ConfigParser).ParseConfig(cfg); err != nil {
			tb.Fatal(err)
		}
	}
	cc := &grpcConn{}
	bal := builder.Build(cc, grpcbalancer.BuildOptions{})
	tb.Cleanup(bal.Close)
	var state resolver.State
	for _, be := range lbBackendSet() {
		state.Endpoints = append(state.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{{Addr: be.ID}}})
	}
	if err := bal.UpdateClientConnState(grpcbalancer.ClientConnState{ResolverState: state, BalancerConfig: lbCfg}); err != nil {
		tb.Fatal(err)
	}
	if len(cc.subConns) != lbBackends {
		tb.Fatalf("grpc %s made %d SubConns for %d endpoints", name, len(cc.subConns), lbBackends)
	}
	for _, sc := range cc.subConns {
		sc.listener(grpcbalancer.SubConnState{ConnectivityState: connectivity.Connecting})
		sc.listener(grpcbalancer.SubConnState{ConnectivityState: connectivity.Ready})
		if sc.health != nil {
			sc.health(grpcbalancer.SubConnState{ConnectivityState: connectivity.Ready})
		}
	}
	if cc.state.ConnectivityState != connectivity.Ready || cc.state.Picker == nil {
		tb.Fatalf("grpc %s is %v after every SubConn became READY", name, cc.state.ConnectivityState)
	}
	return cc.state.Picker
}

// TestBalancerAnchors checks the anchors measured above: grpc-go's pickers spread over all 10
// READY SubConns, and the mutex SWRR gives each backend its weight's share of a cycle.
func TestBalancerAnchors(t *testing.T) {
	for _, name := range []string{roundrobin.Name, leastrequest.Name} {
		var cfg json.RawMessage
		if name == leastrequest.Name {
			cfg = json.RawMessage(`{"choiceCount": 2}`)
		}
		p := grpcPicker(t, name, cfg)
		seen := map[grpcbalancer.SubConn]int{}
		for range 100 * lbBackends {
			res, err := p.Pick(grpcbalancer.PickInfo{})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			seen[res.SubConn]++
			if res.Done != nil {
				res.Done(grpcbalancer.DoneInfo{})
			}
		}
		if len(seen) != lbBackends {
			t.Errorf("%s picked %d of %d SubConns", name, len(seen), lbBackends)
		}
	}

	set := lbBackendSet()
	s := newMutexSWRR(set)
	counts := map[string]int{}
	total := 0
	for _, be := range set {
		total += be.Weight
	}
	for range total {
		counts[s.next()]++
	}
	for _, be := range set {
		if counts[be.ID] != be.Weight {
			t.Errorf("swrr gave %s %d picks in a cycle of %d, want %d", be.ID, counts[be.ID], total, be.Weight)
		}
	}
}
