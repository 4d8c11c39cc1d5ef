package breaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

// instances returns n RedisStores on one Redis (the real server when OUTGROW_REDIS_URL is set,
// else a miniredis), each on a client of its own as instances of a service have.
func instances(t *testing.T, n int, cfg RedisConfig) ([]*RedisStore, redistest.Backend) {
	t.Helper()
	kind := redistest.Miniredis
	if os.Getenv(redistest.EnvURL) != "" {
		kind = redistest.Redis
	}
	be := redistest.Open(t, kind)
	cfg.Prefix = be.Prefix
	var out []*RedisStore
	for range n {
		s, err := NewRedisStore(be.NewClient(t), cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		out = append(out, s)
	}
	return out, be
}

// hammer calls each of bs from per goroutines, over and over, until the stop it returns is
// called (stop waits for them): call makes the n-th call of goroutine g on bs[i].
func hammer(bs []*Breaker, per int, call func(i, g, n int, b *Breaker)) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i, b := range bs {
		for g := range per {
			wg.Go(func() {
				for n := 0; ; n++ {
					select {
					case <-done:
						return
					default:
					}
					call(i, g, n, b)
				}
			})
		}
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

// watchLag measures, until the test ends, how late a goroutine that sleeps a millisecond at a
// time wakes up: the delays of a busy machine, which no bound of the store can remove. It
// returns the worst so far.
func watchLag(t *testing.T) (worst func() time.Duration) {
	var lag atomic.Int64
	stop := hammer([]*Breaker{nil}, 1, func(_, _, _ int, _ *Breaker) {
		start := time.Now()
		time.Sleep(time.Millisecond)
		raise(&lag, int64(time.Since(start)-time.Millisecond))
	})
	t.Cleanup(stop)
	return func() time.Duration { return time.Duration(lag.Load()) }
}

// raise sets m to v if v is larger.
func raise(m *atomic.Int64, v int64) {
	for old := m.Load(); v > old && !m.CompareAndSwap(old, v); old = m.Load() {
	}
}

// TestDistributedExactness: four instances fail and succeed concurrently while their breakers
// trip, probe and close; every outcome of every call made reaches the shared totals exactly once,
// and at no moment do more than Probes probes run across the instances.
func TestDistributedExactness(t *testing.T) {
	const probes = 2
	stores, be := instances(t, 4, RedisConfig{Timeout: 5 * time.Second}) // no timeout: a timed-out batch may be sent twice
	cfg := Config{Name: "exact", OpenDuration: 20 * time.Millisecond, Probes: probes, Successes: probes, ProbeTimeout: time.Minute}
	var bs []*Breaker
	for _, st := range stores {
		c := cfg
		c.Store = st
		bs = append(bs, newBreaker(t, c))
	}
	var made, failed, inProbe, maxProbe, probesRun atomic.Int64
	stop := hammer(bs, 4, func(i, g, n int, b *Breaker) {
		tok, err := b.Allow(context.Background())
		if err != nil {
			time.Sleep(time.Millisecond)
			return
		}
		if tok.lease < 0 { // a probe
			raise(&maxProbe, inProbe.Add(1))
			probesRun.Add(1)
			time.Sleep(2 * time.Millisecond)
			inProbe.Add(-1)
		}
		var outcome error
		if (n/20+i+g)%2 == 0 { // bursts of 20 failures, then 20 successes
			outcome = errDown
			failed.Add(1)
		}
		made.Add(1)
		tok.Done(outcome)
	})
	time.Sleep(1500 * time.Millisecond)
	stop()
	for _, st := range stores {
		require.NoError(t, st.Close()) // sends what is pending
	}
	assert.Equal(t, made.Load(), hashInt(t, be.Client, be.Prefix, cfg.Name, "n"), "every outcome counted once")
	assert.Equal(t, failed.Load(), hashInt(t, be.Client, be.Prefix, cfg.Name, "nf"), "every failure counted once")
	assert.LessOrEqual(t, maxProbe.Load(), int64(probes), "never more than Probes probes at once")
	assert.Positive(t, probesRun.Load(), "the breakers went through half-open")
	assert.Positive(t, hashInt(t, be.Client, be.Prefix, cfg.Name, "g"), "the shared breaker changed state")
	t.Logf("%d calls, %d failures, %d probes, at most %d at once", made.Load(), failed.Load(), probesRun.Load(), maxProbe.Load())
}

// TestDistributedPropagation: once one instance trips, how long until the others refuse calls.
func TestDistributedPropagation(t *testing.T) {
	stores, _ := instances(t, 4, RedisConfig{})
	var lat []time.Duration
	for round := range 30 {
		var bs []*Breaker
		for _, st := range stores {
			bs = append(bs, newBreaker(t, Config{Name: "prop" + string(rune('a'+round)), Failures: 1, OpenDuration: time.Minute, Store: st}))
		}
		start := time.Now()
		require.ErrorIs(t, call(bs[0], errDown), errDown)
		for _, b := range bs[1:] {
			deadline := start.Add(2 * time.Second)
			for b.State() != StateOpen {
				require.True(t, time.Now().Before(deadline), "round %d: an instance never learned", round)
				time.Sleep(20 * time.Microsecond)
			}
			lat = append(lat, time.Since(start))
		}
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("propagation of OPEN to the other instances: p50 %v, p99 %v, max %v (%d samples)", p50, p99, lat[len(lat)-1], len(lat))
	assert.Less(t, p99, 100*time.Millisecond, "well under the 100 ms flush interval, through announcements")
}

// TestRedisServerOutage stops a real redis-server while calls go on and starts it again: no call
// fails because of Redis, none waits much longer than the store's timeout, breakers keep
// tripping on their own, and the instances share state again after the restart.
func TestRedisServerOutage(t *testing.T) {
	srv := redistest.StartServer(t, 0)
	stores := outageFleet(t, srv.Addr(), srv.Addr())
	cfg := Config{Name: "outage", Failures: 3, OpenDuration: 50 * time.Millisecond, Store: stores[0]}
	a := newBreaker(t, cfg)
	cfg.Store = stores[1]
	b := newBreaker(t, cfg)

	var slowest atomic.Int64
	var foreign atomic.Int64 // errors that are neither ours nor ErrOpen
	var fail atomic.Bool
	stop := hammer([]*Breaker{a, b}, 1, func(_, _, _ int, br *Breaker) {
		start := time.Now()
		err := br.Do(context.Background(), func(context.Context) error {
			if fail.Load() {
				return errDown
			}
			return nil
		})
		raise(&slowest, int64(time.Since(start)))
		if err != nil && !errors.Is(err, errDown) && !errors.Is(err, ErrOpen) {
			foreign.Add(1)
		}
		time.Sleep(500 * time.Microsecond)
	})
	time.Sleep(200 * time.Millisecond)
	srv.Stop()
	slowest.Store(0)
	// A flush notices: at once when a command sees the connection close, else within its bound.
	require.Eventually(t, func() bool { return stores[0].Stats().Down }, 3*time.Second, time.Millisecond,
		"the store noticed the outage")
	fail.Store(true)
	require.Eventually(t, func() bool { return a.State() != StateClosed }, time.Second, time.Millisecond,
		"a trips on its own failures with Redis down")
	fail.Store(false)
	time.Sleep(200 * time.Millisecond)
	assert.Less(t, time.Duration(slowest.Load()), 300*time.Millisecond,
		"no call waits much longer than the 50 ms timeout (race detector on)")

	redistest.StartServer(t, srv.Port())
	require.Eventually(t, func() bool {
		return !stores[0].Stats().Down && !stores[1].Stats().Down
	}, 3*time.Second, 10*time.Millisecond, "the instances use the store again")
	stop()
	assert.Zero(t, foreign.Load(), "no call failed because of Redis")

	// Shared again: three failures on a trip b.
	require.Eventually(t, func() bool { return a.State() == StateClosed && b.State() == StateClosed }, 3*time.Second, time.Millisecond)
	for range 3 {
		_ = call(a, errDown)
	}
	require.Eventually(t, func() bool { return b.State() == StateOpen }, 3*time.Second, time.Millisecond)
	t.Logf("slowest call during the outage %v", time.Duration(slowest.Load()))
}

// TestDistributedWithoutAnnouncements: an instance whose subscription is gone still learns of
// a trip at its next flush as long as it has calls, within about FlushInterval.
func TestDistributedWithoutAnnouncements(t *testing.T) {
	stores, _ := instances(t, 2, RedisConfig{FlushInterval: 50 * time.Millisecond})
	stores[1].sub.Close() // announcements no longer reach instance 1
	a := newBreaker(t, Config{Name: "deaf", Failures: 1, OpenDuration: time.Minute, Store: stores[0]})
	b := newBreaker(t, Config{Name: "deaf", Failures: 1, OpenDuration: time.Minute, Store: stores[1]})
	require.NoError(t, call(b, nil))
	notes := stores[1].Stats().Notifications

	start := time.Now()
	require.ErrorIs(t, call(a, errDown), errDown)
	var admitted int
	for b.State() != StateOpen {
		require.Less(t, time.Since(start), 2*time.Second, "b never learned")
		if call(b, nil) == nil {
			admitted++
		}
		time.Sleep(time.Millisecond)
	}
	learned := time.Since(start)
	assert.Equal(t, notes, stores[1].Stats().Notifications, "b learned from its flush, not an announcement")
	assert.Less(t, learned, time.Second, "within a few flush intervals")
	t.Logf("without announcements b learned after %v, admitting %d calls meanwhile", learned, admitted)
}

// TestBatchesAppliedOnceAfterTimeouts: Redis stalls (CLIENT PAUSE) longer than a batch may wait,
// then runs the batch anyway. The store sends it again; Redis applies it once: the totals count
// every outcome exactly once.
func TestBatchesAppliedOnceAfterTimeouts(t *testing.T) {
	srv := redistest.StartServer(t, 0)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = admin.Close() })
	st := storesOn(t, redis.Options{}, RedisConfig{Timeout: 20 * time.Millisecond, RetryInterval: 50 * time.Millisecond, FlushInterval: time.Hour}, srv.Addr())[0]
	b := newBreaker(t, Config{Name: "once", DisableConsecutiveFailures: true, Store: st})
	ctx := context.Background()
	made := 0
	for round := range 5 {
		for range 10 {
			require.ErrorIs(t, call(b, errDown), errDown)
			made++
		}
		if round%2 == 0 {
			require.NoError(t, admin.ClientPause(ctx, 400*time.Millisecond).Err()) // longer than the 200 ms a batch waits
		}
		st.bt.flush()
		time.Sleep(450 * time.Millisecond)
		for range 3 {
			st.bt.flush() // the unknown batch again, then what came after
			time.Sleep(60 * time.Millisecond)
		}
	}
	require.NoError(t, st.Close())
	assert.Equal(t, int64(made), hashInt(t, admin, "breaker:", "once", "n"), "every outcome counted once")
	assert.Positive(t, st.Stats().Errors, "batches did time out")
}

// TestTimedOutLeaseIsGivenBack: an instance's probe-lease request times out after Redis granted
// it. Once Redis answers again the instance gives the lease back, so another instance probes
// within moments instead of waiting out ProbeTimeout (a minute here).
func TestTimedOutLeaseIsGivenBack(t *testing.T) {
	srv := redistest.StartServer(t, 0)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = admin.Close() })
	var bs []*Breaker
	for _, st := range storesOn(t, redis.Options{}, RedisConfig{Timeout: 20 * time.Millisecond, RetryInterval: 50 * time.Millisecond, FlushInterval: 50 * time.Millisecond}, srv.Addr(), srv.Addr()) {
		bs = append(bs, newBreaker(t, Config{Name: "lease", Failures: 1, OpenDuration: 100 * time.Millisecond, ProbeTimeout: time.Minute, Store: st}))
	}
	a, b := bs[0], bs[1]
	ctx := context.Background()
	require.ErrorIs(t, call(a, errDown), errDown)
	require.Eventually(t, func() bool { return b.State() != StateClosed }, 3*time.Second, time.Millisecond)
	time.Sleep(150 * time.Millisecond) // the open period is over

	require.NoError(t, admin.ClientPause(ctx, 300*time.Millisecond).Err())
	tok, err := a.Allow(ctx) // its lease request times out; Redis grants it once the pause ends
	if err == nil {
		defer tok.Done(nil)
	}
	start := time.Now()
	require.Eventually(t, func() bool {
		tok, err := b.Allow(ctx)
		if err != nil {
			return false
		}
		shared := tok.lease < 0 // not a probe b runs alone while its store is down
		tok.Done(errDown)       // keep the breaker from closing: only the lease matters here
		return shared
	}, 5*time.Second, 10*time.Millisecond, "b gets the lease a gave back")
	t.Logf("b probed %v after the pause began", time.Since(start))
}

// storesOn returns a RedisStore configured by cfg on the Redis at each of addrs, each on a
// client of its own as instances of a service have: a private redis-server that the test stops
// and starts again, or a proxy to it that the test freezes or cuts. The clients have opt's
// options, with go-redis retries off: a script may have run before a network error.
func storesOn(t *testing.T, opt redis.Options, cfg RedisConfig, addrs ...string) []*RedisStore {
	t.Helper()
	var out []*RedisStore
	for _, addr := range addrs {
		o := opt
		o.Addr, o.MaxRetries = addr, -1
		rdb := redis.NewClient(&o)
		s, err := NewRedisStore(rdb, cfg)
		require.NoError(t, err)
		t.Cleanup(func() {
			_ = s.Close()
			_ = rdb.Close()
		})
		out = append(out, s)
	}
	return out
}

// outageFleet is storesOn with the default RedisConfig, on clients that give up dialing a
// stopped server soon.
func outageFleet(t *testing.T, addrs ...string) []*RedisStore {
	t.Helper()
	return storesOn(t, redis.Options{DialTimeout: 100 * time.Millisecond}, RedisConfig{}, addrs...)
}

// sharedPair is the breakers called name, open for 200 ms, on the first two stores, once a
// success of each reached Redis (read through admin) and the replies reached them.
func sharedPair(t *testing.T, admin *redis.Client, name string, stores []*RedisStore) (a, b *Breaker) {
	t.Helper()
	cfg := Config{Name: name, OpenDuration: 200 * time.Millisecond, Store: stores[0]}
	a = newBreaker(t, cfg)
	cfg.Store = stores[1]
	b = newBreaker(t, cfg)
	require.NoError(t, call(a, nil))
	require.NoError(t, call(b, nil))
	require.Eventually(t, func() bool {
		return hashInt(t, admin, "breaker:", name, "n") == 2 && a.link.gen.Load() >= 0 && b.link.gen.Load() >= 0
	}, eventually, time.Millisecond)
	return a, b
}

// TestOutageOutcomesCountInTotalsOnly: while Redis is down, instance a fails five times, opens on
// its own, probes alone successfully, closes, and fails four times more. Once Redis is back
// (empty: the server restarts) and nobody calls, the shared breaker stays closed on every
// instance: the outage's outcomes reach the totals only.
func TestOutageOutcomesCountInTotalsOnly(t *testing.T) {
	srv := redistest.StartServer(t, 0)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = admin.Close() })
	stores := outageFleet(t, srv.Addr(), srv.Addr())
	a, b := sharedPair(t, admin, "outage", stores)

	srv.Stop()
	require.Eventually(t, func() bool { return stores[0].Stats().Down && stores[1].Stats().Down }, eventually, time.Millisecond)
	for i := range 5 {
		require.ErrorIs(t, call(a, errDown), errDown)
		if i%2 == 0 {
			time.Sleep(150 * time.Millisecond) // a batch fails in between
		}
	}
	require.Equal(t, StateOpen, a.State(), "five consecutive failures open a on its own")
	time.Sleep(200 * time.Millisecond) // the open period is over
	require.NoError(t, call(a, nil), "a probes alone")
	require.Equal(t, StateClosed, a.State())
	for range 4 {
		require.ErrorIs(t, call(a, errDown), errDown)
	}
	time.Sleep(250 * time.Millisecond) // batches fail
	opens := a.Stats().Opens + b.Stats().Opens

	redistest.StartServer(t, srv.Port())
	require.Eventually(t, func() bool { return !stores[0].Stats().Down && !stores[1].Stats().Down }, eventually, time.Millisecond)
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		require.Equal(t, StateClosed, a.State(), "nobody calls: a stays closed for ten flush intervals")
		require.Equal(t, StateClosed, b.State(), "nobody calls: b stays closed for ten flush intervals")
	}
	assert.Equal(t, opens, a.Stats().Opens+b.Stats().Opens, "no instance opened after Redis came back")
	assert.Zero(t, hashInt(t, admin, "breaker:", "outage", "s"), "the shared state is closed")
	assert.Zero(t, hashInt(t, admin, "breaker:", "outage", "cf"), "with no run of failures")
	assert.Equal(t, int64(10), hashInt(t, admin, "breaker:", "outage", "n"), "the outage's outcomes reach the totals")
	assert.Equal(t, int64(9), hashInt(t, admin, "breaker:", "outage", "nf"))
	for range 5 {
		require.ErrorIs(t, call(b, errDown), errDown)
	}
	require.Eventually(t, func() bool { return a.State() == StateOpen }, eventually, time.Millisecond, "still shared")
}

// TestLocalProbeSuccessEndsTheSharedRun: instance a, cut off from Redis while b is not, extends
// the shared run of three failures with two of its own, opens on its own, and probes alone
// successfully. Once a reaches Redis again, that success has ended the shared run: b needs five
// new failures, not two, to open the breaker.
func TestLocalProbeSuccessEndsTheSharedRun(t *testing.T) {
	srv := redistest.StartServer(t, 0)
	proxy := redistest.StartProxy(t, srv.Addr())
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = admin.Close() })
	a, b := sharedPair(t, admin, "run", outageFleet(t, proxy.Addr(), srv.Addr()))
	stores := []*RedisStore{a.cfg.Store.(*RedisStore), b.cfg.Store.(*RedisStore)}
	field := func(f string) int64 { return hashInt(t, admin, "breaker:", "run", f) }
	for range 3 {
		require.ErrorIs(t, call(a, errDown), errDown)
	}
	require.Eventually(t, func() bool { return field("cf") == 3 }, eventually, time.Millisecond)

	proxy.Blackhole(true)
	proxy.Cut()
	for range 2 {
		require.ErrorIs(t, call(a, errDown), errDown)
	}
	require.Equal(t, StateOpen, a.State(), "five consecutive failures open a on its own")
	require.Eventually(t, func() bool { return stores[0].Stats().Down }, 5*time.Second, time.Millisecond,
		"a's batches time out") // meanwhile the open period ends
	require.NoError(t, call(a, nil), "a probes alone")
	require.Equal(t, StateClosed, a.State())

	proxy.Blackhole(false)
	require.Eventually(t, func() bool { return field("n") == 8 }, 5*time.Second, time.Millisecond,
		"a's outcomes reach the totals once it reaches Redis again")
	assert.Zero(t, field("cf"), "a's probe success ended the shared run")
	for range 2 {
		require.ErrorIs(t, call(b, errDown), errDown)
	}
	require.Eventually(t, func() bool { return field("n") == 10 }, eventually, time.Millisecond)
	assert.Equal(t, StateClosed, a.State(), "the run a's probe ended is not replayed")
	assert.Equal(t, StateClosed, b.State())
	for range 3 {
		require.ErrorIs(t, call(b, errDown), errDown)
	}
	assert.Equal(t, StateOpen, b.State(), "five new failures open it")
	require.Eventually(t, func() bool { return field("s") == 1 }, eventually, time.Millisecond, "everywhere")
}

// TestIdleStoreSeesRedisGoAndComeBack: a store reports Down soon after Redis stops, without a
// call, and up again soon after Redis is back, without a call, whether its breakers were busy
// during the outage or idle throughout.
func TestIdleStoreSeesRedisGoAndComeBack(t *testing.T) {
	srv := redistest.StartServer(t, 0)
	stores := outageFleet(t, srv.Addr(), srv.Addr())
	idle, busy := stores[0], stores[1]
	_ = newBreaker(t, Config{Name: "idle", Store: idle}) // never called
	b := newBreaker(t, Config{Name: "busy", Failures: 1_000, Store: busy})
	require.False(t, idle.Stats().Down)

	srv.Stop()
	start := time.Now()
	require.Eventually(t, func() bool {
		_ = call(b, errDown) // outcomes to send
		return busy.Stats().Down
	}, 2*time.Second, time.Millisecond, "the busy store's batches fail")
	require.Eventually(t, func() bool { return idle.Stats().Down }, 2*time.Second, time.Millisecond,
		"the idle store's subscription sees Redis go")
	t.Logf("idle store down after %v", time.Since(start))

	calls := []StoreStats{idle.Stats(), busy.Stats()}
	redistest.StartServer(t, srv.Port())
	start = time.Now()
	require.Eventually(t, func() bool { return !idle.Stats().Down && !busy.Stats().Down }, 2*time.Second, time.Millisecond,
		"both stores see Redis come back without a call")
	t.Logf("up after %v", time.Since(start))
	assert.Equal(t, calls[0].Calls, idle.Stats().Calls, "no probe lease or report was needed")
	assert.Equal(t, calls[1].Calls, busy.Stats().Calls)
}

// TestCloseIsBoundedWithRedisFrozen: Redis stops answering (a blackhole: connections stay open,
// nothing comes back) while a batch is in flight, a failed batch waits to be sent again and new
// outcomes wait behind it. Close still returns within ten times Timeout, as RedisStore
// documents, on a client with and without ContextTimeoutEnabled.
func TestCloseIsBoundedWithRedisFrozen(t *testing.T) {
	const timeout = 30 * time.Millisecond
	srv := redistest.StartServer(t, 0)
	eachClientMode(t, func(t *testing.T, opt redis.Options) {
		proxy := redistest.StartProxy(t, srv.Addr())
		st := storesOn(t, opt, RedisConfig{Timeout: timeout, FlushInterval: 10 * time.Millisecond}, proxy.Addr())[0]
		lag := watchLag(t)
		b := newBreaker(t, Config{Name: "close", DisableConsecutiveFailures: true, Store: st})
		require.NoError(t, call(b, nil))
		require.Eventually(t, func() bool { return st.Stats().Flushes > 0 && b.link.gen.Load() >= 0 }, eventually, time.Millisecond)

		proxy.Blackhole(true)
		require.ErrorIs(t, call(b, errDown), errDown)
		require.Eventually(t, func() bool { return st.Stats().Errors > 0 }, eventually, time.Millisecond,
			"a batch timed out: it waits to be sent again")
		require.ErrorIs(t, call(b, errDown), errDown) // waits behind it
		time.Sleep(20 * time.Millisecond)             // the batch sent again is in flight
		start := time.Now()
		require.NoError(t, st.Close())
		took := time.Since(start)
		t.Logf("Close took %v with Redis frozen; the machine's worst delay %v", took, lag())
		assert.Less(t, took, 10*timeout+20*time.Millisecond+lag(), "Close returns within ten times Timeout")
		proxy.Blackhole(false)
	})
}

// eachClientMode runs fn with the options of a client with ContextTimeoutEnabled, and of one
// without: the store bounds calls differently on each.
func eachClientMode(t *testing.T, fn func(t *testing.T, opt redis.Options)) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("ContextTimeoutEnabled=%v", on), func(t *testing.T) {
			fn(t, redis.Options{ContextTimeoutEnabled: on})
		})
	}
}

// TestCallsWithRedisFrozen: two instances call one shared breaker from several goroutines while
// Redis stops answering (a blackhole: connections stay open, nothing comes back) and then answers
// again. The dependency fails two calls in three, so the breakers trip, probe and close again
// and again, taking probe leases in Allow and reporting probes in Done, on the calls' path. No
// call fails because of Redis (every refusal is ErrOpen), and Allow and Done each wait at most
// Timeout for Redis, on clients with and without ContextTimeoutEnabled.
func TestCallsWithRedisFrozen(t *testing.T) {
	const timeout = 100 * time.Millisecond
	srv := redistest.StartServer(t, 0)
	eachClientMode(t, func(t *testing.T, opt redis.Options) {
		proxy := redistest.StartProxy(t, srv.Addr())
		stores := storesOn(t, opt, RedisConfig{Timeout: timeout}, proxy.Addr(), proxy.Addr())
		lag := watchLag(t)
		var bs []*Breaker
		for _, st := range stores {
			bs = append(bs, newBreaker(t, Config{Name: "frozen", Failures: 3, OpenDuration: 20 * time.Millisecond,
				Store: st, Logger: slog.New(slog.DiscardHandler)}))
		}
		var slowest, waited, foreign, probes atomic.Int64
		took := func(start time.Time) {
			d := int64(time.Since(start))
			raise(&slowest, d)
			if d > int64(timeout/2) {
				waited.Add(1) // a round trip that Redis left unanswered
			}
		}
		stop := hammer(bs, 4, func(_, g, n int, b *Breaker) {
			start := time.Now()
			tok, err := b.Allow(context.Background())
			took(start)
			if err != nil {
				if !errors.Is(err, ErrOpen) {
					foreign.Add(1)
				}
				time.Sleep(time.Millisecond)
				return
			}
			if tok.lease != 0 {
				probes.Add(1)
			}
			var outcome error
			if (n+g)%3 != 0 {
				outcome = errDown
			}
			start = time.Now()
			tok.Done(outcome)
			took(start)
		})
		time.Sleep(300 * time.Millisecond)
		before := []StoreStats{stores[0].Stats(), stores[1].Stats()}
		proxy.Blackhole(true)
		time.Sleep(2 * time.Second)
		frozen := []StoreStats{stores[0].Stats(), stores[1].Stats()}
		proxy.Blackhole(false)
		proxy.Cut() // what Redis never answered is gone
		require.Eventually(t, func() bool { return !stores[0].Stats().Down && !stores[1].Stats().Down },
			5*time.Second, time.Millisecond, "the instances use Redis again")
		time.Sleep(300 * time.Millisecond)
		stop()

		t.Logf("slowest Allow or Done %v; %d waited on Redis; %d probes; the machine's worst delay %v",
			time.Duration(slowest.Load()), waited.Load(), probes.Load(), lag())
		assert.Zero(t, foreign.Load(), "no call failed because of Redis")
		assert.Less(t, time.Duration(slowest.Load()), timeout+20*time.Millisecond+lag(),
			"Allow and Done each wait at most Timeout for Redis (plus the machine's delays)")
		for i := range stores {
			assert.Greater(t, frozen[i].Calls, before[i].Calls, "instance %d took probe leases while Redis was frozen", i)
			assert.Greater(t, frozen[i].Errors, before[i].Errors, "and Redis left them unanswered")
		}
		assert.Positive(t, waited.Load(), "calls reached the frozen Redis")
	})
}

// TestExactProbesAcrossRedisRestart: three instances call a shared breaker whose dependency is
// down, so it goes through half-open again and again, with two probes at a time. Redis is
// killed while a probe runs and started again, empty. At no moment while the instances share
// state, before the restart or after, do more than Probes probes hold a lease from the store,
// and both places are used: no lease is leaked by the restart.
func TestExactProbesAcrossRedisRestart(t *testing.T) {
	const probes = 2
	srv := redistest.StartServer(t, 0)
	stores := outageFleet(t, srv.Addr(), srv.Addr(), srv.Addr())
	var bs []*Breaker
	for _, st := range stores {
		bs = append(bs, newBreaker(t, Config{Name: "probes", Failures: 3, OpenDuration: 50 * time.Millisecond,
			Probes: probes, ProbeTimeout: time.Minute, Store: st, Logger: slog.New(slog.DiscardHandler)}))
	}
	var inProbe, most, alone atomic.Int64
	stop := hammer(bs, 4, func(_, _, _ int, b *Breaker) {
		tok, err := b.Allow(context.Background())
		if err != nil {
			time.Sleep(time.Millisecond)
			return
		}
		switch {
		case tok.lease < 0: // a lease of the store
			raise(&most, inProbe.Add(1))
			time.Sleep(3 * time.Millisecond)
			inProbe.Add(-1)
		case tok.lease > 0:
			alone.Add(1) // a probe the instance ran alone, its store down
		}
		tok.Done(errDown)
	})
	require.Eventually(t, func() bool { return inProbe.Load() > 0 }, eventually, 100*time.Microsecond, "a probe runs")
	time.Sleep(500 * time.Millisecond)
	before := most.Load()

	srv.Stop() // during half-open, probes running
	require.Eventually(t, func() bool { return stores[0].Stats().Down }, eventually, time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	redistest.StartServer(t, srv.Port())
	require.Eventually(t, func() bool {
		return !stores[0].Stats().Down && !stores[1].Stats().Down && !stores[2].Stats().Down
	}, 5*time.Second, time.Millisecond, "the instances use Redis again")
	time.Sleep(100 * time.Millisecond) // leases of the former server have been reported
	most.Store(0)
	time.Sleep(time.Second)
	stop()

	t.Logf("at most %d probes at once before the restart, %d after; %d probes run alone", before, most.Load(), alone.Load())
	assert.Equal(t, int64(probes), before, "exactly Probes probes at a time across the instances")
	assert.Equal(t, int64(probes), most.Load(), "and after Redis restarted")
}

// TestNewRedisStoreWithRedisFrozen: NewRedisStore waits at most Timeout for its subscription
// when Redis does not answer, and the store subscribes as soon as Redis answers: it then hears
// another instance's trip.
func TestNewRedisStoreWithRedisFrozen(t *testing.T) {
	const timeout = 100 * time.Millisecond
	srv := redistest.StartServer(t, 0)
	proxy := redistest.StartProxy(t, srv.Addr())
	lag := watchLag(t)
	proxy.Blackhole(true)
	start := time.Now()
	frozen := storesOn(t, redis.Options{ContextTimeoutEnabled: true},
		RedisConfig{Timeout: timeout, FlushInterval: time.Hour}, proxy.Addr())[0]
	took := time.Since(start)
	t.Logf("NewRedisStore took %v with Redis frozen; the machine's worst delay %v", took, lag())
	assert.Less(t, took, timeout+20*time.Millisecond+lag(), "NewRedisStore waits at most Timeout")

	healthy := outageFleet(t, srv.Addr())[0]
	b := newBreaker(t, Config{Name: "late", Failures: 1, OpenDuration: time.Minute, Store: frozen})
	a := newBreaker(t, Config{Name: "late", Failures: 1, OpenDuration: time.Minute, Store: healthy})
	proxy.Blackhole(false)
	proxy.Cut() // what Redis never answered is gone
	require.Eventually(t, func() bool { return frozen.sub.Hearing() }, 5*time.Second, time.Millisecond,
		"the store subscribes once Redis answers")
	require.ErrorIs(t, call(a, errDown), errDown)
	require.Eventually(t, func() bool { return b.State() == StateOpen }, eventually, time.Millisecond,
		"the other instance's trip reaches b")
	assert.Positive(t, frozen.Stats().Notifications, "through the announcement (b flushes hourly)")
}
