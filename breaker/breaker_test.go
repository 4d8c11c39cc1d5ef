package breaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

var errDown = errors.New("dependency down")

func newBreaker(t *testing.T, cfg Config) *Breaker {
	t.Helper()
	b, err := New(cfg)
	require.NoError(t, err)
	return b
}

func call(b *Breaker, err error) error {
	return b.Do(context.Background(), func(context.Context) error { return err })
}

func TestArticleDefaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, Config{Name: "db"})
		for range 4 {
			require.ErrorIs(t, call(b, errDown), errDown)
		}
		require.NoError(t, call(b, nil), "a success resets the consecutive failures")
		for range 4 {
			require.ErrorIs(t, call(b, errDown), errDown)
		}
		assert.Equal(t, StateClosed, b.State())
		require.ErrorIs(t, call(b, errDown), errDown)
		assert.Equal(t, StateOpen, b.State(), "the fifth consecutive failure opens")

		err := call(b, nil)
		require.ErrorIs(t, err, ErrOpen)
		var oe *OpenError
		require.True(t, errors.As(err, &oe))
		assert.Equal(t, 30*time.Second, oe.RetryAfter())
		assert.Equal(t, "breaker db: open", err.Error())

		time.Sleep(29 * time.Second)
		assert.Equal(t, time.Second, oe.RetryAfter())
		require.ErrorIs(t, call(b, nil), ErrOpen)
		time.Sleep(time.Second)
		assert.Equal(t, StateHalfOpen, b.State(), "after the cooldown the next call probes")

		probe, err := b.Allow(context.Background())
		require.NoError(t, err)
		_, err = b.Allow(context.Background())
		require.ErrorIs(t, err, ErrOpen, "one probe at a time by default")
		require.True(t, errors.As(err, &oe))
		assert.Zero(t, oe.RetryAfter(), "busy probes: retry soon")
		assert.True(t, probe.Done(nil))
		assert.Equal(t, StateClosed, b.State(), "a successful probe closes")

		st := b.Stats()
		assert.Equal(t, uint64(9), st.Failures)
		assert.Equal(t, uint64(3), st.Rejected)
		assert.Equal(t, uint64(1), st.Opens)
	})
}

func TestFailedProbeReopens(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, Config{Failures: 1, OpenDuration: time.Second, Probes: 2, Successes: 2})
		require.ErrorIs(t, call(b, errDown), errDown)
		time.Sleep(time.Second)
		p1, err := b.Allow(context.Background())
		require.NoError(t, err)
		p2, err := b.Allow(context.Background())
		require.NoError(t, err)
		assert.True(t, p1.Done(nil))
		assert.Equal(t, StateHalfOpen, b.State(), "two successes are needed")
		assert.True(t, p2.Done(errDown))
		assert.Equal(t, StateOpen, b.State())
		var oe *OpenError
		require.True(t, errors.As(call(b, nil), &oe))
		assert.Equal(t, time.Second, oe.RetryAfter())
	})
}

// TestHungProbeDoesNotWedge: a probe that never reports frees its place after ProbeTimeout, and
// its late outcome does not free the lease of the probe that replaced it.
func TestHungProbeDoesNotWedge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, Config{Failures: 1, OpenDuration: 10 * time.Second, ProbeTimeout: 2 * time.Second})
		_ = call(b, errDown)
		time.Sleep(10 * time.Second)
		hung, err := b.Allow(context.Background())
		require.NoError(t, err)
		time.Sleep(time.Second)
		_, err = b.Allow(context.Background())
		require.ErrorIs(t, err, ErrOpen, "the lease still holds")
		time.Sleep(time.Second)
		second, err := b.Allow(context.Background())
		require.NoError(t, err, "the expired lease was reclaimed")
		hung.Done(context.Canceled) // late and ignored
		_, err = b.Allow(context.Background())
		require.ErrorIs(t, err, ErrOpen, "the late outcome did not free the new probe's lease")
		assert.True(t, second.Done(nil))
		assert.Equal(t, StateClosed, b.State())
	})
}

func TestPanickingProbeCountsAndRepanics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, Config{Failures: 1, OpenDuration: time.Second})
		_ = call(b, errDown)
		time.Sleep(time.Second)
		assert.PanicsWithValue(t, "boom", func() {
			_ = b.Do(context.Background(), func(context.Context) error { panic("boom") })
		})
		assert.Equal(t, StateOpen, b.State(), "the panicking probe failed")
		time.Sleep(time.Second)
		assert.NoError(t, call(b, nil), "and nothing is wedged")
	})
}

func TestCancellationNeverTrips(t *testing.T) {
	b := newBreaker(t, Config{Failures: 2})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 10 {
		err := b.Do(ctx, func(ctx context.Context) error { return ctx.Err() })
		require.ErrorIs(t, err, context.Canceled)
	}
	tok, _ := b.Allow(context.Background())
	assert.False(t, tok.Done(context.Canceled), "ignored outcomes do not count")
	assert.Equal(t, StateClosed, b.State())
	assert.Zero(t, b.Stats().Failures)
}

func TestStaleOutcomesDoNotCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, Config{Failures: 1, OpenDuration: time.Second})
		old, _ := b.Allow(context.Background())
		_ = call(b, errDown)
		assert.False(t, old.Done(nil), "an outcome from before the trip does not count")
		time.Sleep(time.Second)
		probe, _ := b.Allow(context.Background())
		assert.True(t, probe.Done(nil))
		assert.False(t, old.Done(errDown), "nor after a later generation")
		assert.Equal(t, StateClosed, b.State())
	})
}

func TestSlowCallsFail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var outcomes []Outcome
		b := newBreaker(t, Config{Failures: 2, SlowCall: time.Second, Hooks: Hooks{
			OnOutcome: func(_ context.Context, _ string, o Outcome, _ time.Duration, _ bool) { outcomes = append(outcomes, o) },
		}})
		slow := func(context.Context) error { time.Sleep(2 * time.Second); return nil }
		require.NoError(t, b.Do(context.Background(), slow))
		require.NoError(t, call(b, nil))
		require.NoError(t, b.Do(context.Background(), slow))
		require.NoError(t, b.Do(context.Background(), slow))
		assert.Equal(t, StateOpen, b.State())
		assert.Equal(t, []Outcome{OutcomeFailure, OutcomeSuccess, OutcomeFailure, OutcomeFailure}, outcomes)
	})
}

func TestBackoffWithJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, Config{Failures: 1, OpenDuration: time.Second, MaxOpenDuration: 8 * time.Second})
		_ = call(b, errDown)
		var oe *OpenError
		require.True(t, errors.As(call(b, nil), &oe))
		assert.Equal(t, time.Second, oe.RetryAfter(), "the first opening is the base duration")
		for reopen := 1; reopen <= 5; reopen++ {
			time.Sleep(oe.RetryAfter())
			require.ErrorIs(t, call(b, errDown), errDown) // the probe fails
			require.True(t, errors.As(call(b, nil), &oe))
			ceiling := min(time.Second<<reopen, 8*time.Second)
			assert.GreaterOrEqual(t, oe.RetryAfter(), time.Second)
			assert.LessOrEqual(t, oe.RetryAfter(), ceiling, "reopening %d", reopen)
		}
		time.Sleep(oe.RetryAfter())
		require.NoError(t, call(b, nil))
		_ = call(b, errDown)
		require.True(t, errors.As(call(b, nil), &oe))
		assert.Equal(t, time.Second, oe.RetryAfter(), "closing resets the backoff")
	})
}

func TestModes(t *testing.T) {
	b := newBreaker(t, Config{Failures: 1})
	b.SetMode(ModeForcedOpen)
	require.ErrorIs(t, call(b, nil), ErrOpen)
	assert.Equal(t, StateOpen, b.State())
	b.SetMode(ModeForcedClosed)
	for range 3 {
		require.ErrorIs(t, call(b, errDown), errDown)
	}
	assert.Equal(t, StateClosed, b.State())
	assert.Equal(t, uint64(3), b.Stats().Failures, "forced closed still counts")
	b.SetMode(ModeDisabled)
	require.ErrorIs(t, call(b, errDown), errDown)
	assert.Equal(t, uint64(3), b.Stats().Failures, "disabled counts nothing")
	b.SetMode(ModeAuto)
	require.ErrorIs(t, call(b, errDown), errDown)
	assert.Equal(t, StateOpen, b.State())
	assert.Equal(t, ModeAuto, b.Stats().Mode)
}

// TestHooksMayReadTheBreaker: hooks run outside any lock, so they can call back (the deadlock
// users of other breakers hit).
func TestHooksMayReadTheBreaker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b *Breaker
		var seen []string
		b = newBreaker(t, Config{Name: "api", Failures: 1, OpenDuration: time.Second, Hooks: Hooks{
			OnStateChange: func(_ context.Context, name string, from, to State, s Stats) {
				assert.Equal(t, to, s.State)
				_ = b.Stats()
				_ = b.State()
				seen = append(seen, name+":"+from.String()+">"+to.String())
			},
		}})
		_ = call(b, errDown)
		time.Sleep(time.Second)
		_ = call(b, nil)
		assert.Equal(t, []string{"api:closed>open", "api:open>half-open", "api:half-open>closed"}, seen)
	})
}

// TestConcurrentProbesAreBounded: however many goroutines try, at most Probes probes run at once
// in half-open, and failures under contention open the breaker exactly once.
func TestConcurrentProbesAreBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, Config{Failures: 3, OpenDuration: time.Second, Probes: 3, Successes: 100})
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() { _ = call(b, errDown) })
		}
		wg.Wait()
		assert.Equal(t, uint64(1), b.Stats().Opens)
		time.Sleep(time.Second)
		var running, most atomic.Int64
		release := make(chan struct{})
		for range 16 {
			wg.Go(func() {
				_ = b.Do(context.Background(), func(context.Context) error {
					n := running.Add(1)
					for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
					}
					<-release
					running.Add(-1)
					return nil
				})
			})
		}
		synctest.Wait()
		close(release)
		wg.Wait()
		assert.Equal(t, int64(3), most.Load())
	})
}

func TestGenericDo(t *testing.T) {
	b := newBreaker(t, Config{})
	v, err := Do(context.Background(), b, func(context.Context) (int, error) { return 42, nil })
	require.NoError(t, err)
	assert.Equal(t, 42, v)
	assert.False(t, Token{}.Done(nil))
	assert.Equal(t, "half-open", StateHalfOpen.String())
}

// TestClosedPathDoesNotAllocate: a call through a closed breaker allocates nothing, with or
// without a Store (between batches: the store's flush is not per call).
func TestClosedPathDoesNotAllocate(t *testing.T) {
	store, err := NewMemoryStore(MemoryConfig{FlushInterval: time.Hour})
	require.NoError(t, err)
	defer store.Close()
	ctx := context.Background()
	for _, cfg := range []Config{{}, {Name: "shared", Store: store}} {
		b := newBreaker(t, cfg)
		allocs := testing.AllocsPerRun(1000, func() {
			tok, _ := b.Allow(ctx)
			tok.Done(nil)
		})
		assert.Zero(t, allocs, "with a Store: %v", cfg.Store != nil)
	}
}

func TestFailureRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, Config{DisableConsecutiveFailures: true, FailureRate: 0.5, MinCalls: 10, Window: 10 * time.Second})
		for i := range 9 {
			err := errDown
			if i%2 == 1 {
				err = nil
			}
			_ = call(b, err) // 5 failures, 4 successes: too few calls to judge
		}
		assert.Equal(t, StateClosed, b.State())
		time.Sleep(11 * time.Second) // all of that leaves the window
		for range 9 {
			_ = call(b, nil)
		}
		_ = call(b, errDown)
		assert.Equal(t, StateClosed, b.State(), "1 failure in 10 calls")
		for range 7 {
			_ = call(b, errDown)
		}
		assert.Equal(t, StateClosed, b.State(), "8 failures in 17 calls is under half")
		_ = call(b, errDown)
		assert.Equal(t, StateOpen, b.State(), "9 in 18 is half")
	})
}

func TestCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, Config{Name: "db", Failures: 1, OpenDuration: time.Second})
		require.NoError(t, b.Check(context.Background()))
		_ = call(b, errDown)
		assert.EqualError(t, b.Check(context.Background()), "breaker db: open")
		time.Sleep(time.Second)
		assert.NoError(t, b.Check(context.Background()), "half-open is probing, not failing")
	})
}

func TestFailureRateOverCalls(t *testing.T) {
	b := newBreaker(t, Config{DisableConsecutiveFailures: true, FailureRate: 0.5, MinCalls: 4, WindowCalls: 10})
	for range 3 {
		_ = call(b, errDown)
	}
	assert.Equal(t, StateClosed, b.State(), "3 calls are fewer than MinCalls")
	for range 10 {
		_ = call(b, nil) // the failures leave the window of the last 10 calls
	}
	for range 4 {
		_ = call(b, errDown)
	}
	assert.Equal(t, StateClosed, b.State(), "4 failures in the last 10 calls")
	_ = call(b, errDown)
	assert.Equal(t, StateOpen, b.State(), "5 in 10 is half")

	_, err := New(Config{WindowCalls: -1})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	c := newBreaker(t, Config{FailureRate: 0.5, WindowCalls: 5})
	assert.Equal(t, 5, c.cfg.MinCalls, "MinCalls is at most WindowCalls")
}

// TestInvalidConfigNamesTheField: every constructor wraps ErrInvalidConfig and names the field.
func TestInvalidConfigNamesTheField(t *testing.T) {
	newRedis := func(cfg RedisConfig) error {
		_, err := NewRedisStore(redistest.New(t), cfg)
		return err
	}
	tests := []struct {
		field string
		err   error
	}{
		{"Config.Failures", errOf(New(Config{Failures: -1}))},
		{"Config.Probes", errOf(New(Config{Probes: -1}))},
		{"Config.FailureRate", errOf(New(Config{FailureRate: 1.5}))},
		{"Config.FailureRate", errOf(New(Config{FailureRate: math.NaN()}))},
		{"Config.Window", errOf(New(Config{Window: -1}))},
		{"Config.SlowCall", errOf(New(Config{SlowCall: -1}))},
		{"Config.Store", errOf(New(Config{Name: "x", Store: &MemoryStore{}}))},
		{"Config.Name", errOf(New(Config{Store: newMemoryStoreT(t)}))},
		{"RegistryConfig.MaxKeys", errOf(NewRegistry(RegistryConfig{MaxKeys: -1}))},
		{"RegistryConfig.IdleTimeout", errOf(NewRegistry(RegistryConfig{IdleTimeout: -1}))},
		{"RegistryConfig.Config.OpenDuration", errOf(NewRegistry(RegistryConfig{Config: Config{OpenDuration: -1}}))},
		{"MemoryConfig.FlushInterval", errOf(NewMemoryStore(MemoryConfig{FlushInterval: -1}))},
		{"MemoryConfig.FlushOutcomes", errOf(NewMemoryStore(MemoryConfig{FlushOutcomes: -1}))},
		{"RedisConfig.Timeout", newRedis(RedisConfig{Timeout: -1})},
		{"RedisConfig.FlushInterval", newRedis(RedisConfig{FlushInterval: -1})},
		{"RedisConfig.Prefix", newRedis(RedisConfig{Prefix: "a{b"})},
	}
	for _, tt := range tests {
		require.ErrorIs(t, tt.err, ErrInvalidConfig, tt.field)
		assert.ErrorContains(t, tt.err, tt.field)
	}
	_, err := NewRedisStore(nil, RedisConfig{})
	assert.ErrorIs(t, err, ErrInvalidConfig, "a nil client")
}

func errOf[T any](_ T, err error) error { return err }

func newMemoryStoreT(t *testing.T) *MemoryStore {
	t.Helper()
	s, err := NewMemoryStore(MemoryConfig{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestLoggerAndHooks: transitions are logged (open at Warn, the others at Info) and reported
// to hooks with the context of the call that caused them; successful calls log nothing.
func TestLoggerAndHooks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs []string
		logger := slog.New(handlerFunc(func(_ context.Context, r slog.Record) error {
			logs = append(logs, r.Level.String()+" "+r.Message)
			return nil
		}))
		type key struct{}
		var changes, outcomes, rejections []string
		b := newBreaker(t, Config{Name: "db", Failures: 2, OpenDuration: time.Second, Logger: logger, Hooks: Hooks{
			OnRejected: func(ctx context.Context, name string, err *OpenError) {
				rejections = append(rejections, fmt.Sprint(ctx.Value(key{}), ": ", name, " ", err.RetryAfter()))
			},
			OnStateChange: func(ctx context.Context, _ string, from, to State, _ Stats) {
				changes = append(changes, fmt.Sprint(ctx.Value(key{}), ": ", from, ">", to))
			},
			OnOutcome: func(ctx context.Context, _ string, o Outcome, _ time.Duration, counted bool) {
				outcomes = append(outcomes, fmt.Sprint(ctx.Value(key{}), ": ", o, " ", counted))
			},
		}})
		ctx := func(v string) context.Context { return context.WithValue(context.Background(), key{}, v) }
		for range 100 {
			require.NoError(t, b.Do(ctx("ok"), func(context.Context) error { return nil }))
		}
		assert.Empty(t, logs, "no line per call")
		for _, v := range []string{"first", "second"} {
			_ = b.Do(ctx(v), func(context.Context) error { return errDown })
		}
		time.Sleep(400 * time.Millisecond)
		require.ErrorIs(t, b.Do(ctx("refused"), func(context.Context) error { return nil }), ErrOpen)
		time.Sleep(600 * time.Millisecond)
		require.NoError(t, b.Do(ctx("probe"), func(context.Context) error { return nil }))
		assert.Equal(t, []string{"WARN breaker open", "INFO breaker half-open", "INFO breaker closed"}, logs)
		assert.Equal(t, []string{"second: closed>open", "probe: open>half-open", "probe: half-open>closed"}, changes)
		assert.Equal(t, []string{"first: failure true", "second: failure true", "probe: success true"}, outcomes[100:])
		b.SetMode(ModeForcedOpen)
		require.ErrorIs(t, b.Do(ctx("forced"), func(context.Context) error { return nil }), ErrOpen)
		assert.Equal(t, []string{"refused: db 600ms", "forced: db 0s"}, rejections, "refusals reported with the caller's context")
		assert.Equal(t, uint64(2), b.Stats().Rejected)
	})
}

// handlerFunc is a slog.Handler that hands every record to a function.
type handlerFunc func(context.Context, slog.Record) error

func (h handlerFunc) Enabled(context.Context, slog.Level) bool        { return true }
func (h handlerFunc) Handle(ctx context.Context, r slog.Record) error { return h(ctx, r) }
func (h handlerFunc) WithAttrs([]slog.Attr) slog.Handler              { return h }
func (h handlerFunc) WithGroup(string) slog.Handler                   { return h }
