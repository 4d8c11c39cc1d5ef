package balancer

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/rediskey"
	"github.com/outgrow/outgrow/internal/redistest"
)

// commandCounter counts the commands a client sends: round trips, EVALSHA and EVAL apart.
type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// outage is a Redis server that a test stops and starts again.
type outage struct {
	addr    string
	stop    func()
	restart func()
}

// outages lists the servers the outage tests run on, by name: miniredis (stopped and started
// again with its data), and, when redis-server is installed, a private real server killed and
// restarted without persistence (it comes back empty) and with an AOF (it comes back with
// every registration, all expired by then).
var outages = []struct {
	name  string
	start func(t *testing.T) outage
}{
	{"miniredis", func(t *testing.T) outage {
		m := miniredis.RunT(t)
		return outage{m.Addr(), m.Close, func() { require.NoError(t, m.Restart()) }}
	}},
	{"redis-server", func(t *testing.T) outage {
		s := redistest.StartServer(t, 0)
		return outage{s.Addr(), s.Stop, s.Restart}
	}},
	{"redis-server-aof", func(t *testing.T) outage {
		s := redistest.StartServerWith(t, redistest.ServerConfig{AOF: true})
		return outage{s.Addr(), s.Stop, s.Restart}
	}},
}

// outageStore returns a RedisStore on a client of its own to addr, with short timeouts.
func outageStore(t *testing.T, addr string) *RedisStore {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1,
		ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	s, err := NewRedisStore(rdb, RedisConfig{Timeout: 500 * time.Millisecond, RetryInterval: 100 * time.Millisecond, Logger: quiet})
	require.NoError(t, err)
	return s
}

// TestRegistryOutageKeepsSet: while Redis is down, a watched balancer keeps its last good set
// (no leave at all, though every registration expires meanwhile); when Redis is back, the
// instances that are alive heartbeat again and stay, and the one that died during the outage
// leaves one TTL later. Register fails while Redis is down.
func TestRegistryOutageKeepsSet(t *testing.T) {
	for _, tc := range outages {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.start(t)
			const ttl, reconcile = 900 * time.Millisecond, 300 * time.Millisecond
			c := newChanges()
			var outageHooks []bool
			var mu sync.Mutex
			hooks := c.hooks()
			hooks.OnOutage = func(_ context.Context, down bool, _ error) {
				mu.Lock()
				outageHooks = append(outageHooks, down)
				mu.Unlock()
			}
			watcher := newRegistry(t, outageStore(t, o.addr), RegistryConfig{TTL: ttl, ReconcileInterval: reconcile, Hooks: hooks})
			instance := newRegistry(t, outageStore(t, o.addr), RegistryConfig{TTL: ttl})
			b := newBalancer(t, Config{})
			watch(t, watcher, b)
			register(t, instance, "a", 1)
			register(t, instance, "b", 2)
			dies := register(t, instance, "dies", 1)
			all := map[string]int{"a": 1, "b": 2, "dies": 1}
			waitSet(t, b, all, 2*time.Second)

			dies.halt()
			o.stop()
			time.Sleep(3 * ttl) // every registration expires, by Redis TIME
			assert.Equal(t, all, set(b), "the last good set is kept")
			assert.True(t, watcher.Stats().Down)
			_, err := instance.Register(context.Background(), Backend{ID: "new"})
			require.ErrorIs(t, err, ErrUnavailable)
			_, err = watcher.Members(context.Background())
			require.ErrorIs(t, err, ErrUnavailable)

			restarted := time.Now()
			o.restart()
			require.Eventually(t, func() bool { return !watcher.Stats().Down }, 10*time.Second, time.Millisecond)
			recovered := time.Since(restarted)
			assert.Equal(t, all, set(b), "kept while instances heartbeat again")
			took := waitFor(t, c.leaves, "dies", 3*ttl+reconcile)
			t.Logf("%s: read again %v after the restart; the instance that died during the outage left %v after it (TTL %v)",
				tc.name, recovered, took+recovered, ttl)
			time.Sleep(ttl)
			assert.Equal(t, map[string]int{"a": 1, "b": 2}, set(b))
			assert.ElementsMatch(t, []string{"+a", "+b", "+dies", "-dies"}, c.entries(), "nothing else left, even for a moment")
			mu.Lock()
			assert.Equal(t, []bool{true, false}, outageHooks)
			mu.Unlock()
			require.EventuallyWithT(t, func(c *assert.CollectT) { // a heartbeat may have failed on a busy machine
				members, err := watcher.Members(context.Background())
				assert.NoError(c, err)
				assert.Equal(c, []Backend{{ID: "a", Weight: 1}, {ID: "b", Weight: 2}}, members)
			}, 5*time.Second, 10*time.Millisecond)
		})
	}
}

// TestRegistryStartsDuringOutage: a Watch that cannot read the members keeps the set the
// Balancer was made with, and reads them as soon as Redis answers.
func TestRegistryStartsDuringOutage(t *testing.T) {
	m := miniredis.RunT(t)
	r := newRegistry(t, outageStore(t, m.Addr()), RegistryConfig{})
	g := register(t, r, "a", 1)
	m.Close()
	b := newBalancer(t, Config{}, Backend{ID: "seed"})
	watch(t, r, b)
	assert.True(t, r.Stats().Down)
	time.Sleep(100 * time.Millisecond)
	assert.Equal(t, map[string]int{"seed": 1}, set(b))
	require.ErrorIs(t, g.Close(context.Background()), ErrUnavailable, "a stays registered until its TTL")
	require.NoError(t, m.Restart())
	waitSet(t, b, map[string]int{"a": 1}, 3*time.Second)
}

// TestRegistryTrimBounded: one call removes at most 100 expired members, so that a call's work
// stays bounded however many instances died at once; reads skip the others all the same.
func TestRegistryTrimBounded(t *testing.T) {
	eachRegistry(t, func(t *testing.T, e regEnv) {
		if !e.IsRedis() {
			t.Skip("the MemoryStore removes them all at once")
		}
		s := e.store(t).(*RedisStore)
		ctx := context.Background()
		key := rediskey.Key(e.Prefix, "svc", ":members")
		dead := make([]redis.Z, 250) // expired in 1970
		for i := range dead {
			dead[i] = redis.Z{Score: 1, Member: fmt.Sprint("dead", i)}
		}
		require.NoError(t, e.Client.ZAdd(ctx, key, dead...).Err())
		_, err := s.heartbeat(ctx, "svc", member{Backend{ID: "live"}, "token"}, time.Minute)
		require.NoError(t, err)
		assert.Equal(t, int64(151), e.Client.ZCard(ctx, key).Val(), "the heartbeat removed 100")
		for _, left := range []int64{51, 1, 1} {
			v, err := s.members(ctx, "svc")
			require.NoError(t, err)
			assert.Equal(t, []Backend{{ID: "live", Weight: 0}}, v.members)
			assert.Equal(t, left, e.Client.ZCard(ctx, key).Val())
		}
	})
}

// TestRegistryLostAnnouncements: when the Watch's connections are cut, the announcements made
// meanwhile are lost; the Watch reads the members as soon as its subscription is made again,
// long before its ReconcileInterval (a minute here).
func TestRegistryLostAnnouncements(t *testing.T) {
	for _, k := range redistest.Kinds() {
		if k != redistest.Miniredis && k != redistest.Redis {
			continue // a proxy in front of a Cluster would need one per node
		}
		t.Run(string(k), func(t *testing.T) {
			e := redistest.Open(t, k)
			addr := ""
			switch k {
			case redistest.Miniredis:
				addr = e.Mini.Addr()
			default:
				addr = e.Client.(*redis.Client).Options().Addr
			}
			p := redistest.StartProxy(t, addr)
			cfg := testRedisConfig(e)
			rdb := redis.NewClient(&redis.Options{Addr: p.Addr(), DB: e.Client.(*redis.Client).Options().DB})
			t.Cleanup(func() { _ = rdb.Close() })
			s, err := NewRedisStore(rdb, cfg)
			require.NoError(t, err)
			c := newChanges()
			watcher := newRegistry(t, s, RegistryConfig{ReconcileInterval: time.Minute, Hooks: c.hooks()})
			b := newBalancer(t, Config{})
			watch(t, watcher, b)
			instance := newRegistry(t, (regEnv{Backend: e}).store(t), RegistryConfig{})
			register(t, instance, "before", 1)
			waitFor(t, c.joins, "before", 2*time.Second)

			start := time.Now()
			p.Cut()
			register(t, instance, "during", 1) // announced to nobody
			took := waitFor(t, c.joins, "during", 5*time.Second)
			t.Logf("%s: a join announced while the subscription was cut arrived %v later", k, took)
			assert.Less(t, time.Since(start), 5*time.Second)
			assert.Equal(t, map[string]int{"before": 1, "during": 1}, set(b))
		})
	}
}

// TestRegistryDataLost: when Redis loses the registry (a flush here, as a restart without
// persistence), a Watch keeps its set for one TTL while the live instances register again,
// then drops those that did not.
func TestRegistryDataLost(t *testing.T) {
	m := miniredis.RunT(t)
	const ttl = 600 * time.Millisecond
	c := newChanges()
	watcher := newRegistry(t, outageStore(t, m.Addr()), RegistryConfig{TTL: ttl, ReconcileInterval: 100 * time.Millisecond, Hooks: c.hooks()})
	instance := newRegistry(t, outageStore(t, m.Addr()), RegistryConfig{TTL: ttl})
	b := newBalancer(t, Config{})
	watch(t, watcher, b)
	register(t, instance, "a", 1)
	register(t, instance, "gone", 1).halt()
	waitSet(t, b, map[string]int{"a": 1, "gone": 1}, 2*time.Second)
	reads := watcher.Stats().Reconciles
	require.Eventually(t, func() bool { return watcher.Stats().Reconciles > reads+1 }, time.Second, time.Millisecond)
	m.FlushAll()
	flushed := time.Now()
	took := waitFor(t, c.leaves, "gone", 4*ttl)
	assert.Greater(t, took, ttl/2, "kept for about one TTL")
	t.Logf("after the registry was lost, a dead instance left %v later; the live one stayed", time.Since(flushed))
	assert.Equal(t, map[string]int{"a": 1}, set(b))
	assert.NotContains(t, c.entries(), "-a")
}

// TestRegistryHeartbeatsRecover: a Registration whose heartbeats fail goes on trying, and
// registers again (announced as a join) when Redis answers.
func TestRegistryHeartbeatsRecover(t *testing.T) {
	m := miniredis.RunT(t)
	const ttl = 300 * time.Millisecond
	instance := newRegistry(t, outageStore(t, m.Addr()), RegistryConfig{TTL: ttl})
	register(t, instance, "a", 1)
	m.SetError("LOADING Redis is loading the dataset in memory")
	time.Sleep(2 * ttl)
	st := instance.Stats()
	assert.Positive(t, st.HeartbeatErrors)
	m.SetError("")
	m.FlushAll()
	require.Eventually(t, func() bool {
		members, err := instance.Members(context.Background())
		return err == nil && slices.Equal(members, []Backend{{ID: "a", Weight: 1}})
	}, 3*time.Second, 5*time.Millisecond)
}
