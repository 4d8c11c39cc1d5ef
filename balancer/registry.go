package balancer

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of RegistryConfig.
const (
	defaultTTL               = 15 * time.Second
	defaultReconcileInterval = 5 * time.Second
	minTTL                   = 30 * time.Millisecond
	// maxRetry bounds the wait before a failed heartbeat or read is tried again.
	maxRetry = time.Second
)

// RegistryConfig configures a [Registry]. Only Service is required; the zero values of the
// other fields mean their defaults. A RegistryConfig is a plain value, and NewRegistry copies
// it.
type RegistryConfig struct {
	// Service names the service whose instances register and whose balancers watch: every
	// instance of it uses the same name (and the same TTL). On Redis it is the hash tag of the
	// service's keys, so each service is one Cluster slot. Required.
	Service string
	// TTL is how long a registration lives after its last heartbeat: an instance that stops
	// heartbeating without deregistering (it crashed, or cannot reach Redis) leaves every
	// watched set within TTL plus ReconcileInterval of its last heartbeat (sooner when other
	// instances heartbeat meanwhile: each heartbeat removes the expired). Instances heartbeat
	// every TTL/3, so that two heartbeats may fail in a row without the instance expiring.
	// At least 30ms. Default: 15s.
	TTL time.Duration
	// ReconcileInterval is how often Watch reads the members from the store, to catch what
	// announcements missed (expiries nobody announced yet, announcements lost with a
	// subscription). Default: 5s.
	ReconcileInterval time.Duration
	// Hooks observe the changes Watch applies and the store's outages.
	Hooks RegistryHooks
	// Logger receives the registry's state changes: heartbeats failing and succeeding again,
	// the store failing and answering again for a Watch, a registry that Redis lost. Default:
	// slog.Default().
	Logger *slog.Logger
}

// RegistryHooks are optional functions called by a [Registry]; the zero value calls nothing.
// They run on the goroutine of the Watch that makes the change, one at a time per Watch, with
// the Watch's context; they must not block for long, since the Watch waits for them.
type RegistryHooks struct {
	// OnJoin follows each backend added to a watched Balancer.
	OnJoin func(ctx context.Context, b Backend)
	// OnLeave follows each backend removed from a watched Balancer (deregistered or expired).
	OnLeave func(ctx context.Context, b Backend)
	// OnOutage is called when a Watch fails to read the members (down true, with the error):
	// its Balancer keeps its set; and when it reads them again (down false, nil error).
	OnOutage func(ctx context.Context, down bool, err error)
}

// RegistryStats counts what a Registry did since it was created. It is a snapshot, a plain
// value; the zero value counts nothing.
type RegistryStats struct {
	// Heartbeats counts the heartbeats sent by the Registry's Registrations (the first, made
	// by Register, included); HeartbeatErrors, those that failed.
	Heartbeats, HeartbeatErrors uint64
	// Reconciles counts the reads of the members by Watch (the first, and every
	// ReconcileInterval, and after announcements may have been lost); ReconcileErrors, those
	// that failed, which left the Balancer's set as it was.
	Reconciles, ReconcileErrors uint64
	// Announcements counts the announcements of changes that Watch received.
	Announcements uint64
	// Joins and Leaves count the backends that Watch added to and removed from Balancers.
	Joins, Leaves uint64
	// Down reports that the last read of the members failed: watched Balancers keep their
	// last good set until the store answers again.
	Down bool
	// LastGood is when the members were last read; zero before the first read.
	LastGood time.Time
}

// Registry is the membership of one service: instances register themselves (a backend: their
// address and weight) with a heartbeat, and balancers watch the members. The Registry is the
// same object on both sides; an instance that serves and also balances over its peers does
// both.
//
// Registering. [Registry.Register] sends a first heartbeat and returns once the store has it
// (or the store's error), then heartbeats every TTL/3 on a goroutine of the [Registration]
// (after a failure, every second until one succeeds). A heartbeat is one round trip, timed by
// the store (Redis TIME inside the script, never the instance's clock, so that skewed clocks
// do not expire anyone early). [Registration.Close] stops the heartbeats and deregisters the
// backend (one round trip): watchers drop it at once. Drain it first (stop taking requests,
// wait for the balancers to drop it, then shut the server down); an instance that crashes
// without Close expires after TTL.
//
// Watching. [Registry.Watch] sets a [Balancer]'s set to the members, then keeps it in step:
// changes are announced by the store as they happen (Redis pub/sub: a join or a leave reaches
// the balancers of every instance within milliseconds) and applied at once, and the members are
// read again every ReconcileInterval, because announcements can be lost: Redis drops the
// messages of a subscription while it is down, and nobody announces an expiry until a call
// meets it. When the subscription is made again after a loss, Watch reads the members at once.
// The set of a Balancer that a Registry watches is the registry's: Watch replaces whatever
// Update set before (a backend that stays keeps its state, as with Update).
//
// Outages. A Redis outage never empties a watched set: when a read fails, the Balancer keeps
// its last good set (Watch logs the outage once and calls Hooks.OnOutage) and Watch reads
// again every second, and at once when its subscription is confirmed again. Instances could
// not heartbeat during the outage either, so for one TTL after Redis answers again (or after
// the subscription was lost and made again) Watch keeps the backends that the reads miss and
// ignores expiries, while live instances heartbeat again, and removes only those that
// deregistered; then the reads are exact again, and the backends that died meanwhile leave.
// The same holds when Redis lost the registry (a restart without persistence, a flush), which
// Watch tells from the registry's epoch. Register fails while the store is down
// (ErrUnavailable); a Registration's heartbeats go on trying, every second, and register the
// backend again if Redis lost it.
//
// Redis. A [RedisStore] keeps each service under one hash tag: the members in a sorted set
// scored by expiry, their weights in a hash, an epoch, and a channel of announcements; no SCAN
// or KEYS anywhere. A [MemoryStore] has the same semantics in one process. See the package
// documentation for the keys.
//
// The zero value is not usable; create a Registry with [NewRegistry]. It is safe for
// concurrent use: any number of Registrations and Watches may share it. It has no goroutine
// of its own: Registrations own theirs (Close stops them), and Watch runs on its caller's.
type Registry struct {
	store  registryBackend
	cfg    RegistryConfig
	logger *slog.Logger

	heartbeats, heartbeatErrors, reconciles, reconcileErrors atomic.Uint64
	announcements, joins, leaves                             atomic.Uint64
	down                                                     atomic.Bool
	lastGood                                                 atomic.Int64 // unix ns
}

// NewRegistry returns the Registry of cfg.Service in store. Its error wraps ErrInvalidConfig
// and names the field at fault.
func NewRegistry(store Store, cfg RegistryConfig) (*Registry, error) {
	switch {
	case store == nil:
		return nil, fmt.Errorf("%w: NewRegistry: the store is nil", ErrInvalidConfig)
	case cfg.Service == "":
		return nil, fmt.Errorf("%w: RegistryConfig.Service is empty", ErrInvalidConfig)
	case cfg.TTL < 0:
		return nil, fmt.Errorf("%w: RegistryConfig.TTL %v is negative", ErrInvalidConfig, cfg.TTL)
	case cfg.TTL > 0 && cfg.TTL < minTTL:
		return nil, fmt.Errorf("%w: RegistryConfig.TTL %v is shorter than %v", ErrInvalidConfig, cfg.TTL, minTTL)
	case cfg.ReconcileInterval < 0:
		return nil, fmt.Errorf("%w: RegistryConfig.ReconcileInterval %v is negative", ErrInvalidConfig, cfg.ReconcileInterval)
	}
	if cfg.TTL == 0 {
		cfg.TTL = defaultTTL
	}
	if cfg.ReconcileInterval == 0 {
		cfg.ReconcileInterval = defaultReconcileInterval
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return &Registry{store: store.registry(), cfg: cfg, logger: logger}, nil
}

// Members reads the service's live members, by ID: one round trip. Its error wraps
// ErrUnavailable when the store failed.
func (r *Registry) Members(ctx context.Context) ([]Backend, error) {
	v, err := r.store.members(ctx, r.cfg.Service)
	if err != nil {
		return nil, err
	}
	return v.members, nil
}

// Stats returns a snapshot of the Registry's counters.
func (r *Registry) Stats() RegistryStats {
	st := RegistryStats{
		Heartbeats: r.heartbeats.Load(), HeartbeatErrors: r.heartbeatErrors.Load(),
		Reconciles: r.reconciles.Load(), ReconcileErrors: r.reconcileErrors.Load(),
		Announcements: r.announcements.Load(), Joins: r.joins.Load(), Leaves: r.leaves.Load(),
		Down: r.down.Load(),
	}
	if ns := r.lastGood.Load(); ns != 0 {
		st.LastGood = time.Unix(0, ns)
	}
	return st
}

// Registration is a backend registered in a [Registry] by [Registry.Register], kept alive by
// heartbeats until Close.
//
// The zero value is not usable. A Registration is safe for concurrent use; it runs one
// goroutine, the heartbeats, which Close stops.
type Registration struct {
	r    *Registry
	m    member
	stop context.CancelFunc
	ctx  context.Context // ends when the heartbeats stop
	done chan struct{}
	once sync.Once
}

// Register registers be in the service: it sends a first heartbeat and returns once the store
// holds be, then heartbeats every TTL/3 until Close. Registering an ID that another
// Registration holds takes it over (with this weight); a backend that re-registers after it
// expired, or with another weight, is announced as a join. Its error wraps ErrInvalidConfig for
// a backend without an ID or with a weight out of range, and ErrUnavailable when the store
// failed (nothing is left running then).
func (r *Registry) Register(ctx context.Context, be Backend) (*Registration, error) {
	switch {
	case be.ID == "":
		return nil, fmt.Errorf("%w: Register: Backend.ID is empty", ErrInvalidConfig)
	case be.Weight < 0 || be.Weight > maxWeight:
		return nil, fmt.Errorf("%w: Register: Backend.Weight %d is not in [0, %d]", ErrInvalidConfig, be.Weight, maxWeight)
	}
	g := &Registration{r: r, m: member{Backend: be, token: rand.Text()}, done: make(chan struct{})}
	if err := g.beat(ctx); err != nil {
		return nil, err
	}
	g.ctx, g.stop = context.WithCancel(context.Background())
	go g.loop()
	return g, nil
}

// Backend returns the registered backend.
func (g *Registration) Backend() Backend { return g.m.Backend }

// beat sends one heartbeat.
func (g *Registration) beat(ctx context.Context) error {
	g.r.heartbeats.Add(1)
	_, err := g.r.store.heartbeat(ctx, g.r.cfg.Service, g.m, g.r.cfg.TTL)
	if err != nil {
		g.r.heartbeatErrors.Add(1)
	}
	return err
}

// loop heartbeats every TTL/3, and every second after a failure, until Close.
func (g *Registration) loop() {
	defer close(g.done)
	interval := g.r.cfg.TTL / 3
	t := time.NewTimer(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
		}
		err := g.beat(g.ctx)
		if g.ctx.Err() != nil {
			return
		}
		next := interval
		switch {
		case err != nil:
			next = min(interval, maxRetry)
			if !failing {
				g.r.logger.Warn("balancer: registry heartbeat failed; the backend expires unless one succeeds in time",
					"service", g.r.cfg.Service, "backend", g.m.ID, "ttl", g.r.cfg.TTL, "err", err)
			}
		case failing:
			g.r.logger.Info("balancer: registry heartbeat succeeded again", "service", g.r.cfg.Service, "backend", g.m.ID)
		}
		failing = err != nil
		t.Reset(next)
	}
}

// halt stops the heartbeats without deregistering, as a crash would: the backend expires.
func (g *Registration) halt() {
	g.stop()
	<-g.done
}

// Close stops the heartbeats and deregisters the backend (one round trip): every watching
// Balancer drops it within milliseconds. When the store fails, the backend stays registered
// until it expires (TTL), and Close returns the error, wrapping ErrUnavailable. Close is
// idempotent: later calls return nil.
func (g *Registration) Close(ctx context.Context) error {
	var err error
	g.once.Do(func() {
		g.halt()
		_, err = g.r.store.deregister(ctx, g.r.cfg.Service, g.m.ID, g.m.token)
	})
	return err
}
