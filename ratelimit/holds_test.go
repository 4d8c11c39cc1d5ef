package ratelimit

import (
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

// The tests of this file check the promises of requests whose keys span servers or Cluster
// slots from the outside: instances on clients of their own, held up between the two phases of
// a request by a hook on their go-redis client (as by a long GC pause or a SIGSTOP), cut off,
// or facing a Redis that dies.

// afterReserve is a go-redis hook that runs fn, once, after the first round trip of a client
// that ran a reserve call (the first phase of a request spanning servers or slots): the instance
// behind that client is held up, or dies, between its two phases.
type afterReserve struct {
	once sync.Once
	fn   func()
}

func (h *afterReserve) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *afterReserve) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.after(cmd)
		return err
	}
}

func (h *afterReserve) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.after(cmds...)
		return err
	}
}

func (h *afterReserve) after(cmds ...redis.Cmder) {
	for _, c := range cmds {
		if c.Err() != nil {
			continue // not run: refused with NOSCRIPT, or failed
		}
		for _, a := range c.Args() {
			if s, ok := a.(string); ok && s == "reserve" {
				h.once.Do(h.fn)
				return
			}
		}
	}
}

// TestStalledRequestNeverCommitsLapsedHolds: an instance held up between its two phases for
// longer than its holds live must not charge units that another instance took meanwhile,
// whether its holds lapsed on every server or on one only: its request is denied by the units
// really taken, charges nothing anywhere (what one server charged is given back), and the
// other instance's grant stands. Two servers behind a go-redis Ring (it shards by hash tag, as
// a Cluster does by slot), each with its own clock: the stall moves the clocks, so that the
// stalled instance's own clock cannot tell it that it was held up.
func TestStalledRequestNeverCommitsLapsedHolds(t *testing.T) {
	for _, everywhere := range []bool{true, false} {
		name := map[bool]string{true: "lapsed everywhere", false: "lapsed on one server"}[everywhere]
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			servers := []*miniredis.Miniredis{miniredis.RunT(t), miniredis.RunT(t)}
			start := time.Now().Truncate(time.Second)
			for _, m := range servers {
				m.SetTime(start)
			}
			// instance returns the limiters of an instance over a Ring of its own.
			instance := func(hooks ...redis.Hook) (ip, apikey *Limiter) {
				r := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": servers[0].Addr(), "b": servers[1].Addr()}})
				t.Cleanup(func() { _ = r.Close() })
				for _, h := range hooks {
					r.AddHook(h)
				}
				s, err := NewRedisStore(r, RedisConfig{Timeout: time.Second, Secret: []byte("test")})
				require.NoError(t, err)
				return newLimiter(t, s, PerHour(3), Config{Name: "ip", DisableDenyCache: true}),
					newLimiter(t, s, PerHour(100), Config{Name: "apikey", DisableDenyCache: true})
			}
			// serverOf returns the server that holds the keys of key.
			probeIP, _ := instance()
			serverOf := func(key string) *miniredis.Miniredis {
				_, err := probeIP.Allow(ctx, key)
				require.NoError(t, err)
				for _, m := range servers {
					if len(m.Keys()) > 0 {
						m.FlushAll()
						return m
					}
				}
				t.Fatal("no key written")
				return nil
			}
			ipServer := serverOf("ip")
			apiKey := "k0"
			for i := 1; serverOf(apiKey) == ipServer; i++ {
				apiKey = "k" + string(rune('0'+i))
			}

			otherIP, _ := instance()
			var otherGranted Result
			life := 4 * time.Second // 4 Timeouts
			stall := &afterReserve{fn: func() {
				// Held up: the holds lapse, and the other instance takes the key's units.
				for _, m := range servers {
					if everywhere || m == ipServer {
						m.SetTime(start.Add(life + time.Millisecond))
					}
				}
				var err error
				otherGranted, err = otherIP.AllowN(ctx, "ip", 3)
				assert.NoError(t, err)
			}}
			ip, apikey := instance(stall)

			d, err := AllowAll(ctx, Layer{Limiter: ip, Key: "ip"}, Layer{Limiter: apikey, Key: apiKey})
			require.NoError(t, err)
			assert.True(t, otherGranted.Allowed, "the other instance took the units once the holds lapsed")
			assert.False(t, d.Allowed, "the stalled request is not granted units that were taken")
			assert.Equal(t, []string{"ip"}, d.Denied)

			p, err := ip.Peek(ctx, "ip")
			require.NoError(t, err)
			assert.Equal(t, time.Hour, p.ResetAfter, "the key holds the other instance's 3 units only (20 min each)")
			p, err = apikey.Peek(ctx, apiKey)
			require.NoError(t, err)
			assert.Equal(t, 100, p.Remaining, "the API key was not charged")
			for _, m := range servers {
				for _, k := range m.Keys() {
					assert.NotContains(t, k, ":holds", "no hold is left behind")
				}
			}
		})
	}
}

// holdingStore returns a store over a client of its own to addr, with the holds of the Cluster
// protocol on (each key as if in a slot of its own) and the given Timeout (its holds live four
// Timeouts).
func holdingStore(t *testing.T, addr string, timeout time.Duration, hooks ...redis.Hook) *RedisStore {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1,
		DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	for _, h := range hooks {
		c.AddHook(h)
	}
	s, err := NewRedisStore(c, RedisConfig{Timeout: timeout, RetryInterval: 20 * time.Millisecond, Secret: []byte("test")})
	require.NoError(t, err)
	s.holds = true
	return s
}

// layersOn returns the layers of one request, by IP (3 per hour) and by API key (100 per hour),
// on store: keys of two hash tags, so two phases.
func layersOn(t *testing.T, s Store, policy FailurePolicy) []Layer {
	return []Layer{
		{Limiter: newLimiter(t, s, PerHour(3), Config{Name: "ip", FailurePolicy: policy, DisableDenyCache: true}), Key: "ip"},
		{Limiter: newLimiter(t, s, PerHour(100), Config{Name: "apikey", FailurePolicy: policy, DisableDenyCache: true}), Key: "k"},
	}
}

// remaining peeks at the units left of each layer.
func remaining(t *testing.T, layers []Layer) []int {
	t.Helper()
	var left []int
	for _, ly := range layers {
		p, err := ly.Limiter.Peek(context.Background(), ly.Key)
		require.NoError(t, err)
		left = append(left, p.Remaining)
	}
	return left
}

// TestClusterStalledInstance: on a real Cluster, an instance held up between its two phases
// longer than its holds live (a go-redis hook sleeps after its first round trip) while another
// instance takes the units is not granted, and charges nothing: the other instance's grant
// stands alone.
func TestClusterStalledInstance(t *testing.T) {
	if !slices.Contains(redistest.Kinds(), redistest.Cluster) {
		t.Skip("no Cluster configured (" + redistest.EnvCluster + ")")
	}
	b := redistest.Open(t, redistest.Cluster)
	ctx := context.Background()
	const timeout = 100 * time.Millisecond
	instance := func(hooks ...redis.Hook) []Layer {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(os.Getenv(redistest.EnvCluster), ","),
			ContextTimeoutEnabled: true})
		t.Cleanup(func() { _ = c.Close() })
		for _, h := range hooks {
			c.AddHook(h)
		}
		s, err := NewRedisStore(c, RedisConfig{Prefix: b.Prefix, Timeout: timeout})
		require.NoError(t, err)
		require.True(t, s.holds)
		return layersOn(t, s, FailClosed)
	}
	other := instance()
	_ = remaining(t, other) // the hash secret is created
	var otherGranted Result
	stalled := instance(&afterReserve{fn: func() {
		time.Sleep(4*timeout + 50*time.Millisecond) // the holds lapse
		var err error
		otherGranted, err = other[0].Limiter.AllowN(ctx, "ip", 3)
		assert.NoError(t, err)
	}})

	d, err := AllowAll(ctx, stalled...)
	require.NoError(t, err)
	assert.True(t, otherGranted.Allowed, "the other instance took the units once the holds lapsed")
	assert.False(t, d.Allowed, "the stalled instance is not granted units that were taken")
	assert.Equal(t, []string{"ip"}, d.Denied)
	assert.Equal(t, []int{0, 100}, remaining(t, other), "the API key was not charged")
	p, err := other[0].Limiter.Peek(ctx, "ip")
	require.NoError(t, err)
	assert.Greater(t, p.ResetAfter, 59*time.Minute, "the other instance's 3 units of 20 min")
	assert.LessOrEqual(t, p.ResetAfter, time.Hour, "and nothing more")
}

// TestCrashedInstanceHoldsLapse: an instance cut off from Redis between its two phases (its
// commit and its release never arrive, as when it dies) fails as its policy says, and another
// instance asking for the same units is not denied: it waits for the holds to lapse, within its
// Timeout, and is granted. Nothing of the dead request stays charged.
func TestCrashedInstanceHoldsLapse(t *testing.T) {
	srv := redistest.StartServer(t, 0)
	proxy := redistest.StartProxy(t, srv.Addr())
	ctx := context.Background()
	dead := layersOn(t, holdingStore(t, proxy.Addr(), 100*time.Millisecond,
		&afterReserve{fn: func() { proxy.Blackhole(true) }}), FailClosed)
	other := layersOn(t, holdingStore(t, srv.Addr(), 2*time.Second), FailClosed)

	failsClosed(t, dead)
	d, err := AllowAll(ctx, Layer{Limiter: other[0].Limiter, Key: "ip", N: 3}, other[1])
	require.NoError(t, err)
	assert.True(t, d.Allowed, "granted once the dead instance's holds lapsed, not denied: %+v", d.Results)
	assert.Equal(t, []int{0, 99}, remaining(t, other), "only the granted request is charged")
}

// TestFrozenRedisBetweenPhases: Redis frozen (SIGSTOP) after the first phase of a request and
// for longer than its holds live: the request ends with its Timeouts, as its policy says; when
// Redis wakes up and runs the commit that waited in its socket, the holds have lapsed, and the
// commit charges nothing.
func TestFrozenRedisBetweenPhases(t *testing.T) {
	srv := redistest.StartServer(t, 0)
	t.Cleanup(srv.Thaw)
	const timeout = 100 * time.Millisecond
	frozen := layersOn(t, holdingStore(t, srv.Addr(), timeout, &afterReserve{fn: srv.Freeze}), FailClosed)

	start := failsClosed(t, frozen)
	time.Sleep(4*timeout - time.Since(start) + 50*time.Millisecond) // the holds lapse
	srv.Thaw()

	other := layersOn(t, holdingStore(t, srv.Addr(), time.Second), FailClosed)
	for range 5 {
		assert.Equal(t, []int{3, 100}, remaining(t, other), "the late commit charged nothing")
		time.Sleep(20 * time.Millisecond)
	}
}

// failsClosed asserts that the FailClosed request of layers is refused with ErrUnavailable
// within its Timeouts, and returns when it started.
func failsClosed(t *testing.T, layers []Layer) time.Time {
	t.Helper()
	start := time.Now()
	d, err := AllowAll(context.Background(), layers...)
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.False(t, d.Allowed)
	assert.Less(t, time.Since(start), time.Second, "the call ends with its Timeouts")
	return start
}
