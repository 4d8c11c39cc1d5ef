package balancer

import (
	"fmt"
	"time"
)

// EjectConfig configures passive health: a backend whose requests keep failing is taken out of
// rotation for a while, without waiting for its health check (which, at the article's 30 s
// interval and 3 failures, takes about 95 s to notice a dead backend). The zero value is the
// default: 5 consecutive failures eject a backend for 30 s, as the article's circuit breaker
// does, and at most half the backends are ejected at once.
type EjectConfig struct {
	// Failures is how many consecutive failed requests eject a backend. A failure is what
	// Pick.Observe reports as one; the Proxy reports connection errors, timeouts and 502, 503
	// and 504 responses, never a client's cancellation or another status, so that clients
	// cannot eject backends at will with requests that make them answer 500. Default: 5.
	Failures int
	// Cooldown is how long an ejected backend gets no picks; it is then picked again, and
	// Failures more consecutive failures eject it again. Default: 30s.
	Cooldown time.Duration
	// MaxEjected is the largest share of the set out of rotation (down, ejected or draining)
	// after an ejection; one backend may always be ejected, but never the last one in
	// rotation: when the backends fail together, the fault is likely not theirs, and ejecting
	// them all would only move the load onto the last ones. Default: 0.5.
	MaxEjected float64
	// Disable turns passive ejection off. Default: false.
	Disable bool
}

func (c *EjectConfig) validate() error {
	switch {
	case c.Failures < 0:
		return fmt.Errorf("%w: Config.Eject.Failures %d is negative", ErrInvalidConfig, c.Failures)
	case c.Cooldown < 0:
		return fmt.Errorf("%w: Config.Eject.Cooldown %v is negative", ErrInvalidConfig, c.Cooldown)
	case c.MaxEjected < 0 || c.MaxEjected > 1:
		return fmt.Errorf("%w: Config.Eject.MaxEjected %v is not in [0, 1]", ErrInvalidConfig, c.MaxEjected)
	}
	if c.Failures == 0 {
		c.Failures = 5
	}
	if c.Cooldown == 0 {
		c.Cooldown = 30 * time.Second
	}
	if c.MaxEjected == 0 {
		c.MaxEjected = 0.5
	}
	return nil
}

// Observe reports how the picked backend served the request: ok false for a failure that is
// the backend's (it could not be reached, timed out, or answered 502, 503 or 504). After
// Config.Eject.Failures consecutive failures the backend is ejected for Config.Eject.Cooldown.
// A Proxy observes its picks itself; call Observe when you send the requests yourself, in
// addition to Done.
func (p Pick) Observe(ok bool) {
	if p.n == nil || p.b == nil {
		return
	}
	if ok {
		if p.n.fails.Load() != 0 { // no write while all is well: the line stays shared
			p.n.fails.Store(0)
		}
		return
	}
	if p.n.fails.Add(1) == int32(p.b.cfg.Eject.Failures) && !p.b.cfg.Eject.Disable {
		p.b.eject(p.n)
	}
}

// eject takes n out of rotation for the cooldown, unless the cap is reached.
func (b *Balancer) eject(n *node) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.nodes[n.id] != n || n.ejected {
		return
	}
	// Backends out for any reason count against the cap, and the last one in rotation is
	// never ejected: ejecting it would only turn failures into an outage.
	out := 0
	for _, o := range b.nodes {
		if !o.routable() {
			out++
		}
	}
	if out >= max(1, int(b.cfg.Eject.MaxEjected*float64(len(b.nodes)))) || out >= len(b.nodes)-1 {
		b.ejectRefused.Add(1)
		n.fails.Store(0) // counted again from zero: the cap may have room then
		return
	}
	before := n.nodeState
	n.ejected = true
	b.changed(n.id, before, n.nodeState)
	b.ejections.Add(1)
	b.logger.Warn("balancer: backend ejected: its requests failed", "backend", n.id,
		"failures", b.cfg.Eject.Failures, "cooldown", b.cfg.Eject.Cooldown)
	b.publish()
	time.AfterFunc(b.cfg.Eject.Cooldown, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if n.ejected {
			before := n.nodeState
			n.ejected = false
			b.changed(n.id, before, n.nodeState)
			n.fails.Store(0)
			b.logger.Info("balancer: backend back after its cooldown", "backend", n.id)
			if b.nodes[n.id] == n {
				b.publish()
			}
		}
	})
}
