package balancer

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

// regEnv is one backend the registry's contract runs on.
type regEnv struct {
	redistest.Backend
	mem *MemoryStore // the one MemoryStore of Memory, shared by every "instance"
}

// store returns the store of another instance: the same MemoryStore, or a RedisStore on a
// client of its own.
func (e regEnv) store(t testing.TB) Store {
	t.Helper()
	if !e.IsRedis() {
		return e.mem
	}
	s, err := NewRedisStore(e.NewClient(t), testRedisConfig(e.Backend))
	require.NoError(t, err)
	return s
}

// testRedisConfig is a test's RedisConfig on b: a long Timeout, since miniredis's Lua is slow
// under the race detector. Tests of outages set their own.
func testRedisConfig(b redistest.Backend) RedisConfig {
	return RedisConfig{Prefix: b.Prefix, Timeout: 2 * time.Second, Logger: quiet}
}

// eachRegistry runs fn on every backend of the environment: memory, miniredis, and the real
// servers it names.
func eachRegistry(t *testing.T, fn func(t *testing.T, e regEnv)) {
	t.Helper()
	redistest.Each(t, func(t *testing.T, b redistest.Backend) {
		e := regEnv{Backend: b}
		if !b.IsRedis() {
			var err error
			e.mem, err = NewMemoryStore(MemoryConfig{})
			require.NoError(t, err)
		}
		fn(t, e)
	})
}

func newRegistry(t testing.TB, s Store, cfg RegistryConfig) *Registry {
	t.Helper()
	if cfg.Service == "" {
		cfg.Service = "svc"
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	r, err := NewRegistry(s, cfg)
	require.NoError(t, err)
	return r
}

func register(t testing.TB, r *Registry, id string, weight int) *Registration {
	t.Helper()
	g, err := r.Register(context.Background(), Backend{ID: id, Weight: weight})
	require.NoError(t, err)
	t.Cleanup(func() { _ = g.Close(context.Background()) })
	return g
}

// watch runs r.Watch(b) until the test ends, and returns once Watch read the members (or,
// when wantRead is false, once it tried).
func watch(t testing.TB, r *Registry, b *Balancer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Watch(ctx, b) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	for r.Stats().Reconciles == 0 || (r.Stats().LastGood.IsZero() && !r.Stats().Down) {
		time.Sleep(time.Millisecond)
	}
}

// set is b's set: ID -> weight.
func set(b *Balancer) map[string]int {
	out := map[string]int{}
	for _, be := range b.Stats().Backends {
		out[be.ID] = be.Weight
	}
	return out
}

func waitSet(t testing.TB, b *Balancer, want map[string]int, within time.Duration) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, want, set(b))
	}, within, time.Millisecond)
}

// changes collects the joins and leaves a Registry's Watch applies, with the time of each.
type changes struct {
	mu     sync.Mutex
	joins  chan string
	leaves chan string
	log    []string
}

func newChanges() *changes {
	return &changes{joins: make(chan string, 1000), leaves: make(chan string, 1000)}
}

func (c *changes) hooks() RegistryHooks {
	return RegistryHooks{
		OnJoin:  func(_ context.Context, b Backend) { c.add("+"+b.ID, c.joins, b.ID) },
		OnLeave: func(_ context.Context, b Backend) { c.add("-"+b.ID, c.leaves, b.ID) },
	}
}

func (c *changes) add(entry string, ch chan string, id string) {
	c.mu.Lock()
	c.log = append(c.log, entry)
	c.mu.Unlock()
	ch <- id
}

func (c *changes) entries() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.log)
}

// wait returns how long it took ch to deliver id, failing after within.
func waitFor(t testing.TB, ch chan string, id string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(within)
	for {
		select {
		case got := <-ch:
			if got == id {
				return time.Since(start)
			}
		case <-deadline:
			t.Fatalf("%q not seen within %v", id, within)
		}
	}
}

// TestRegistryPropagation: a backend registered by one instance joins the balancer watching
// from another within milliseconds (announced, not polled: ReconcileInterval is a minute),
// and leaves it as fast when its Registration closes. The times are logged.
func TestRegistryPropagation(t *testing.T) {
	eachRegistry(t, func(t *testing.T, e regEnv) {
		c := newChanges()
		watcher := newRegistry(t, e.store(t), RegistryConfig{ReconcileInterval: time.Minute, Hooks: c.hooks()})
		instance := newRegistry(t, e.store(t), RegistryConfig{})
		b := newBalancer(t, Config{})
		watch(t, watcher, b)
		const rounds = 20
		var joins, leaves []time.Duration
		for i := range rounds {
			id := fmt.Sprintf("10.0.0.%d:8080", i)
			start := time.Now()
			g := register(t, instance, id, 1)
			waitFor(t, c.joins, id, 2*time.Second)
			joins = append(joins, time.Since(start))
			require.Contains(t, set(b), id)
			start = time.Now()
			require.NoError(t, g.Close(context.Background()))
			waitFor(t, c.leaves, id, 2*time.Second)
			leaves = append(leaves, time.Since(start))
			require.NotContains(t, set(b), id)
		}
		slices.Sort(joins)
		slices.Sort(leaves)
		t.Logf("%s: join propagation median %v max %v; leave propagation median %v max %v (register/close to balancer updated, %d rounds)",
			e.Kind, joins[rounds/2], joins[rounds-1], leaves[rounds/2], leaves[rounds-1], rounds)
		assert.Less(t, joins[rounds-1], time.Second)
		assert.Less(t, leaves[rounds-1], time.Second)
		st := watcher.Stats()
		assert.Equal(t, uint64(1), st.Reconciles, "every change came announced")
		assert.Equal(t, uint64(rounds), st.Joins)
		assert.Equal(t, uint64(rounds), st.Leaves)
		assert.GreaterOrEqual(t, st.Announcements, uint64(2*rounds))
	})
}

// TestRegistryWatchReplacesSet: Watch starts from the members, replacing the set the Balancer
// was made with; a backend that stays keeps its state.
func TestRegistryWatchReplacesSet(t *testing.T) {
	eachRegistry(t, func(t *testing.T, e regEnv) {
		r := newRegistry(t, e.store(t), RegistryConfig{})
		register(t, r, "a", 2)
		register(t, r, "b", 0)
		b := newBalancer(t, Config{}, Backend{ID: "seed"}, Backend{ID: "a"})
		require.NoError(t, b.SetUp("a", false))
		watch(t, r, b)
		assert.Equal(t, map[string]int{"a": 2, "b": 1}, set(b))
		for _, be := range b.Stats().Backends {
			assert.Equal(t, be.ID != "a", be.Up, be.ID)
		}
		members, err := r.Members(context.Background())
		require.NoError(t, err)
		assert.Equal(t, []Backend{{ID: "a", Weight: 2}, {ID: "b", Weight: 0}}, members)
	})
}

// TestRegistryWeights: a weight reaches the balancers; an ID registered again by another
// Registration takes the new weight, and the first Registration's Close leaves it registered.
func TestRegistryWeights(t *testing.T) {
	eachRegistry(t, func(t *testing.T, e regEnv) {
		watcher := newRegistry(t, e.store(t), RegistryConfig{ReconcileInterval: time.Minute})
		b := newBalancer(t, Config{Algorithm: WeightedRoundRobin})
		watch(t, watcher, b)
		old := register(t, newRegistry(t, e.store(t), RegistryConfig{}), "a", 3)
		register(t, newRegistry(t, e.store(t), RegistryConfig{}), "b", 1)
		waitSet(t, b, map[string]int{"a": 3, "b": 1}, 2*time.Second)
		assert.Equal(t, map[string]int{"a": 6, "b": 2}, picks(t, b, 8))

		replacement := register(t, newRegistry(t, e.store(t), RegistryConfig{}), "a", 5)
		waitSet(t, b, map[string]int{"a": 5, "b": 1}, 2*time.Second)
		require.NoError(t, old.Close(context.Background()))
		require.NoError(t, old.Close(context.Background()), "idempotent")
		members, err := watcher.Members(context.Background())
		require.NoError(t, err)
		assert.Equal(t, []Backend{{ID: "a", Weight: 5}, {ID: "b", Weight: 1}}, members, "the replacement holds a")
		require.NoError(t, replacement.Close(context.Background()))
		waitSet(t, b, map[string]int{"b": 1}, 2*time.Second)
	})
}

// TestRegistryIsolation: services on one store, and stores under different prefixes, do not
// see each other's members.
func TestRegistryIsolation(t *testing.T) {
	eachRegistry(t, func(t *testing.T, e regEnv) {
		s := e.store(t)
		ra := newRegistry(t, s, RegistryConfig{Service: "a"})
		rb := newRegistry(t, s, RegistryConfig{Service: "b"})
		rBraces := newRegistry(t, s, RegistryConfig{Service: "{a}"})
		ba, bb := newBalancer(t, Config{}), newBalancer(t, Config{})
		watch(t, ra, ba)
		watch(t, rb, bb)
		register(t, ra, "x", 1)
		register(t, rb, "y", 1)
		register(t, rBraces, "z", 1)
		waitSet(t, ba, map[string]int{"x": 1}, 2*time.Second)
		waitSet(t, bb, map[string]int{"y": 1}, 2*time.Second)
		if e.IsRedis() {
			cfg := testRedisConfig(e.Backend)
			cfg.Prefix += "other:"
			other, err := NewRedisStore(e.Client, cfg)
			require.NoError(t, err)
			members, err := newRegistry(t, other, RegistryConfig{Service: "a"}).Members(context.Background())
			require.NoError(t, err)
			assert.Empty(t, members)
		}
		time.Sleep(50 * time.Millisecond) // what would leak has had time to arrive
		assert.Equal(t, map[string]int{"x": 1}, set(ba))
		assert.Equal(t, map[string]int{"y": 1}, set(bb))
	})
}

// TestRegistryExpiry: an instance that stops heartbeating (a crash: no deregistration) leaves
// the balancers within TTL plus ReconcileInterval, and no sooner than its TTL allows.
func TestRegistryExpiry(t *testing.T) {
	eachRegistry(t, func(t *testing.T, e regEnv) {
		if !e.IsRedis() {
			t.Skip("TestRegistryExpiryMemory runs it on the process clock")
		}
		const ttl, reconcile = 600 * time.Millisecond, 200 * time.Millisecond
		c := newChanges()
		watcher := newRegistry(t, e.store(t), RegistryConfig{TTL: ttl, ReconcileInterval: reconcile, Hooks: c.hooks()})
		b := newBalancer(t, Config{})
		watch(t, watcher, b)
		instance := newRegistry(t, e.store(t), RegistryConfig{TTL: ttl})
		register(t, instance, "live", 1)
		crashed := register(t, instance, "crashed", 1)
		waitSet(t, b, map[string]int{"live": 1, "crashed": 1}, 2*time.Second)
		crashed.halt()
		took := waitFor(t, c.leaves, "crashed", 3*ttl)
		t.Logf("%s: a crashed instance left %v after its last heartbeat (TTL %v, reconcile every %v)", e.Kind, took, ttl, reconcile)
		assert.GreaterOrEqual(t, took, ttl*2/3-50*time.Millisecond, "not before its TTL from the last heartbeat")
		assert.Less(t, took, ttl+reconcile+500*time.Millisecond)
		time.Sleep(ttl) // several heartbeats of the live one
		assert.Equal(t, map[string]int{"live": 1}, set(b))
		assert.ElementsMatch(t, []string{"+live", "+crashed", "-crashed"}, c.entries())
	})
}

// TestRegistryExpiryMemory: on the process clock, exactly: a backend expires TTL after its
// last heartbeat, and a Watch removes it at its next read.
func TestRegistryExpiryMemory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := NewMemoryStore(MemoryConfig{})
		require.NoError(t, err)
		r := newRegistry(t, s, RegistryConfig{}) // TTL 15s, reconcile every 5s
		b := newBalancer(t, Config{})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() { _ = r.Watch(ctx, b) }()
		synctest.Wait()
		live := register(t, r, "live", 1)
		crashed := register(t, r, "crashed", 1)
		synctest.Wait()
		assert.Equal(t, map[string]int{"live": 1, "crashed": 1}, set(b))
		time.Sleep(time.Second)
		crashed.halt() // its last heartbeat was 1s ago: it expires 14s from now
		time.Sleep(14*time.Second - time.Millisecond)
		synctest.Wait()
		assert.Contains(t, set(b), "crashed", "alive until its TTL ends")
		members, err := r.Members(ctx)
		require.NoError(t, err)
		assert.Len(t, members, 2)
		time.Sleep(time.Millisecond)
		members, err = r.Members(ctx) // the read removes it and announces it
		require.NoError(t, err)
		assert.Equal(t, []Backend{{ID: "live", Weight: 1}}, members)
		synctest.Wait()
		assert.Equal(t, map[string]int{"live": 1}, set(b))
		time.Sleep(time.Minute)
		synctest.Wait()
		assert.Equal(t, map[string]int{"live": 1}, set(b), "the live one heartbeats every 5s")
		assert.Equal(t, uint64(1), r.Stats().Leaves)
		require.NoError(t, live.Close(ctx))
		synctest.Wait()
		assert.Empty(t, set(b))
		cancel()
		synctest.Wait()
	})
}

// TestRegistryExpiryWithoutOthersMemory: with no other call to the store, the Watch's own
// reads find the expiry: the backend leaves within TTL plus ReconcileInterval.
func TestRegistryExpiryWithoutOthersMemory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := NewMemoryStore(MemoryConfig{})
		require.NoError(t, err)
		r := newRegistry(t, s, RegistryConfig{TTL: 15 * time.Second, ReconcileInterval: 5 * time.Second})
		b := newBalancer(t, Config{})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() { _ = r.Watch(ctx, b) }()
		time.Sleep(2 * time.Second) // the Watch reads at 0, 5, 10, 15, 20...
		register(t, r, "a", 1).halt()
		synctest.Wait()
		require.Equal(t, map[string]int{"a": 1}, set(b))
		start := time.Now()
		for len(set(b)) > 0 {
			time.Sleep(time.Millisecond)
		}
		took := time.Since(start)
		assert.GreaterOrEqual(t, took, 15*time.Second)
		assert.LessOrEqual(t, took, 20*time.Second)
		cancel()
		synctest.Wait()
	})
}

// TestRegistryOverflow: a burst of announcements larger than a Watch's buffer still ends with
// the set the store holds.
func TestRegistryOverflow(t *testing.T) {
	s, err := NewMemoryStore(MemoryConfig{})
	require.NoError(t, err)
	r := newRegistry(t, s, RegistryConfig{ReconcileInterval: time.Hour})
	b := newBalancer(t, Config{})
	watch(t, r, b)
	want := map[string]int{}
	for i := range 3 * watchBuffer {
		id := fmt.Sprint("b", i)
		g := register(t, r, id, 1)
		if i%3 == 0 {
			require.NoError(t, g.Close(context.Background()))
		} else {
			want[id] = 1
		}
	}
	waitSet(t, b, want, 5*time.Second)
}

// TestRegistryHeartbeatOneRoundTrip: Register, a heartbeat, a read of the members and Close
// are one round trip each, counted by the commands the client sends.
func TestRegistryHeartbeatOneRoundTrip(t *testing.T) {
	eachRegistry(t, func(t *testing.T, e regEnv) {
		if !e.IsRedis() {
			t.Skip("no round trips in memory")
		}
		rdb := e.NewClient(t)
		var n commandCounter
		rdb.AddHook(&n)
		s, err := NewRedisStore(rdb, testRedisConfig(e.Backend))
		require.NoError(t, err)
		r := newRegistry(t, s, RegistryConfig{})
		ctx := context.Background()
		warm := register(t, r, "warm-up", 1) // loads the scripts (EVALSHA, then EVAL) on a fresh server
		require.NoError(t, warm.Close(ctx))
		_, err = r.Members(ctx)
		require.NoError(t, err)

		count := func(f func()) int64 {
			before := n.n.Load()
			f()
			return n.n.Load() - before
		}
		var g *Registration
		assert.Equal(t, int64(1), count(func() { g = register(t, r, "a", 1) }), "Register")
		assert.Equal(t, int64(1), count(func() { require.NoError(t, g.beat(ctx)) }), "a heartbeat")
		assert.Equal(t, int64(1), count(func() { _, err := r.Members(ctx); require.NoError(t, err) }), "Members")
		assert.Equal(t, int64(1), count(func() { require.NoError(t, g.Close(ctx)) }), "Close")
		assert.Equal(t, uint64(7), s.Stats().Calls, "the store's own count agrees: 3 to warm up, 4 measured")
	})
}

// TestRegistryConfigErrors: every invalid input is refused, wrapping ErrInvalidConfig and
// naming the field.
func TestRegistryConfigErrors(t *testing.T) {
	mem, err := NewMemoryStore(MemoryConfig{})
	require.NoError(t, err)
	for _, tc := range []struct {
		name  string
		store Store
		cfg   RegistryConfig
		want  string
	}{
		{"nil store", nil, RegistryConfig{Service: "s"}, "store is nil"},
		{"no service", mem, RegistryConfig{}, "RegistryConfig.Service"},
		{"negative TTL", mem, RegistryConfig{Service: "s", TTL: -1}, "RegistryConfig.TTL"},
		{"short TTL", mem, RegistryConfig{Service: "s", TTL: time.Millisecond}, "RegistryConfig.TTL"},
		{"negative interval", mem, RegistryConfig{Service: "s", ReconcileInterval: -1}, "RegistryConfig.ReconcileInterval"},
	} {
		_, err := NewRegistry(tc.store, tc.cfg)
		require.ErrorIs(t, err, ErrInvalidConfig, tc.name)
		assert.Contains(t, err.Error(), tc.want, tc.name)
	}
	r := newRegistry(t, mem, RegistryConfig{})
	for _, be := range []Backend{{}, {ID: "a", Weight: -1}, {ID: "a", Weight: maxWeight + 1}} {
		_, err := r.Register(context.Background(), be)
		require.ErrorIs(t, err, ErrInvalidConfig, "%+v", be)
	}
	assert.ErrorIs(t, r.Watch(context.Background(), nil), ErrInvalidConfig)

	rdb := redistest.Open(t, redistest.Miniredis).Client
	_, err = NewRedisStore(nil, RedisConfig{})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	for _, cfg := range []RedisConfig{{Prefix: "a{"}, {Timeout: -1}, {FailFastAfter: -1}, {RetryInterval: -1}} {
		_, err := NewRedisStore(rdb, cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, "%+v", cfg)
	}
}

// TestRegistryEventParse: announcements are read back as written, and anything else is
// ignored.
func TestRegistryEventParse(t *testing.T) {
	for _, e := range []event{{kind: evJoin, id: "10.0.0.1:80", weight: 7}, {kind: evJoin, id: "a b"},
		{kind: evLeave, id: "http://x y"}, {kind: evExpire, id: "z"}} {
		got, ok := parseEvent(e.String())
		assert.True(t, ok, e.String())
		assert.Equal(t, e, got)
	}
	for _, s := range []string{"", "j", "j 1", "j x a", "j 1 ", "l ", "q a", "la"} {
		_, ok := parseEvent(s)
		assert.False(t, ok, s)
	}
	got, _ := parseEvent("j 99999999 a")
	assert.Equal(t, maxWeight, got.weight, "clamped")
}

func FuzzParseEvent(f *testing.F) {
	for _, s := range []string{"j 1 a", "l a", "x a", "j -1 a", "j 1 a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, ok := parseEvent(s)
		if !ok {
			return
		}
		again, ok := parseEvent(e.String())
		if !ok || again != e {
			t.Fatalf("%q: %+v, then %q: %+v", s, e, e.String(), again)
		}
	})
}
