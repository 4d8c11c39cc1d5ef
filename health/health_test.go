package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

var quiet = slog.New(slog.DiscardHandler)

// switchable is a check whose result the test sets between passes.
type switchable struct {
	err   atomic.Pointer[error]
	calls atomic.Int64
}

func (s *switchable) set(err error) { s.err.Store(&err) }

func (s *switchable) check(context.Context) error {
	s.calls.Add(1)
	if p := s.err.Load(); p != nil {
		return *p
	}
	return nil
}

// newChecker creates a Checker in the current synctest bubble and waits for its first pass.
func newChecker(t *testing.T, cfg Config, checks ...Check) *Checker {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	c, err := New(cfg, checks...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	waitPass(c)
	return c
}

// waitPass waits, in fake time, for the pass in flight (if any) to complete.
func waitPass(c *Checker) {
	synctest.Wait()
	c.mu.Lock()
	done := c.passDone
	c.mu.Unlock()
	if done != nil {
		<-done
		synctest.Wait()
	}
}

// nextPass advances the fake clock to the next background pass and waits for it to complete.
func nextPass(c *Checker) {
	time.Sleep(c.cfg.Interval)
	waitPass(c)
}

var errDown = errors.New("dependency down")

func TestStateMachine(t *testing.T) {
	ok, fail := error(nil), errDown
	tests := []struct {
		name    string
		results []error // one per pass, the first from New's pass
		states  []State // the check's state after each pass
	}{
		{"first success sets healthy", []error{ok}, []State{StateHealthy}},
		{"first failure sets unhealthy", []error{fail}, []State{StateUnhealthy}},
		{"two failures keep healthy", []error{ok, fail, fail, ok},
			[]State{StateHealthy, StateHealthy, StateHealthy, StateHealthy}},
		{"third consecutive failure turns unhealthy", []error{ok, fail, fail, fail},
			[]State{StateHealthy, StateHealthy, StateHealthy, StateUnhealthy}},
		{"a success resets the failure count", []error{ok, fail, fail, ok, fail, fail, fail},
			[]State{StateHealthy, StateHealthy, StateHealthy, StateHealthy, StateHealthy, StateHealthy, StateUnhealthy}},
		{"first success after boot failures sets healthy", []error{fail, fail, ok},
			[]State{StateUnhealthy, StateUnhealthy, StateHealthy}},
		{"recovery needs two successes once healthy", []error{ok, fail, fail, fail, ok, ok},
			[]State{StateHealthy, StateHealthy, StateHealthy, StateUnhealthy, StateUnhealthy, StateHealthy}},
		{"a failure resets the success count", []error{ok, fail, fail, fail, ok, fail, ok, ok},
			[]State{StateHealthy, StateHealthy, StateHealthy, StateUnhealthy, StateUnhealthy, StateUnhealthy,
				StateUnhealthy, StateHealthy}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var dep switchable
				dep.set(tt.results[0])
				c := newChecker(t, Config{}, Check{Name: "db", Func: dep.check})
				for i, want := range tt.states {
					if i > 0 {
						dep.set(tt.results[i])
						nextPass(c)
					}
					st := c.Stats()
					require.Len(t, st.Checks, 1)
					assert.Equal(t, want, st.Checks[0].State, "state after pass %d of %v", i+1, tt.results)
					assert.Equal(t, uint64(i+1), st.Passes, "passes after pass %d", i+1)
				}
				assert.Equal(t, int64(len(tt.results)), dep.calls.Load(), "check runs")
			})
		})
	}
}

// probeUntil probes readiness every 100 ms of fake time until it answers code, and returns how
// long that took. It gives up after limit.
func probeUntil(t *testing.T, h http.Handler, code int, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if serve(h, http.MethodGet, "/api/ready", "").Code == code {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait() // let a pass due at this instant finish before the next probe
	}
}

// TestZeroConfigDetectsAndRecoversQuickly is the regression test for readiness that took 84 s
// to show a dead Redis and 55 s to show it back: with the zero Config, a critical dependency
// that dies right after a successful pass (the worst moment) must turn readiness 503 within
// 15 s, whether it refuses at once or hangs until the timeout, and a recovery right after a
// failing pass must turn it 200 within 10 s.
func TestZeroConfigDetectsAndRecoversQuickly(t *testing.T) {
	hang := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	for _, tt := range []struct {
		name string
		down func(context.Context) error
	}{
		{"refused", func(context.Context) error { return errDown }},
		{"hanging", hang},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var down atomic.Bool
				c := newChecker(t, Config{}, Check{Name: "redis", Func: func(ctx context.Context) error {
					if down.Load() {
						return tt.down(ctx)
					}
					return nil
				}})
				h := c.ReadinessHandler()
				require.Equal(t, http.StatusOK, serve(h, http.MethodGet, "/", "").Code)

				down.Store(true) // just after the first pass succeeded
				took := probeUntil(t, h, http.StatusServiceUnavailable, 5*time.Minute)
				assert.LessOrEqual(t, took, 15*time.Second, "time for a dead critical dependency to show on /api/ready")

				down.Store(false) // just after the pass that found it unhealthy
				took = probeUntil(t, h, http.StatusOK, 5*time.Minute)
				assert.LessOrEqual(t, took, 10*time.Second, "time for a recovered dependency to show on /api/ready")
			})
		})
	}
}

func TestThresholdsAreConfigurable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var dep switchable
		c := newChecker(t, Config{Interval: time.Second, HealthyThreshold: 1, UnhealthyThreshold: 1},
			Check{Name: "db", Func: dep.check})
		dep.set(errDown)
		nextPass(c)
		assert.Equal(t, StateUnhealthy, c.Stats().Checks[0].State, "one failure with UnhealthyThreshold 1")
		dep.set(nil)
		nextPass(c)
		assert.Equal(t, StateHealthy, c.Stats().Checks[0].State, "one success with HealthyThreshold 1")
	})
}

func TestPassesRunEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var dep switchable
		start := time.Now()
		c := newChecker(t, Config{}, Check{Name: "db", Func: dep.check})
		assert.Equal(t, int64(1), dep.calls.Load(), "New runs the first pass at once")
		time.Sleep(defaultInterval - time.Millisecond)
		synctest.Wait()
		assert.Equal(t, int64(1), dep.calls.Load(), "no pass before the interval")
		time.Sleep(time.Millisecond)
		synctest.Wait()
		assert.Equal(t, int64(2), dep.calls.Load(), "a pass at the interval")
		time.Sleep(10 * defaultInterval)
		synctest.Wait()
		assert.Equal(t, int64(12), dep.calls.Load())
		assert.Equal(t, start.Add(11*defaultInterval), c.Stats().LastPass)
	})
}

func TestReadinessStatus(t *testing.T) {
	tests := []struct {
		name                  string
		critical, noncritical error
		want                  Status
	}{
		{"all healthy", nil, nil, StatusPass},
		{"non-critical down", nil, errDown, StatusWarn},
		{"critical down", errDown, nil, StatusFail},
		{"both down", errDown, errDown, StatusFail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var crit, opt switchable
				crit.set(tt.critical)
				opt.set(tt.noncritical)
				c := newChecker(t, Config{},
					Check{Name: "db", Func: crit.check},
					Check{Name: "search", Func: opt.check, NonCritical: true})
				assert.Equal(t, tt.want, c.Stats().Status)
				assert.Equal(t, tt.want != StatusFail, c.Ready())
			})
		})
	}
}

func TestNotReadyUntilFirstPass(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		c, err := New(Config{Logger: quiet}, Check{Name: "slow", Func: func(ctx context.Context) error {
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}})
		require.NoError(t, err)
		defer c.Close()
		synctest.Wait()
		assert.False(t, c.Ready(), "ready before the first pass completed")
		assert.Equal(t, StatusFail, c.Stats().Status)
		assert.Equal(t, uint64(0), c.Stats().Passes)
		close(release)
		synctest.Wait()
		assert.True(t, c.Ready(), "not ready after a successful first pass")
	})
}

func TestNoChecksIsReadyAfterFirstPass(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newChecker(t, Config{})
		assert.Equal(t, StatusPass, c.Stats().Status)
	})
}

// TestTimeoutsDoNotLeak times a check out 1,000 times; every goroutine it ran in has ended.
func TestTimeoutsDoNotLeak(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var live, runs atomic.Int64
		c := newChecker(t, Config{Interval: time.Second, Timeout: 100 * time.Millisecond},
			Check{Name: "hang", Func: func(ctx context.Context) error {
				live.Add(1)
				defer live.Add(-1)
				runs.Add(1)
				<-ctx.Done()
				return ctx.Err()
			}})
		before := checkerGoroutines()
		for range 999 {
			nextPass(c)
		}
		assert.LessOrEqual(t, checkerGoroutines(), before, "goroutines left behind by 999 timed-out runs")
		st := c.Stats().Checks[0]
		assert.Equal(t, int64(1000), runs.Load())
		assert.Equal(t, uint64(1000), st.Failures)
		assert.ErrorIs(t, st.LastError, ErrTimeout)
		assert.ErrorIs(t, st.LastError, context.DeadlineExceeded)
		assert.Equal(t, 100*time.Millisecond, st.LastDuration)
		assert.Zero(t, live.Load(), "check goroutines still running after their timeouts")
		require.NoError(t, c.Close())
	})
}

// stuck is a check that ignores its context and returns once release is closed, counting its
// runs and the runs still going.
func stuck(release <-chan struct{}, live, runs *atomic.Int64) CheckFunc {
	return func(context.Context) error {
		live.Add(1)
		defer live.Add(-1)
		runs.Add(1)
		<-release
		return nil
	}
}

// TestCheckIgnoringContextCostsOneGoroutine: a check that never looks at its context is not
// started again while its previous run is still going.
func TestCheckIgnoringContextCostsOneGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var live, runs atomic.Int64
		c := newChecker(t, Config{Interval: time.Second, Timeout: 100 * time.Millisecond},
			Check{Name: "stuck", Func: stuck(release, &live, &runs)})
		for range 50 {
			nextPass(c)
		}
		assert.Equal(t, int64(1), runs.Load(), "runs while the first is stuck")
		assert.Equal(t, int64(1), live.Load())
		st := c.Stats().Checks[0]
		assert.Equal(t, uint64(51), st.Failures)
		assert.ErrorIs(t, st.LastError, ErrTimeout)
		close(release)
		synctest.Wait()
		assert.Zero(t, live.Load())
		nextPass(c)
		assert.Equal(t, int64(2), runs.Load(), "the check runs again once it has returned")
		assert.NoError(t, c.Stats().Checks[0].LastError)
	})
}

func TestChecksRunConcurrently(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		slow := func(ctx context.Context) error { time.Sleep(2 * time.Second); return nil }
		c := newChecker(t, Config{}, Check{Name: "a", Func: slow}, Check{Name: "b", Func: slow},
			Check{Name: "c", Func: slow})
		assert.Equal(t, 2*time.Second, c.Stats().LastPass.Sub(start), "three 2 s checks take one 2 s pass")
	})
}

func TestPerCheckTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hang := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
		c := newChecker(t, Config{}, Check{Name: "short", Func: hang, Timeout: time.Second},
			Check{Name: "default", Func: hang})
		st := c.Stats().Checks
		assert.Equal(t, time.Second, st[0].LastDuration)
		assert.Equal(t, defaultTimeout, st[1].LastDuration)
	})
}

func TestPanickingCheckFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newChecker(t, Config{}, Check{Name: "bad", Func: func(context.Context) error { panic("boom") }})
		st := c.Stats().Checks[0]
		assert.Equal(t, StateUnhealthy, st.State)
		require.Error(t, st.LastError)
		assert.Contains(t, st.LastError.Error(), "boom")
	})
}

func TestRefreshIsSingleFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		var runs atomic.Int64
		c, err := New(Config{Logger: quiet}, Check{Name: "db", Func: func(ctx context.Context) error {
			runs.Add(1)
			<-gate // each run waits for one release
			return nil
		}})
		require.NoError(t, err)
		defer c.Close()
		synctest.Wait() // New's first pass is running, blocked in the check

		for round := 1; round <= 3; round++ {
			var wg sync.WaitGroup
			for range 10 {
				wg.Go(func() {
					st, err := c.Refresh(context.Background())
					assert.NoError(t, err)
					assert.Equal(t, StatusPass, st.Status, "round %d", round)
				})
			}
			synctest.Wait() // every Refresh has joined (or started) the one pass
			gate <- struct{}{}
			wg.Wait()
			assert.Equal(t, int64(round), runs.Load(), "round %d: ten concurrent Refresh calls ran the check once", round)
			assert.Equal(t, uint64(round), c.Stats().Passes, "round %d: passes", round)
		}
	})
}

// TestBackToBackPassesSeeTheCheckReturned: a check that returned in time is free to run in the
// very next pass, however soon it starts (Refresh right after Refresh). Its goroutine used to
// hand over the result before marking the run over, so a pass starting in between found it
// "still running" and failed it with ErrTimeout.
func TestBackToBackPassesSeeTheCheckReturned(t *testing.T) {
	var runs atomic.Int64
	c, err := New(Config{Logger: quiet}, Check{Name: "db", Func: func(context.Context) error {
		runs.Add(1)
		return nil
	}})
	require.NoError(t, err)
	defer c.Close()
	for i := range 2000 {
		st, err := c.Refresh(context.Background())
		require.NoError(t, err)
		require.NoError(t, st.Checks[0].LastError, "Refresh %d", i)
	}
	assert.Zero(t, c.Stats().Checks[0].Failures)
	assert.Equal(t, int64(c.Stats().Checks[0].Runs), runs.Load(), "every pass ran the check")
}

func TestRefreshHonoursContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newChecker(t, Config{}, Check{Name: "slow", Func: func(ctx context.Context) error {
			time.Sleep(time.Second)
			return nil
		}})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := c.Refresh(ctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	})
}

func TestHooks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var events []string
		record := func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, fmt.Sprintf(format, args...))
		}
		var dep switchable
		c := newChecker(t, Config{UnhealthyThreshold: 1, Hooks: Hooks{
			OnCheckDone: func(_ context.Context, name string, d time.Duration, err error) {
				record("done %s %v %v", name, d, err)
			},
			OnCheckChange: func(_ context.Context, name string, from, to State) {
				record("change %s %s->%s", name, from, to)
			},
			OnStatusChange: func(_ context.Context, from, to Status) { record("status %s->%s", from, to) },
		}}, Check{Name: "db", Func: dep.check})
		dep.set(errDown)
		nextPass(c)
		c.Drain()
		c.Drain() // no second event
		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, []string{
			"done db 0s <nil>",
			"change db unknown->healthy",
			"status fail->pass",
			"done db 0s dependency down",
			"change db healthy->unhealthy",
			"status pass->fail",
		}, events)
	})
}

func TestDrainAndClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var statuses []Status
		c := newChecker(t, Config{Hooks: Hooks{OnStatusChange: func(_ context.Context, _, to Status) {
			statuses = append(statuses, to)
		}}})
		require.True(t, c.Ready())
		c.Drain()
		assert.False(t, c.Ready())
		assert.True(t, c.Stats().Draining)
		assert.Equal(t, "draining", c.snap.Load().reason)
		require.NoError(t, c.Close())
		require.NoError(t, c.Close(), "Close is idempotent")
		assert.Equal(t, "closed", c.snap.Load().reason)
		_, err := c.Refresh(context.Background())
		assert.ErrorIs(t, err, ErrClosed)
		assert.Equal(t, []Status{StatusPass, StatusFail}, statuses, "Close after Drain changes no status")
	})
}

func TestCloseCancelsRunningChecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cancelled := make(chan struct{})
		c, err := New(Config{Logger: quiet}, Check{Name: "db", Func: func(ctx context.Context) error {
			<-ctx.Done()
			close(cancelled)
			return ctx.Err()
		}})
		require.NoError(t, err)
		synctest.Wait()
		refreshed := make(chan error, 1)
		go func() { _, err := c.Refresh(context.Background()); refreshed <- err }()
		synctest.Wait()
		require.NoError(t, c.Close())
		assert.ErrorIs(t, <-refreshed, ErrClosed, "Refresh joined a pass that Close cut short")
		select {
		case <-cancelled:
		default:
			t.Fatal("Close returned before the running check saw its context cancelled")
		}
		assert.Zero(t, c.Stats().Passes, "a pass cut short by Close is not recorded")
	})
}

func TestNewRejectsBadInput(t *testing.T) {
	okFn := func(context.Context) error { return nil }
	tests := []struct {
		name   string
		cfg    Config
		checks []Check
		want   string // the field named in the error
	}{
		{"negative interval", Config{Interval: -1}, nil, "Config.Interval"},
		{"negative timeout", Config{Timeout: -1}, nil, "Config.Timeout"},
		{"negative healthy threshold", Config{HealthyThreshold: -1}, nil, "Config.HealthyThreshold"},
		{"negative unhealthy threshold", Config{UnhealthyThreshold: -1}, nil, "Config.UnhealthyThreshold"},
		{"negative drain delay", Config{DrainDelay: -1}, nil, "Config.DrainDelay"},
		{"negative shutdown timeout", Config{ShutdownTimeout: -1}, nil, "Config.ShutdownTimeout"},
		{"relative path", Config{Path: "health"}, nil, "Config.Path"},
		{"relative ready path", Config{ReadyPath: "ready"}, nil, "Config.ReadyPath"},
		{"same paths", Config{Path: "/h", ReadyPath: "/h"}, nil, "Config.Path and ReadyPath"},
		{"timeout over interval", Config{Interval: time.Second, Timeout: 2 * time.Second}, nil,
			"Config.Timeout 2s exceeds Interval 1s"},
		{"timeout over default interval", Config{Timeout: time.Minute}, nil, "Config.Timeout 1m0s exceeds Interval 4s"},
		{"unnamed check", Config{}, []Check{{Func: okFn}}, "check 0 has no Name"},
		{"check without func", Config{}, []Check{{Name: "db"}}, `check "db" has no Func`},
		{"duplicate names", Config{}, []Check{{Name: "db", Func: okFn}, {Name: "db", Func: okFn}}, "two checks"},
		{"negative check timeout", Config{}, []Check{{Name: "db", Func: okFn, Timeout: -1}}, "Check.Timeout -1ns is negative"},
		{"check timeout over interval", Config{Interval: time.Second},
			[]Check{{Name: "db", Func: okFn, Timeout: 2 * time.Second}}, "Check.Timeout 2s exceeds Config.Interval 1s"},
		{"negative local timeout", Config{}, []Check{{Name: "b", Func: okFn, Local: true, Timeout: -1}}, "Check.Timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.cfg, tt.checks...)
			require.Error(t, err)
			assert.Nil(t, c)
			assert.ErrorIs(t, err, ErrInvalidConfig)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// A Local check's Timeout guards a call that cannot be interrupted; it is not bound by the
// interval between passes, which never run it.
func TestLocalTimeoutMayExceedInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		newChecker(t, Config{Interval: time.Second},
			Check{Name: "b", Func: func(context.Context) error { return nil }, Local: true, Timeout: time.Minute})
	})
}

func TestDefaults(t *testing.T) {
	cfg := Config{}
	require.NoError(t, cfg.setDefaults())
	assert.Equal(t, "/api/health", cfg.Path)
	assert.Equal(t, "/api/ready", cfg.ReadyPath)
	assert.Equal(t, 4*time.Second, cfg.Interval)
	assert.Equal(t, 2*time.Second, cfg.Timeout)
	assert.Equal(t, 2, cfg.HealthyThreshold)
	assert.Equal(t, 3, cfg.UnhealthyThreshold)
	assert.Equal(t, 5*time.Second, cfg.DrainDelay)
	assert.Equal(t, 20*time.Second, cfg.ShutdownTimeout)
	assert.NotNil(t, cfg.Logger)

	short := Config{Interval: time.Second}
	require.NoError(t, short.setDefaults())
	assert.Equal(t, time.Second, short.Timeout, "the default timeout never exceeds the interval")
}

// TestHooksSeeStatusChangesInOrder: a Drain during a pass whose hooks are still running returns at
// once with readiness already failing, and its status change is reported after the pass's, so the
// last event is the current status.
func TestHooksSeeStatusChangesInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hold := make(chan struct{})
		var mu sync.Mutex
		var seen []Status
		c, err := New(Config{Logger: quiet, Hooks: Hooks{
			OnCheckDone: func(context.Context, string, time.Duration, error) { <-hold },
			OnStatusChange: func(_ context.Context, _, to Status) {
				mu.Lock()
				seen = append(seen, to)
				mu.Unlock()
			},
		}}, Check{Name: "db", Func: func(context.Context) error { return nil }})
		require.NoError(t, err)
		defer c.Close()
		synctest.Wait() // the first pass has published pass and waits in OnCheckDone
		c.Drain()       // must not wait for the blocked hook
		assert.Equal(t, StatusFail, c.Stats().Status)
		mu.Lock()
		assert.Empty(t, seen, "the pass's status change is still queued behind its OnCheckDone")
		mu.Unlock()
		close(hold)
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, []Status{StatusPass, StatusFail}, seen)
		assert.Equal(t, c.Stats().Status, seen[len(seen)-1])
	})
}

// checkerGoroutines counts the goroutines running the Checker's code. Counting all goroutines
// would also count other packages' background goroutines (Redis clients of earlier tests).
func checkerGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "outgrow/health.(*Checker)") {
			count++
		}
	}
	return count
}

// TestCheckIgnoringContextOnTheRealClock, from the outside: a background check that ignores
// its context and blocks runs on one goroutine however many passes go by (each pass counts it
// failed with ErrTimeout); Close waits for it, as documented, and returns as soon as it
// returns, leaving no goroutine behind.
func TestCheckIgnoringContextOnTheRealClock(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	release := make(chan struct{})
	var live, runs atomic.Int64
	c, err := New(Config{Logger: quiet, Interval: 20 * time.Millisecond, Timeout: 5 * time.Millisecond},
		Check{Name: "stuck", Func: stuck(release, &live, &runs)})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return c.Stats().Passes >= 20 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, int64(1), runs.Load(), "runs while the first is stuck")
	assert.Equal(t, int64(1), live.Load())
	assert.LessOrEqual(t, checkerGoroutines(), 3, "the loop, a pass and the stuck run at most")
	st := c.Stats().Checks[0]
	assert.ErrorIs(t, st.LastError, ErrTimeout)
	assert.Equal(t, st.Runs, st.Failures)

	closed := make(chan struct{})
	go func() { _ = c.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a check was still running")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not return once the check returned")
	}
	assert.Zero(t, live.Load())
}
