package breaker

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// RegistryConfig configures a [Registry]. The zero value is ready to use; a RegistryConfig is a
// plain value, and NewRegistry copies it.
type RegistryConfig struct {
	// Config is the template of every breaker; each gets its key as Name (with a Store, the
	// breakers of one key are shared across instances). Default: Config{}.
	Config Config
	// MaxKeys caps the number of breakers. Keys often come from outside (hosts, routes,
	// tenants): the cap keeps a flood of keys from growing memory without bound.
	// Default: 10000.
	MaxKeys int
	// IdleTimeout drops closed breakers unused for that long when room is needed.
	// Default: 10m.
	IdleTimeout time.Duration
}

// Registry holds one Breaker per key (per host, route or tenant), created on first use. It has
// no goroutine and no timer: idle breakers are dropped when a new key needs room. When every
// breaker is in use, the least recently used closed one is dropped; open breakers are dropped
// last, so a flood of new keys cannot close a circuit that protects a failing dependency.
//
// The zero value is not usable; create a Registry with [NewRegistry]. It is safe for concurrent
// use.
type Registry struct {
	cfg   RegistryConfig
	epoch time.Time
	mu    sync.RWMutex
	m     map[string]*entry
}

type entry struct {
	b    *Breaker
	used atomic.Int64 // ns since the registry's epoch, refreshed at most every second
}

// NewRegistry returns an empty Registry. Its error wraps ErrInvalidConfig and names the field at
// fault, the template's included.
func NewRegistry(cfg RegistryConfig) (*Registry, error) {
	switch {
	case cfg.MaxKeys < 0:
		return nil, fmt.Errorf("%w: RegistryConfig.MaxKeys %d is negative", ErrInvalidConfig, cfg.MaxKeys)
	case cfg.IdleTimeout < 0:
		return nil, fmt.Errorf("%w: RegistryConfig.IdleTimeout %v is negative", ErrInvalidConfig, cfg.IdleTimeout)
	}
	if _, err := cfg.Config.withDefaults("RegistryConfig.Config"); err != nil {
		return nil, err
	}
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = 10000
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	return &Registry{cfg: cfg, epoch: time.Now(), m: make(map[string]*entry)}, nil
}

func (r *Registry) now() int64 { return int64(time.Since(r.epoch)) }

// Get returns the breaker of key, creating it if needed. With a Store in the template, the
// breakers of a key are shared across instances, except for the empty key's.
func (r *Registry) Get(key string) *Breaker {
	now := r.now()
	r.mu.RLock()
	e := r.m[key]
	r.mu.RUnlock()
	if e == nil {
		e = r.create(key, now)
	}
	if now-e.used.Load() > int64(time.Second) { // rare writes keep Get read-mostly
		e.used.Store(now)
	}
	return e.b
}

func (r *Registry) create(key string, now int64) *entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.m[key]; e != nil {
		return e
	}
	if len(r.m) >= r.cfg.MaxKeys {
		r.makeRoom(now)
	}
	cfg := r.cfg.Config
	cfg.Name = key
	if key == "" {
		cfg.Store = nil // a shared breaker needs a name: the empty key's stays local
	}
	b, _ := New(cfg) // the template was checked by NewRegistry
	e := &entry{b: b}
	e.used.Store(now)
	r.m[key] = e
	return e
}

// makeRoom drops idle closed breakers, or else one least recently used, preferring closed ones.
// r.mu is held.
func (r *Registry) makeRoom(now int64) {
	for k, e := range r.m {
		if now-e.used.Load() > int64(r.cfg.IdleTimeout) && e.b.State() == StateClosed {
			delete(r.m, k)
		}
	}
	for len(r.m) >= r.cfg.MaxKeys {
		victim, best, bestClosed, seen := "", int64(0), false, 0
		for k, e := range r.m { // map iteration starts at a random place: a sample
			closed := e.b.State() == StateClosed
			u := e.used.Load()
			if victim == "" || closed && !bestClosed || closed == bestClosed && u < best {
				victim, best, bestClosed = k, u, closed
			}
			if seen++; seen == 32 {
				break
			}
		}
		delete(r.m, victim)
	}
}

// Len returns the number of breakers held.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.m)
}

// Transport is [Breaker.Transport] with one breaker per destination host (req.URL.Host).
func (r *Registry) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		return roundTrip(r.Get(req.URL.Host), base, req)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
