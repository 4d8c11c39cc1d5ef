package balancer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outgrow/outgrow/internal/risefall"
)

// CheckConfig configures a [Checker]. The zero value is the article's ALB-style check: GET
// /api/health every 30s with a 5s timeout, up after 2 consecutive successes, down after 3
// consecutive failures.
type CheckConfig struct {
	// Path is the health endpoint of every backend, joined to its base URL. Default:
	// "/api/health" (package health serves it).
	Path string
	// Interval is the time between two probes of a backend, give or take a tenth (jitter,
	// so that balancers started together do not probe in step). Default: 30s.
	Interval time.Duration
	// Timeout bounds one probe; a probe that times out fails. At most Interval. Default: 5s,
	// or Interval when shorter.
	Timeout time.Duration
	// HealthyThreshold is how many consecutive successful probes bring a down backend up.
	// Default: 2.
	HealthyThreshold int
	// UnhealthyThreshold is how many consecutive failed probes take a backend down: a single
	// failed probe never does. Default: 3.
	UnhealthyThreshold int
	// Client sends the probes; a 2xx answer is a success, anything else or no answer a
	// failure. Default: a client of its own, which follows no redirect.
	Client *http.Client
	// Logger receives the Checker's failures to start probes. Default: the Balancer's logger.
	Logger *slog.Logger
}

// Checker probes the backends of a [Balancer] (active health) and marks them up or down with
// [Balancer.SetUp] when their probes cross the thresholds; it owns their up or down: a
// backend set down by hand comes back up with its next successful probe. A backend starts up, before its
// first probes: a checker that cannot reach anything takes the backends down only after
// UnhealthyThreshold probes each.
//
// The zero value is not usable; create a Checker with [NewChecker] and run it with Run. It is
// safe for concurrent use.
type Checker struct {
	b      *Balancer
	cfg    CheckConfig
	policy risefall.Policy
	logger *slog.Logger
	owned  *http.Transport // the default client's, closed by Run

	mu       sync.Mutex
	machines map[string]*risefall.Machine
	running  atomic.Bool

	probes, failed atomic.Uint64
}

// NewChecker returns a Checker of b's backends. Its error wraps ErrInvalidConfig and names the
// field at fault.
func NewChecker(b *Balancer, cfg CheckConfig) (*Checker, error) {
	switch {
	case b == nil:
		return nil, fmt.Errorf("%w: the Balancer is nil", ErrInvalidConfig)
	case cfg.Interval < 0 || cfg.Timeout < 0:
		return nil, fmt.Errorf("%w: CheckConfig.Interval %v or Timeout %v is negative", ErrInvalidConfig, cfg.Interval, cfg.Timeout)
	case cfg.HealthyThreshold < 0 || cfg.UnhealthyThreshold < 0:
		return nil, fmt.Errorf("%w: CheckConfig.HealthyThreshold %d or UnhealthyThreshold %d is negative", ErrInvalidConfig,
			cfg.HealthyThreshold, cfg.UnhealthyThreshold)
	case cfg.Path != "" && !strings.HasPrefix(cfg.Path, "/"):
		return nil, fmt.Errorf("%w: CheckConfig.Path %q does not start with /", ErrInvalidConfig, cfg.Path)
	}
	if cfg.Path == "" {
		cfg.Path = "/api/health"
	}
	if cfg.Interval == 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = min(5*time.Second, cfg.Interval)
	}
	if cfg.Timeout > cfg.Interval {
		return nil, fmt.Errorf("%w: CheckConfig.Timeout %v is longer than Interval %v", ErrInvalidConfig, cfg.Timeout, cfg.Interval)
	}
	if cfg.HealthyThreshold == 0 {
		cfg.HealthyThreshold = 2
	}
	if cfg.UnhealthyThreshold == 0 {
		cfg.UnhealthyThreshold = 3
	}
	c := &Checker{b: b, cfg: cfg, logger: cfg.Logger, machines: map[string]*risefall.Machine{},
		policy: risefall.Policy{Rise: cfg.HealthyThreshold, Fall: cfg.UnhealthyThreshold, Start: risefall.Counted}}
	if c.logger == nil {
		c.logger = b.logger
	}
	if c.cfg.Client == nil {
		c.owned = http.DefaultTransport.(*http.Transport).Clone()
		c.cfg.Client = &http.Client{Transport: c.owned, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a redirect is an answer, and not a 2xx
		}}
	}
	return c, nil
}

// Run probes the backends until ctx ends: every backend at once, then every Interval (with
// jitter). It returns nil once ctx ended and the probes in progress returned; its error wraps
// ErrInvalidConfig when another Run of the Checker is in progress.
func (c *Checker) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return fmt.Errorf("%w: Checker.Run is already running", ErrInvalidConfig)
	}
	defer c.running.Store(false)
	if c.owned != nil {
		defer c.owned.CloseIdleConnections()
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		c.round(ctx)
		jitter := time.Duration(rand.Int64N(int64(c.cfg.Interval)/5+1)) - c.cfg.Interval/10
		timer.Reset(c.cfg.Interval + jitter)
	}
}

// round probes every backend of the set once, at the same time, and applies the results.
func (c *Checker) round(ctx context.Context) {
	s := c.b.snap.Load()
	var wg sync.WaitGroup
	for _, n := range s.all {
		wg.Go(func() {
			ok := c.probe(ctx, n)
			if ctx.Err() == nil { // a probe cut short by Run's end says nothing of the backend
				c.record(n.id, ok)
			}
		})
	}
	wg.Wait()
	// Forget the backends that left the set.
	c.mu.Lock()
	for id := range c.machines {
		if !slices.ContainsFunc(s.all, func(n *node) bool { return n.id == id }) {
			delete(c.machines, id)
		}
	}
	c.mu.Unlock()
}

// probe reports whether backend id answered its health endpoint with a 2xx in time.
func (c *Checker) probe(ctx context.Context, n *node) bool {
	base, err := n.baseURL()
	if err != nil {
		c.logger.Warn("balancer: cannot probe backend", "backend", n.id, "err", err)
		c.failed.Add(1)
		return false
	}
	target := base.JoinPath(c.cfg.Path)
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return false
	}
	c.probes.Add(1)
	resp, err := c.cfg.Client.Do(req)
	if err != nil {
		c.failed.Add(1)
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // so that the connection is reused
	_ = resp.Body.Close()
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if !ok {
		c.failed.Add(1)
	}
	return ok
}

// record applies one probe's result to the backend's machine, and the machine's verdict to
// the Balancer where they differ: the Checker owns the backends' up or down (a backend that
// left and came back, or one set by hand, follows its probes again).
func (c *Checker) record(id string, ok bool) {
	c.mu.Lock()
	m := c.machines[id]
	if m == nil {
		m = &risefall.Machine{}
		c.machines[id] = m
	}
	_, to := m.Record(ok, c.policy)
	c.mu.Unlock()
	if to == risefall.Unknown || c.b.isUp(id) == (to == risefall.Up) {
		return
	}
	if err := c.b.SetUp(id, to == risefall.Up); err != nil {
		c.logger.Debug("balancer: probed backend left the set", "backend", id)
	}
}

// CheckerStats counts a Checker's probes: a snapshot, a plain value.
type CheckerStats struct {
	Probes uint64 // probes sent
	Failed uint64 // probes that failed
}

// Stats returns the Checker's counters.
func (c *Checker) Stats() CheckerStats {
	return CheckerStats{Probes: c.probes.Load(), Failed: c.failed.Load()}
}

// parseBaseURL returns backend id as a base URL: the Proxy's target and the Checker's.
func parseBaseURL(id string) (*url.URL, error) {
	u, err := url.Parse(id)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("balancer: backend ID %q is not a base URL such as http://10.0.0.5:8080", id)
	}
	return u, nil
}
