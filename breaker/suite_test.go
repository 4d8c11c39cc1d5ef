package breaker

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/rediskey"
	"github.com/outgrow/outgrow/internal/redistest"
)

// The shared-state contract, run on the memory store and on every Redis backend: breakers of
// one name on different stores (instances) trip, probe and close together.

const eventually = 3 * time.Second

// fleet is n instances of one breaker sharing state through be. Their stores flush when a
// breaker opens or an announcement arrives, and when the test calls flush; never on a timer, so
// that a test's flushes are the only ones carrying outcomes.
type fleet struct {
	be     redistest.Backend
	name   string
	stores []Store
	bs     []*Breaker
}

func newFleet(t *testing.T, be redistest.Backend, n int, cfg Config) *fleet {
	t.Helper()
	cfg.Name += ":" + t.Name() // subtests share a backend's prefix
	f := &fleet{be: be, name: cfg.Name}
	var mem *MemoryStore
	for range n {
		var st Store
		switch {
		case !be.IsRedis() && mem != nil:
			st = mem
		case !be.IsRedis():
			s, err := NewMemoryStore(MemoryConfig{FlushInterval: time.Hour})
			require.NoError(t, err)
			mem, st = s, s
			t.Cleanup(func() { _ = s.Close() })
		default:
			s, err := NewRedisStore(be.Client, RedisConfig{Prefix: be.Prefix, FlushInterval: time.Hour, Timeout: time.Second})
			require.NoError(t, err)
			st = s
			t.Cleanup(func() { _ = s.Close() })
		}
		f.stores = append(f.stores, st)
		c := cfg
		c.Store = st
		f.bs = append(f.bs, newBreaker(t, c))
	}
	return f
}

// totals reads the outcomes and failures the shared state counted.
func (f *fleet) totals(t *testing.T) (n, failed int64) {
	t.Helper()
	if m, ok := f.stores[0].(*MemoryStore); ok {
		return m.totals(f.name)
	}
	return hashInt(t, f.be.Client, f.be.Prefix, f.name, "n"), hashInt(t, f.be.Client, f.be.Prefix, f.name, "nf")
}

// totals returns the outcomes and failures the memory store counted for name.
func (s *MemoryStore) totals(name string) (n, failed int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.states[name]; st != nil && s.clock().UnixMilli() < st.expires {
		return st.outcomes, st.failures
	}
	return 0, 0
}

// hashInt reads an integer field of a breaker's shared state; 0 when absent.
func hashInt(t *testing.T, rdb redis.UniversalClient, prefix, name, field string) int64 {
	t.Helper()
	v, err := rdb.HGet(context.Background(), rediskey.Key(prefix, name, ""), field).Int64()
	if errors.Is(err, redis.Nil) {
		return 0
	}
	require.NoError(t, err)
	return v
}

// expire drops the shared state, as its TTL would.
func (f *fleet) expire(t *testing.T) {
	t.Helper()
	if m, ok := f.stores[0].(*MemoryStore); ok {
		m.mu.Lock()
		delete(m.states, f.name)
		m.mu.Unlock()
		return
	}
	require.NoError(t, f.be.Client.Del(context.Background(), rediskey.Key(f.be.Prefix, f.name, "")).Err())
}

// flush sends every instance's pending outcomes now.
func (f *fleet) flush() {
	for _, s := range f.stores {
		s.batcher().flush()
	}
}

func TestSharedSuite(t *testing.T) {
	redistest.Each(t, func(t *testing.T, be redistest.Backend) {
		t.Run("FailuresAddUpAcrossInstances", func(t *testing.T) {
			f := newFleet(t, be, 2, Config{Name: "pay"})
			a, b := f.bs[0], f.bs[1]
			for range 3 {
				require.ErrorIs(t, call(a, errDown), errDown)
			}
			f.flush()
			for range 2 {
				require.ErrorIs(t, call(b, errDown), errDown)
			}
			assert.Equal(t, StateClosed, b.State(), "two failures of its own do not open b")
			f.flush()
			require.Eventually(t, func() bool {
				return a.State() == StateOpen && b.State() == StateOpen
			}, eventually, time.Millisecond, "five failures among the instances open them all")
			require.ErrorIs(t, call(a, nil), ErrOpen)
			n, failed := f.totals(t)
			assert.Equal(t, int64(5), n)
			assert.Equal(t, int64(5), failed)
		})
		t.Run("SuccessElsewhereResetsTheCount", func(t *testing.T) {
			f := newFleet(t, be, 2, Config{Name: "pay"})
			a, b := f.bs[0], f.bs[1]
			for range 4 {
				require.ErrorIs(t, call(a, errDown), errDown)
			}
			f.flush()
			require.NoError(t, call(b, nil))
			f.flush()
			for range 4 {
				require.ErrorIs(t, call(b, errDown), errDown)
			}
			f.flush()
			assert.Equal(t, StateClosed, a.State())
			assert.Equal(t, StateClosed, b.State())
		})
		t.Run("FirstReplyKeepsTheLocalRun", func(t *testing.T) {
			// The shared state went through transitions before a was made, so a's first reply
			// has a generation a never saw; but the store counted a's outcomes in it.
			f := newFleet(t, be, 1, Config{Name: "pay", OpenDuration: 50 * time.Millisecond})
			b := f.bs[0]
			for range 5 {
				require.ErrorIs(t, call(b, errDown), errDown)
			}
			require.Eventually(t, func() bool { return call(b, nil) == nil }, eventually, 5*time.Millisecond,
				"b's probe closes the shared breaker")
			require.Equal(t, StateClosed, b.State())
			a := newBreaker(t, Config{Name: f.name, OpenDuration: 50 * time.Millisecond, Store: f.stores[0]})
			for range 3 {
				require.ErrorIs(t, call(a, errDown), errDown)
			}
			f.flush() // a learns the shared state for the first time
			require.Equal(t, b.link.gen.Load(), a.link.gen.Load(), "a is in b's generation, after two transitions")
			assert.Equal(t, 3, a.Stats().ConsecutiveFailures, "the failures it sent still count on a")
			for range 2 {
				require.ErrorIs(t, call(a, errDown), errDown)
			}
			assert.Equal(t, StateOpen, a.State(), "the fifth consecutive failure opens a at once")
		})
		t.Run("StateCreatedAgainKeepsTheLocalRun", func(t *testing.T) {
			// Unused past its TTL, the shared state is gone; the next batch creates it again with
			// a newer generation in which nothing has happened yet. For a closed instance that
			// is no transition: the calls it has in flight, and its run of failures, still count.
			f := newFleet(t, be, 2, Config{Name: "pay"})
			a, b := f.bs[0], f.bs[1]
			require.NoError(t, call(a, nil))
			f.flush() // a has seen a generation
			f.expire(t)
			time.Sleep(2 * time.Millisecond) // the new state's generations start at its creation time
			for range 2 {
				require.ErrorIs(t, call(a, errDown), errDown)
			}
			inFlight, err := a.Allow(context.Background())
			require.NoError(t, err)
			f.flush() // created again
			assert.True(t, inFlight.Done(errDown), "a call in flight across the new state's creation counts")
			assert.Equal(t, 3, a.Stats().ConsecutiveFailures)
			for range 2 {
				require.ErrorIs(t, call(b, errDown), errDown)
			}
			f.flush()
			require.Eventually(t, func() bool {
				return a.State() == StateOpen && b.State() == StateOpen
			}, eventually, time.Millisecond, "five failures among the instances open them all")
		})
		t.Run("LocalTripReachesTheOthers", func(t *testing.T) {
			f := newFleet(t, be, 3, Config{Name: "pay", OpenDuration: time.Minute})
			for range 5 {
				require.ErrorIs(t, call(f.bs[0], errDown), errDown)
			}
			assert.Equal(t, StateOpen, f.bs[0].State(), "an instance opens on its own failures at once")
			require.Eventually(t, func() bool {
				return f.bs[1].State() == StateOpen && f.bs[2].State() == StateOpen
			}, eventually, time.Millisecond)
			var oe *OpenError
			err := call(f.bs[2], nil)
			require.ErrorAs(t, err, &oe)
			assert.InDelta(t, time.Minute.Seconds(), oe.RetryAfter().Seconds(), 5)
		})
		t.Run("ExactlyNProbesAcrossInstances", func(t *testing.T) {
			cfg := Config{Name: "pay", OpenDuration: 100 * time.Millisecond, Probes: 2, ProbeTimeout: time.Minute}
			f := newFleet(t, be, 4, cfg)
			for range 5 {
				require.ErrorIs(t, call(f.bs[0], errDown), errDown)
			}
			require.Eventually(t, func() bool {
				for _, b := range f.bs {
					if b.State() == StateClosed {
						return false
					}
				}
				return true
			}, eventually, time.Millisecond)
			time.Sleep(400 * time.Millisecond) // the shared open period is over
			var mu sync.Mutex
			var probes []Token
			var wg sync.WaitGroup
			for _, b := range f.bs {
				for range 8 {
					wg.Go(func() {
						for range 20 {
							if tok, err := b.Allow(context.Background()); err == nil {
								mu.Lock()
								probes = append(probes, tok)
								mu.Unlock()
							}
							time.Sleep(time.Millisecond)
						}
					})
				}
			}
			wg.Wait()
			require.Len(t, probes, 2, "exactly Probes probes at a time, whatever the instances")
			for _, p := range probes {
				assert.True(t, p.Done(nil), "a probe's outcome counts")
			}
			require.Eventually(t, func() bool {
				for _, b := range f.bs {
					if b.State() != StateClosed {
						return false
					}
				}
				return true
			}, eventually, time.Millisecond, "two successful probes close every instance")
			for _, b := range f.bs {
				require.NoError(t, call(b, nil))
			}
		})
		t.Run("FailedProbeReopensEverywhere", func(t *testing.T) {
			cfg := Config{Name: "pay", OpenDuration: 300 * time.Millisecond}
			f := newFleet(t, be, 2, cfg)
			for range 5 {
				require.ErrorIs(t, call(f.bs[0], errDown), errDown)
			}
			require.Eventually(t, func() bool { return f.bs[1].State() != StateClosed }, eventually, time.Millisecond)
			var tok Token
			require.Eventually(t, func() bool {
				var err error
				tok, err = f.bs[1].Allow(context.Background())
				return err == nil
			}, eventually, 5*time.Millisecond, "b probes once the open period is over")
			_, err := f.bs[0].Allow(context.Background())
			require.ErrorIs(t, err, ErrOpen, "while b's probe runs, a waits")
			assert.True(t, tok.Done(errDown))
			assert.Equal(t, StateOpen, f.bs[1].State())
			require.Eventually(t, func() bool {
				return f.bs[0].link.gen.Load() == f.bs[1].link.gen.Load() && f.bs[0].State() == StateOpen
			}, eventually, time.Millisecond, "a learns the reopening")
		})
		t.Run("HungProbeLeaseExpires", func(t *testing.T) {
			cfg := Config{Name: "pay", OpenDuration: 50 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond}
			f := newFleet(t, be, 2, cfg)
			for range 5 {
				require.ErrorIs(t, call(f.bs[0], errDown), errDown)
			}
			require.Eventually(t, func() bool { return f.bs[1].State() != StateClosed }, eventually, time.Millisecond)
			var hung Token
			require.Eventually(t, func() bool {
				var err error
				hung, err = f.bs[0].Allow(context.Background())
				return err == nil
			}, eventually, 5*time.Millisecond, "a probes once the open period is over")
			var probe Token
			require.Eventually(t, func() bool {
				var err error
				probe, err = f.bs[1].Allow(context.Background())
				return err == nil
			}, eventually, 5*time.Millisecond, "the hung probe's lease ends and b may probe")
			assert.True(t, probe.Done(nil))
			assert.False(t, hung.Done(nil), "the hung probe reports after its generation ended")
			require.Eventually(t, func() bool { return f.bs[0].State() == StateClosed }, eventually, time.Millisecond)
		})
		t.Run("LateOutcomesCountInTotalsOnly", func(t *testing.T) {
			f := newFleet(t, be, 2, Config{Name: "pay", Failures: 2})
			a, b := f.bs[0], f.bs[1]
			late, err := b.Allow(context.Background())
			require.NoError(t, err)
			for range 2 {
				require.ErrorIs(t, call(a, errDown), errDown)
			}
			require.Eventually(t, func() bool { return b.State() == StateOpen }, eventually, time.Millisecond)
			assert.False(t, late.Done(errDown), "an outcome from before the trip does not count")
			f.flush()
			n, failed := f.totals(t)
			assert.Equal(t, int64(3), n)
			assert.Equal(t, int64(3), failed)
		})
		t.Run("CancellationIsNotShared", func(t *testing.T) {
			f := newFleet(t, be, 1, Config{Name: "pay", Failures: 1})
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			for range 5 {
				require.ErrorIs(t, f.bs[0].Do(ctx, func(ctx context.Context) error { return ctx.Err() }), context.Canceled)
			}
			f.flush()
			n, _ := f.totals(t)
			assert.Zero(t, n)
			assert.Equal(t, StateClosed, f.bs[0].State())
		})
		t.Run("RetryAfterHoldsEveryInstance", func(t *testing.T) {
			f := newFleet(t, be, 2, Config{Name: "pay"})
			resp, err := get(t, f.bs[0].Transport(respond(http.StatusServiceUnavailable, "Retry-After", "20")))
			require.NoError(t, err)
			resp.Body.Close()
			require.Eventually(t, func() bool { return f.bs[1].State() == StateOpen }, eventually, time.Millisecond,
				"the downstream's Retry-After pauses every instance")
			var oe *OpenError
			require.ErrorAs(t, call(f.bs[1], nil), &oe)
			assert.InDelta(t, 20, oe.RetryAfter().Seconds(), 2)
		})
		t.Run("DisabledBreakerDoesNotPauseOthers", func(t *testing.T) {
			f := newFleet(t, be, 2, Config{Name: "pay"})
			f.bs[0].SetMode(ModeDisabled)
			resp, err := get(t, f.bs[0].Transport(respond(http.StatusServiceUnavailable, "Retry-After", "20")))
			require.NoError(t, err)
			resp.Body.Close()
			f.flush()
			require.NoError(t, call(f.bs[1], nil))
			assert.Equal(t, StateClosed, f.bs[1].State())
		})
		t.Run("FailureRateOverCallsAcrossInstances", func(t *testing.T) {
			cfg := Config{Name: "pay", DisableConsecutiveFailures: true, FailureRate: 0.5, MinCalls: 8, WindowCalls: 20}
			f := newFleet(t, be, 2, cfg)
			for i := range 8 {
				err := error(nil)
				if i%2 == 0 {
					err = errDown
				}
				_ = call(f.bs[i%2], err) // 4 calls each: below MinCalls alone
				f.flush()
			}
			require.Eventually(t, func() bool {
				return f.bs[0].State() == StateOpen && f.bs[1].State() == StateOpen
			}, eventually, time.Millisecond, "4 failures in the last 8 calls among the instances")
		})
		t.Run("FailureRateAcrossInstances", func(t *testing.T) {
			cfg := Config{Name: "pay", DisableConsecutiveFailures: true, FailureRate: 0.5, MinCalls: 10, Window: 10 * time.Second}
			f := newFleet(t, be, 2, cfg)
			for i := range 10 {
				b := f.bs[i%2]
				err := errDown
				if i%4 == 0 {
					err = nil
				}
				_ = call(b, err)
				assert.Equal(t, StateClosed, b.State(), "five calls of its own are below MinCalls")
			}
			f.flush()
			require.Eventually(t, func() bool {
				return f.bs[0].State() == StateOpen && f.bs[1].State() == StateOpen
			}, eventually, time.Millisecond, "7 failures of 10 calls among the instances")
		})
	})
}

func TestSharedKeyHasTTL(t *testing.T) {
	for _, k := range redistest.Kinds()[1:] {
		t.Run(string(k), func(t *testing.T) {
			be := redistest.Open(t, k)
			f := newFleet(t, be, 1, Config{Name: "pay", OpenDuration: 2 * time.Second, Window: time.Second})
			for range 5 {
				_ = call(f.bs[0], errDown)
			}
			f.flush()
			ttl, err := be.Client.PTTL(context.Background(), rediskey.Key(be.Prefix, f.name, "")).Result()
			require.NoError(t, err)
			assert.Greater(t, ttl, 2*time.Second, "the key outlives the open period")
			assert.LessOrEqual(t, ttl, 4*time.Second, "but not by more than the longest setting")
		})
	}
}

func TestSharedStoreDownDecidesAlone(t *testing.T) {
	be := redistest.Open(t, redistest.Miniredis)
	var opened atomic.Int32
	f := newFleet(t, be, 1, Config{Name: "pay", OpenDuration: 100 * time.Millisecond, Hooks: Hooks{
		OnStateChange: func(_ context.Context, _ string, _, to State, _ Stats) {
			if to == StateOpen {
				opened.Add(1)
			}
		},
	}})
	b := f.bs[0]
	require.NoError(t, call(b, nil))
	f.flush()
	be.Mini.SetError("LOADING Redis is loading the dataset in memory")
	for range 5 {
		require.ErrorIs(t, call(b, errDown), errDown, "no call fails because of the store")
	}
	assert.Equal(t, StateOpen, b.State(), "the instance trips on its own")
	f.flush()
	require.Eventually(t, func() bool { return f.stores[0].(*RedisStore).Stats().Down }, eventually, time.Millisecond)
	time.Sleep(120 * time.Millisecond)
	require.NoError(t, call(b, nil), "the instance probes alone while the store is down")
	assert.Equal(t, StateClosed, b.State())

	be.Mini.SetError("")
	time.Sleep(600 * time.Millisecond) // RetryInterval
	require.NoError(t, call(b, nil))
	f.flush() // the batch that failed, sent again
	f.flush() // then what came after
	assert.False(t, f.stores[0].(*RedisStore).Stats().Down, "the store is used again")
	n, failed := f.totals(t)
	assert.Equal(t, int64(8), n, "outcomes of the outage reach the totals once the store is back")
	assert.Equal(t, int64(5), failed)
	assert.Equal(t, int32(1), opened.Load(), "the instance opened once, on its own")
}

// TestOutageOutcomesDoNotTripTheFleet: a's run of failures starts before the store fails
// (miniredis answers errors) and goes on during the failure, until a opens alone and probes
// alone successfully; then a fails four times more. When the store answers again, the fleet
// stays closed: the outage's failures count in the totals only, and a's probe success ended the
// shared run, so b opens the breaker after five new failures, not fewer.
func TestOutageOutcomesDoNotTripTheFleet(t *testing.T) {
	be := redistest.Open(t, redistest.Miniredis)
	f := newFleet(t, be, 2, Config{Name: "pay", OpenDuration: 100 * time.Millisecond})
	a, b := f.bs[0], f.bs[1]
	for range 3 {
		require.ErrorIs(t, call(a, errDown), errDown)
	}
	f.flush()
	require.Equal(t, int64(3), hashInt(t, be.Client, be.Prefix, f.name, "cf"))

	be.Mini.SetError("LOADING Redis is loading the dataset in memory")
	for range 2 {
		require.ErrorIs(t, call(a, errDown), errDown)
	}
	require.Equal(t, StateOpen, a.State(), "a opens on its own")
	f.flush()
	time.Sleep(120 * time.Millisecond)
	require.NoError(t, call(a, nil), "a probes alone")
	require.Equal(t, StateClosed, a.State())
	for range 4 {
		require.ErrorIs(t, call(a, errDown), errDown)
	}
	f.flush()

	be.Mini.SetError("")
	time.Sleep(600 * time.Millisecond) // RetryInterval
	for range 3 {
		f.flush() // the batch that failed, sent again, then what came after
	}
	assert.Equal(t, StateClosed, a.State())
	assert.Equal(t, StateClosed, b.State())
	assert.Zero(t, hashInt(t, be.Client, be.Prefix, f.name, "s"), "the shared breaker is closed")
	assert.Zero(t, hashInt(t, be.Client, be.Prefix, f.name, "cf"), "a's probe success ended the shared run")
	n, failed := f.totals(t)
	assert.Equal(t, int64(10), n, "the outage's outcomes reach the totals")
	assert.Equal(t, int64(9), failed)
	for range 4 {
		require.ErrorIs(t, call(b, errDown), errDown)
	}
	f.flush()
	assert.Equal(t, StateClosed, a.State(), "four new failures do not open it")
	require.ErrorIs(t, call(b, errDown), errDown)
	f.flush()
	require.Eventually(t, func() bool { return a.State() == StateOpen }, eventually, time.Millisecond, "five do, everywhere")
}

// TestSharedDeterministic runs the article's breaker shared by two instances on a MemoryStore
// with fake time: failures add up, the cooldown is 30 s, and hung, panicking and cancelled
// probes never wedge half-open across instances.
func TestSharedDeterministic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, err := NewMemoryStore(MemoryConfig{})
		require.NoError(t, err)
		defer store.Close()
		a := newBreaker(t, Config{Name: "db", Store: store})
		b := newBreaker(t, Config{Name: "db", Store: store})
		ctx := context.Background()
		for range 3 {
			require.ErrorIs(t, call(a, errDown), errDown)
		}
		for range 2 {
			require.ErrorIs(t, call(b, errDown), errDown)
		}
		time.Sleep(100 * time.Millisecond) // one flush
		synctest.Wait()
		require.Equal(t, StateOpen, a.State())
		require.Equal(t, StateOpen, b.State())
		var oe *OpenError
		require.ErrorAs(t, call(b, nil), &oe)
		assert.Equal(t, 30*time.Second, oe.RetryAfter().Round(time.Second))

		// After the cooldown one probe runs across both instances; it hangs.
		time.Sleep(30 * time.Second)
		hung, err := a.Allow(ctx)
		require.NoError(t, err)
		_, err = b.Allow(ctx)
		require.ErrorIs(t, err, ErrOpen, "one probe at a time across instances")

		// Its lease ends after ProbeTimeout (30 s): b probes, and panics.
		time.Sleep(30 * time.Second)
		synctest.Wait()
		require.Panics(t, func() {
			_ = b.Do(ctx, func(context.Context) error { panic("boom") })
		})
		synctest.Wait()
		require.Equal(t, StateOpen, b.State(), "a panicking probe reopens")
		assert.False(t, hung.Done(nil), "the hung probe's generation is over")
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		require.Equal(t, StateOpen, a.State())

		// Next probe: its caller gives up. That frees the lease without counting.
		time.Sleep(30 * time.Second)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		require.ErrorIs(t, a.Do(cctx, func(ctx context.Context) error { return ctx.Err() }), context.Canceled)
		synctest.Wait()
		require.NoError(t, b.Do(ctx, func(context.Context) error { return nil }), "the lease is free at once")
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		assert.Equal(t, StateClosed, a.State())
		assert.Equal(t, StateClosed, b.State())

		// Unused for longer than its TTL, the shared state is gone; the next one's generations
		// are above the old ones, so the instances keep sharing.
		time.Sleep(time.Minute)
		for range 3 {
			require.ErrorIs(t, call(a, errDown), errDown)
		}
		for range 2 {
			require.ErrorIs(t, call(b, errDown), errDown)
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		assert.Equal(t, StateOpen, a.State(), "failures add up in the new shared state")
		assert.Equal(t, StateOpen, b.State())
		time.Sleep(30 * time.Second)
		require.NoError(t, call(a, nil))
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		assert.Equal(t, StateClosed, b.State(), "and recover together")
	})
}

func TestSharedConfig(t *testing.T) {
	store := newMemoryStoreT(t)
	r, err := NewRegistry(RegistryConfig{Config: Config{Store: store}})
	require.NoError(t, err, "a registry names its breakers after their keys")
	require.NotNil(t, r.Get(""), "the empty key's breaker is not shared, but exists")
	var zero MemoryStore
	assert.NoError(t, zero.Close())
	assert.Equal(t, StoreStats{}, zero.Stats())
}

// TestCloseSendsEverything: a batch that failed and the outcomes made after it both reach Redis
// when the store closes.
func TestCloseSendsEverything(t *testing.T) {
	be := redistest.Open(t, redistest.Miniredis)
	st, err := NewRedisStore(be.Client, RedisConfig{Prefix: be.Prefix, FlushInterval: time.Hour, RetryInterval: time.Millisecond})
	require.NoError(t, err)
	b := newBreaker(t, Config{Name: "close", DisableConsecutiveFailures: true, Store: st})
	for range 5 {
		require.ErrorIs(t, call(b, errDown), errDown)
	}
	be.Mini.SetError("LOADING")
	st.bt.flush() // fails: the batch waits to be sent again
	be.Mini.SetError("")
	for range 7 {
		require.NoError(t, call(b, nil))
	}
	time.Sleep(5 * time.Millisecond) // past RetryInterval
	require.NoError(t, st.Close())
	assert.Equal(t, int64(12), hashInt(t, be.Client, be.Prefix, "close", "n"))
}
