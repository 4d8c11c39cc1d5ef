package health

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestLocalCheckFlipsOnNextProbe: a Local check is called by the probe itself, so readiness
// follows it on the very next request, with no background pass in between and no threshold.
func TestLocalCheckFlipsOnNextProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var breaker, db switchable
		c := newChecker(t, Config{}, Check{Name: "db", Func: db.check},
			Check{Name: "breaker", Func: breaker.check, Local: true})
		h := c.ReadinessHandler()
		assert.Zero(t, breaker.calls.Load(), "the background pass called a Local check")

		w := serve(h, http.MethodGet, "/api/ready", "")
		assert.Equal(t, http.StatusOK, w.Code)
		assert.JSONEq(t, `{"status":"ok","checks":{"db":{"status":"ok"},"breaker":{"status":"ok"}}}`, w.Body.String())

		breaker.set(errDown)
		w = serve(h, http.MethodGet, "/api/ready", "")
		assert.Equal(t, http.StatusServiceUnavailable, w.Code, "the probe right after the check failed")
		assert.JSONEq(t, `{"status":"unavailable","checks":{"db":{"status":"ok"},"breaker":{"status":"fail"}}}`, w.Body.String())
		assert.False(t, c.Ready())
		st := c.Stats()
		assert.Equal(t, StatusFail, st.Status)
		assert.Equal(t, StateUnhealthy, st.Checks[1].State)
		assert.True(t, st.Checks[1].Local)
		assert.ErrorIs(t, st.Checks[1].LastError, errDown)

		breaker.set(nil)
		assert.Equal(t, http.StatusOK, serve(h, http.MethodGet, "/api/ready", "").Code,
			"the probe right after the check passed again, with no HealthyThreshold")
		assert.Equal(t, uint64(1), c.Stats().Passes, "no pass ran: the probes alone moved readiness")
		assert.Equal(t, int64(6), breaker.calls.Load(), "one call per probe, Ready and Stats")

		calls := breaker.calls.Load()
		nextPass(c)
		nextPass(c)
		assert.Equal(t, calls, breaker.calls.Load(), "background passes called a Local check")
		assert.Equal(t, int64(3), db.calls.Load(), "background check runs")
	})
}

// A Local check that fails on its very first call is unhealthy, not unknown: a non-critical one
// degrades readiness from the first probe on.
func TestLocalCheckFailingFromTheStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var breaker switchable
		breaker.set(errDown)
		c := newChecker(t, Config{}, Check{Name: "db", Func: func(context.Context) error { return nil }},
			Check{Name: "breaker", Func: breaker.check, Local: true, NonCritical: true})
		w := serve(c.ReadinessHandler(), http.MethodGet, "/api/ready", "")
		assert.Equal(t, http.StatusOK, w.Code)
		assert.JSONEq(t, `{"status":"degraded","checks":{"db":{"status":"ok"},"breaker":{"status":"fail"}}}`,
			w.Body.String())
	})
}

// TestLocalCheckReportsChangesOnly: hooks and the log hear about a Local check when its state
// changes, never once per probe, and OnCheckDone (per run) stays for background checks.
func TestLocalCheckReportsChangesOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var events []string
		record := func(e string) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, e)
		}
		var logged atomic.Int64
		var breaker switchable
		c := newChecker(t, Config{
			Logger: slog.New(countingHandler{&logged}),
			Hooks: Hooks{
				OnCheckDone: func(context.Context, string, time.Duration, error) { record("done") },
				OnCheckChange: func(ctx context.Context, name string, from, to State) {
					record(name + " " + from.String() + "->" + to.String())
				},
				OnStatusChange: func(_ context.Context, from, to Status) { record(string(from) + "->" + string(to)) },
			},
		}, Check{Name: "breaker", Func: breaker.check, Local: true})
		probe := func() { serve(c.ReadinessHandler(), http.MethodGet, "/api/ready", "") }
		for range 3 {
			probe()
		}
		breaker.set(errDown)
		for range 10 {
			probe()
		}
		breaker.set(nil)
		for range 3 {
			probe()
		}
		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, []string{
			"breaker unknown->healthy", "fail->pass",
			"breaker healthy->unhealthy", "pass->fail",
			"breaker unhealthy->healthy", "fail->pass",
		}, events)
		assert.Equal(t, int64(2), logged.Load(), "log lines: one unhealthy, one recovered")
	})
}

// A Local check's change is reported with the context of the request that saw it, which may
// have ended by the time the hook runs (here another goroutine is delivering hooks): the hook
// gets its values without its cancellation.
func TestLocalCheckHookContextOutlivesRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type ctxKey struct{}
		hold := make(chan struct{})
		var got context.Context
		c, err := New(Config{Logger: quiet, Hooks: Hooks{
			OnCheckDone: func(context.Context, string, time.Duration, error) { <-hold },
			OnCheckChange: func(ctx context.Context, name string, _, _ State) {
				if name == "breaker" {
					got = ctx
				}
			},
		}}, Check{Name: "db", Func: func(context.Context) error { return nil }},
			Check{Name: "breaker", Local: true, Func: func(context.Context) error { return nil }})
		require.NoError(t, err)
		defer c.Close()
		synctest.Wait() // the first pass delivers its hooks and waits in OnCheckDone

		ctx, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "probe"))
		c.ReadinessHandler().ServeHTTP(httptest.NewRecorder(),
			httptest.NewRequestWithContext(ctx, http.MethodGet, "/api/ready", nil))
		cancel() // the request is over; its change is still queued behind the blocked hook
		close(hold)
		synctest.Wait()
		require.NotNil(t, got, "the Local check's change was not reported")
		assert.Equal(t, "probe", got.Value(ctxKey{}))
		assert.NoError(t, got.Err())
	})
}

// countingHandler counts the records logged at Info and above.
type countingHandler struct{ n *atomic.Int64 }

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelInfo {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// TestLocalCheckThatBlocks: a Local check stuck in a call holds up the probe that made it, but
// once the call has run for longer than Timeout, later probes answer at once with the check
// failed, without calling it again; when it returns, probes call it again.
func TestLocalCheckThatBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var calls atomic.Int64
		stuck := func(context.Context) error {
			if calls.Add(1) == 1 {
				<-release
			}
			return nil
		}
		c := newChecker(t, Config{}, Check{Name: "lock", Func: stuck, Local: true, Timeout: time.Second})
		h := c.ReadinessHandler()
		held := make(chan int, 1)
		go func() { held <- serve(h, http.MethodGet, "/api/ready", "").Code }()
		synctest.Wait() // the first probe is blocked in the check

		time.Sleep(time.Second + time.Millisecond)
		w := serve(h, http.MethodGet, "/api/ready", "")
		assert.Equal(t, http.StatusServiceUnavailable, w.Code, "a probe after the guard's timeout")
		st := c.Stats().Checks[0]
		assert.ErrorIs(t, st.LastError, ErrTimeout)
		assert.Equal(t, int64(1), calls.Load(), "the stuck check was called again")

		close(release)
		assert.Equal(t, http.StatusOK, <-held, "the held probe, once the check returned")
		assert.Equal(t, http.StatusOK, serve(h, http.MethodGet, "/api/ready", "").Code)
		assert.Equal(t, int64(2), calls.Load(), "the check is called again once it has returned")
	})
}

// A slow call that stays within Timeout does not fail the probes that come meanwhile: they call
// the check too.
func TestLocalCheckConcurrentProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int64
		slow := func(context.Context) error {
			if calls.Add(1) == 1 {
				time.Sleep(time.Second)
			}
			return nil
		}
		c := newChecker(t, Config{}, Check{Name: "slow", Func: slow, Local: true})
		h := c.ReadinessHandler()
		first := make(chan int, 1)
		go func() { first <- serve(h, http.MethodGet, "/api/ready", "").Code }()
		time.Sleep(500 * time.Millisecond)
		assert.Equal(t, http.StatusOK, serve(h, http.MethodGet, "/api/ready", "").Code,
			"a probe while another call is running within Timeout")
		assert.Equal(t, http.StatusOK, <-first)
		assert.Equal(t, int64(2), calls.Load())
	})
}

func TestLocalCheckGetsTheRequestContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type ctxKey struct{}
		var seen atomic.Value
		c := newChecker(t, Config{}, Check{Name: "b", Local: true, Func: func(ctx context.Context) error {
			seen.Store(ctx.Value(ctxKey{}))
			return nil
		}})
		ctx := context.WithValue(context.Background(), ctxKey{}, "request")
		c.ReadinessHandler().ServeHTTP(httptest.NewRecorder(),
			httptest.NewRequestWithContext(ctx, http.MethodGet, "/api/ready", nil))
		assert.Equal(t, "request", seen.Load())
	})
}

// A panicking Local check fails, is logged once when it turns unhealthy (not with a stack per
// probe), and does not take the probe down.
func TestLocalCheckPanics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logged atomic.Int64
		c := newChecker(t, Config{Logger: slog.New(countingHandler{&logged})},
			Check{Name: "bad", Local: true, Func: func(context.Context) error { panic("boom") }})
		for range 5 {
			assert.Equal(t, http.StatusServiceUnavailable, serve(c.ReadinessHandler(), http.MethodGet, "/", "").Code)
		}
		st := c.Stats().Checks[0]
		require.Error(t, st.LastError)
		assert.Contains(t, st.LastError.Error(), "boom")
		assert.Equal(t, int64(1), logged.Load(), "log lines for five failing probes")
	})
}

// The default body of a Local check is served from the cache while its state holds (no time for
// it, the same bytes each probe), while verbose responses show each call.
func TestLocalCheckBodies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newChecker(t, Config{AllowVerbose: func(*http.Request) bool { return true }},
			Check{Name: "b", Local: true, Func: func(context.Context) error { return nil }})
		h := c.ReadinessHandler()
		first := serve(h, http.MethodGet, "/api/ready", "application/health+json").Body.String()
		cached := c.snap.Load()
		time.Sleep(time.Second)
		assert.Equal(t, first, serve(h, http.MethodGet, "/api/ready", "application/health+json").Body.String())
		assert.Same(t, cached, c.snap.Load(), "a probe that saw no change rendered a new snapshot")
		var doc ietfDoc
		require.NoError(t, json.Unmarshal([]byte(first), &doc))
		assert.Empty(t, doc.Checks["b:responseTime"][0].Time, "a time in the cached body")

		var verbose struct {
			Checks map[string]struct {
				Runs    int    `json:"runs"`
				LastRun string `json:"last_run"`
			} `json:"checks"`
		}
		body := serve(h, http.MethodGet, "/api/ready?verbose", "").Body.Bytes()
		require.NoError(t, json.Unmarshal(body, &verbose), string(body))
		assert.Equal(t, 3, verbose.Checks["b"].Runs, "runs after three probes")
		assert.Equal(t, time.Now().UTC().Format(timeLayout), verbose.Checks["b"].LastRun)
	})
}

// TestLocalCheckBlockingForeverOverHTTP, from the outside and on the real clock: a Local check
// that blocks on every call and ignores its context holds up the probes that called it within
// its Timeout, and only those. Probes that come later answer 503 at once over HTTP, without
// calling it; Ready and Stats return at once; Close returns at once (the stuck call runs on a
// probe's goroutine, not the Checker's); and nothing is left running once the call returns.
func TestLocalCheckBlockingForeverOverHTTP(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	release := make(chan struct{})
	var calls atomic.Int64
	c, err := New(Config{Logger: quiet}, Check{Name: "lock", Local: true, Timeout: 100 * time.Millisecond,
		Func: func(context.Context) error {
			calls.Add(1)
			<-release
			return nil
		}})
	require.NoError(t, err)
	srv := httptest.NewServer(c.Middleware(http.NotFoundHandler()))
	client := &http.Client{Timeout: 5 * time.Second}
	get := func() (int, error) {
		resp, err := client.Get(srv.URL + "/api/ready")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}
	held := make(chan int, 1)
	go func() { code, _ := get(); held <- code }()
	require.Eventually(t, func() bool { return calls.Load() == 1 }, 2*time.Second, time.Millisecond)
	time.Sleep(150 * time.Millisecond) // past the check's Timeout

	for i := range 20 {
		start := time.Now()
		code, err := get()
		require.NoError(t, err, "probe %d", i)
		assert.Equal(t, http.StatusServiceUnavailable, code, "probe %d", i)
		assert.Less(t, time.Since(start), time.Second, "probe %d waited on the stuck check", i)
	}
	assert.False(t, c.Ready())
	assert.ErrorIs(t, c.Stats().Checks[0].LastError, ErrTimeout)
	assert.Equal(t, int64(1), calls.Load(), "probes after the Timeout called the stuck check")
	select {
	case <-held:
		t.Fatal("the probe that called the stuck check returned")
	default:
	}

	closed := make(chan struct{})
	go func() { _ = c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("Close waits for a Local check stuck on a probe's goroutine")
	}
	close(release)
	assert.Equal(t, http.StatusServiceUnavailable, <-held, "the held probe, answered after Close")
	client.CloseIdleConnections()
	srv.Close()
}
