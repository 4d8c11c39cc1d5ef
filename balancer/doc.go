// Package balancer spreads requests over a set of backends: the article's round robin, least
// connections, IP hash (session affinity) and weighted round robin, plus power of two choices
// and random, over backends that are up, down or draining.
//
//	b, _ := balancer.New(balancer.Config{Algorithm: balancer.LeastConnections},
//		balancer.Backend{ID: "10.0.0.1:8080"}, balancer.Backend{ID: "10.0.0.2:8080"})
//	p, err := b.Pick(r) // err: ErrNoBackend
//	defer p.Done()      // once the request is over
//	... send r to p.ID() ...
//
// # Picks
//
// A [Balancer] keeps an immutable snapshot of its set behind an atomic pointer: a pick takes
// no lock and allocates nothing, whatever the algorithm, and [Balancer.Update],
// [Balancer.SetUp] and [Balancer.Drain] publish a new snapshot. A backend that stays in the set
// keeps its requests in flight across snapshots, so LeastConnections and PowerOfTwo count them
// from [Balancer.Pick] to [Pick.Done], which must run exactly once per pick (after the
// response body is closed, for a streamed response).
//
// RoundRobin starts at a random backend, so that balancers started together do not all hit the
// first one. WeightedRoundRobin follows one precomputed cycle of NGINX's smooth algorithm: each
// backend gets exactly its Weight of picks per cycle, spread out. IPHash uses rendezvous
// hashing over the backends' IDs, so adding or removing one of N backends moves only about
// 1/N of the clients (never mod-N's nearly all), a backend that goes down moves only its own
// clients, and every balancer with the same set agrees; the client's address comes from the
// same trusted-proxy parser as package ratelimit's (the peer unless Config.TrustedProxies
// vouch for a forwarding header).
//
// # Up, down and draining
//
// A backend is up, down ([Balancer.SetUp]) or draining ([Balancer.Drain]); only those up are
// picked. When none is up, Config.WhenNoneUp decides: FailOpen (the default, as AWS ALB and
// Envoy do) picks among all backends not draining, so that a broken health check does not take
// the service down; FailClosed answers ErrNoBackend. A draining backend is never picked, even
// failing open: drain a backend before it leaves.
//
// # Defaults
//
// The zero Config is round robin, failing open, trusting no proxy. A Backend's Weight defaults
// to 1.
package balancer
