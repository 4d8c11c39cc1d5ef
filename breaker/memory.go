package breaker

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"
)

// MemoryConfig configures a [MemoryStore]. The zero value is ready to use.
type MemoryConfig struct {
	// FlushInterval is how often each breaker's outcomes are sent to the shared state; 100 ms
	// when zero.
	FlushInterval time.Duration
	// FlushOutcomes sends a breaker's outcomes at once when that many failures are waiting; 64
	// when zero. Successes wait for the next FlushInterval.
	FlushOutcomes int
	// Logger receives the store's background events; slog.Default() when nil.
	Logger *slog.Logger
}

// MemoryStore is a [Store] in this process: breakers created on it with the same Name share one
// state exactly as instances sharing a [RedisStore] do, with the same batching, announcements
// and probe leases. Use it to run the shared semantics in tests without Redis, or to make
// several breakers of one process act as one.
//
// A MemoryStore must be created with [NewMemoryStore]; it is safe for concurrent use. It runs one
// goroutine, stopped by Close.
type MemoryStore struct {
	h     *hub
	clock func() time.Time // time.Now; tests move it
	mu    sync.Mutex
	m     map[string]*sharedEntry
	seen  map[string]seen // the last batch number applied, by breaker and instance
	n     int             // operations since the last sweep
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(cfg MemoryConfig) (*MemoryStore, error) {
	hc := hubConfig{every: cfg.FlushInterval, batch: cfg.FlushOutcomes, logger: cfg.Logger}
	if err := hc.check("MemoryConfig"); err != nil {
		return nil, err
	}
	s := &MemoryStore{m: make(map[string]*sharedEntry), seen: make(map[string]seen), clock: time.Now}
	s.h = newHub(s, hc)
	return s, nil
}

func (s *MemoryStore) down() bool { return false }

func (s *MemoryStore) hub() *hub {
	if s == nil {
		return nil
	}
	return s.h
}

// Close sends the outcomes still waiting and stops the store's goroutine. Breakers on a closed
// store decide alone. Close is idempotent and always returns nil.
func (s *MemoryStore) Close() error {
	s.h.close()
	return nil
}

// Stats returns a snapshot of the store's counters.
func (s *MemoryStore) Stats() StoreStats { return s.h.stats() }

type seen struct{ seq, expires int64 }

// sharedEntry is the shared state of one breaker: the fields of the hash in shared.lua.
type sharedEntry struct {
	g, g0, s, u, cf, r, ps int64
	n, nf                  int64 // outcomes and failures counted, for the totals
	kc, kf                 int64 // the count window: calls and failures (estimated)
	probes                 []int64
	leases                 []string // the id of each probe lease
	win                    [10]struct{ t, c, f int64 }
	expires                int64
}

// apply runs one request at now (ms); the same arithmetic as shared.lua. It reports whether the
// state changed.
func (e *sharedEntry) apply(q *request, now int64) (reply, bool) {
	p := q.pol
	if int64(len(e.probes)) < p.probes {
		e.probes = append(e.probes, make([]int64, p.probes-int64(len(e.probes)))...)
		e.leases = append(e.leases, make([]string, p.probes-int64(len(e.leases)))...)
	}
	probes, leases := e.probes[:p.probes], e.leases[:p.probes]
	wrote, changed := false, false
	if e.g == 0 {
		e.g = now * 16
		e.g0 = e.g
		wrote = true
	}
	clearProbes := func() {
		clear(probes)
		clear(leases)
		e.ps = 0
	}
	trip := func(reopen bool) {
		if reopen {
			e.r++
		} else {
			e.r = 0
		}
		d := p.open
		if p.maxOpen > d && e.r > 0 {
			ceil := p.maxOpen
			if e.r < 30 && d<<e.r < ceil {
				ceil = d << e.r
			}
			d += int64(q.jitter * float64(ceil-d+1))
		}
		e.g, e.s, e.u, e.cf = e.g+1, int64(StateOpen), now+d, 0
		clearProbes()
		changed = true
	}
	closeIt := func() {
		e.g, e.s, e.cf, e.r = e.g+1, int64(StateClosed), 0, 0
		clearProbes()
		e.win = [10]struct{ t, c, f int64 }{}
		e.kc, e.kf = 0, 0
		changed = true
	}
	out := reply{}
	switch q.op {
	case opSync:
		if q.succ+q.fail+q.late > 0 {
			e.n += q.succ + q.fail + q.late
			e.nf += q.fail + q.lateFail
			wrote = true
		}
		if e.s == int64(StateClosed) && (q.gen == e.g || q.gen < e.g0) && q.ended && q.succ+q.fail == 0 && e.cf > 0 {
			e.cf = 0
			wrote = true
		}
		if e.s == int64(StateClosed) && (q.gen == e.g || q.gen < e.g0) && q.succ+q.fail > 0 {
			out.counted = true
			if q.succ > 0 || q.ended {
				e.cf = q.tail
			} else {
				e.cf += q.tail
			}
			tripped := e.cf >= p.failures
			if p.rate > 0 && p.windowCalls > 0 {
				e.kc += q.succ + q.fail
				e.kf += q.fail
				if e.kc > p.windowCalls {
					e.kf = int64(math.Floor(float64(e.kf)*float64(p.windowCalls)/float64(e.kc) + 0.5))
					e.kc = p.windowCalls
				}
				if e.kc >= p.minCalls && float64(e.kf) >= p.rate*float64(e.kc) {
					tripped = true
				}
			} else if p.rate > 0 {
				width := max(1, p.window/10)
				b := now / width
				w := &e.win[b%10]
				if w.c > 0 && w.t == b {
					w.c += q.succ + q.fail
					w.f += q.fail
				} else {
					w.t, w.c, w.f = b, q.succ+q.fail, q.fail
				}
				var calls, failed int64
				for _, w := range e.win {
					if w.c > 0 && w.t > b-10 {
						calls += w.c
						failed += w.f
					}
				}
				if calls >= p.minCalls && float64(failed) >= p.rate*float64(calls) {
					tripped = true
				}
			}
			if tripped {
				trip(false)
			}
			wrote = true
		}
		if q.hold > 0 && (e.s != int64(StateOpen) || e.u < now+q.hold) {
			e.g, e.s, e.u, e.cf = e.g+1, int64(StateOpen), now+q.hold, 0
			clearProbes()
			changed = true
		}
	case opAcquire:
		if e.s == int64(StateOpen) && now >= e.u {
			e.g, e.s = e.g+1, int64(StateHalfOpen)
			clearProbes()
			changed = true
		}
		if e.s == int64(StateHalfOpen) {
			var earliest int64
			for i, d := range probes {
				if d <= now {
					out.slot, out.deadline = int64(i+1), now+p.probeTimeout
					probes[i], leases[i] = out.deadline, q.leaseID
					wrote = true
					break
				}
				if earliest == 0 || d < earliest {
					earliest = d
				}
			}
			if out.slot == 0 {
				out.wait = earliest - now
			}
		}
	case opRelease:
		for i, id := range leases {
			if probes[i] != 0 && id == q.leaseID {
				probes[i], leases[i] = 0, ""
				wrote = true
			}
		}
	case opReport:
		if q.outcome != 2 {
			e.n++
			if q.outcome == 1 {
				e.nf++
			}
			wrote = true
		}
		if e.s == int64(StateHalfOpen) && q.gen == e.g {
			if q.slot >= 1 && q.slot <= int64(len(probes)) && probes[q.slot-1] != 0 && probes[q.slot-1] == q.deadline {
				probes[q.slot-1], leases[q.slot-1] = 0, ""
				wrote = true
			}
			switch q.outcome {
			case 1:
				out.counted = true
				trip(true)
			case 0:
				out.counted = true
				e.ps++
				if e.ps >= p.successes {
					closeIt()
				}
				wrote = true
			}
		}
	}
	if e.s == int64(StateOpen) {
		out.wait = max(0, e.u-now)
	}
	if wrote || changed {
		ttl := max(p.window, p.probeTimeout, p.open)
		switch e.s {
		case int64(StateOpen):
			ttl += max(0, e.u-now)
		case int64(StateHalfOpen):
			ttl += p.probeTimeout
		}
		e.expires = now + ttl
	}
	out.gen, out.state = e.g, State(e.s)
	return out, changed
}

func (s *MemoryStore) run(_ context.Context, _ time.Duration, reqs []request, res []reply) error {
	var changed []string
	s.mu.Lock()
	now := s.clock().UnixMilli()
	s.n++
	if s.n >= 1024 {
		s.n = 0
		for k, e := range s.m {
			if now >= e.expires {
				delete(s.m, k)
			}
		}
		for k, v := range s.seen {
			if now >= v.expires {
				delete(s.seen, k)
			}
		}
	}
	for i := range reqs {
		q := &reqs[i]
		if q.op == opSync && q.seq > 0 {
			k := q.name + "\x00" + q.inst
			if v, ok := s.seen[k]; ok && now < v.expires && q.seq <= v.seq {
				r := *q // applied before: read only
				r.succ, r.fail, r.tail, r.late, r.lateFail, r.hold, r.ended = 0, 0, 0, 0, 0, 0, false
				q = &r
				s.seen[k] = seen{seq: v.seq, expires: now + 600_000} // remembered while sent again
			} else {
				s.seen[k] = seen{seq: q.seq, expires: now + 600_000}
			}
		}
		e := s.m[q.name]
		if e == nil || now >= e.expires {
			e = &sharedEntry{}
			s.m[q.name] = e
		}
		var c bool
		res[i], c = e.apply(q, now)
		if c {
			changed = append(changed, q.name)
		}
	}
	s.mu.Unlock()
	for _, name := range changed {
		s.h.notify(name)
	}
	return nil
}

// totals returns the outcomes and failures counted for name, for tests.
func (s *MemoryStore) totals(name string) (n, failed int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.m[name]; e != nil && s.clock().UnixMilli() < e.expires {
		return e.n, e.nf
	}
	return 0, 0
}
