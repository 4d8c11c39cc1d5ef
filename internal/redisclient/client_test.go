package redisclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/internal/redistest"
)

var errTestUnavailable = errors.New("test: unavailable")

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// syncBuffer is a bytes.Buffer safe for a logger written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newClient(t *testing.T, rdb redis.UniversalClient, cfg Config) *Client {
	t.Helper()
	cfg.Component = "test"
	cfg.DefaultPrefix = "test:"
	cfg.DefaultTimeout = 50 * time.Millisecond
	cfg.Unavailable = errTestUnavailable
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	c, err := New(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// opaque hides the concrete client type, as a user's own UniversalClient would.
type opaque struct{ redis.UniversalClient }

func TestConfigErrorsNameTheField(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{Prefix: "a{b"}, "RedisConfig.Prefix"},
		{Config{Timeout: -1}, "RedisConfig.Timeout"},
		{Config{RetryInterval: -1}, "RedisConfig.RetryInterval"},
		{Config{FailFastAfter: -1}, "RedisConfig.FailFastAfter"},
	} {
		tt.cfg.DefaultTimeout, tt.cfg.Unavailable = time.Second, errTestUnavailable
		if _, err := New(rdb, tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want an error naming %s", tt.cfg, err, tt.want)
		}
	}
	if _, err := New(nil, Config{DefaultTimeout: time.Second, Unavailable: errTestUnavailable}); err == nil {
		t.Error("New(nil) must fail")
	}
	c, err := New(rdb, Config{DefaultPrefix: "p:", DefaultTimeout: time.Second, Unavailable: errTestUnavailable})
	if err != nil {
		t.Fatal(err)
	}
	if c.Prefix() != "p:" || c.Timeout() != time.Second || c.RetryInterval() != DefaultRetryInterval || c.cfg.FailFastAfter != defaultFailFastAfter {
		t.Errorf("defaults: %q %v %v %d", c.Prefix(), c.Timeout(), c.RetryInterval(), c.cfg.FailFastAfter)
	}
}

func TestModeIsChosenOnceFromTheClient(t *testing.T) {
	plain := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	withCtx := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ContextTimeoutEnabled: true})
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	clusterCtx := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}, ContextTimeoutEnabled: true})
	for _, c := range []redis.UniversalClient{plain, withCtx, cluster, clusterCtx} {
		defer c.Close()
	}
	for _, tt := range []struct {
		name   string
		rdb    redis.UniversalClient
		mode   mode
		single bool
	}{
		{"client", plain, modeGoroutine, true},
		{"client with ContextTimeoutEnabled", withCtx, modeContext, true},
		{"cluster", cluster, modeGoroutine, false},
		{"cluster with ContextTimeoutEnabled", clusterCtx, modeContext, false},
		{"unknown UniversalClient", opaque{plain}, modeGoroutine, false},
	} {
		c := newClient(t, tt.rdb, Config{})
		if c.mode != tt.mode || c.SingleNode() != tt.single {
			t.Errorf("%s: mode %d single %v, want %d %v", tt.name, c.mode, c.SingleNode(), tt.mode, tt.single)
		}
	}
}

// fault makes Redis, behind a proxy, stop answering in time (on) and answer again (off).
type fault struct {
	name    string
	on, off func()
}

// proxyFaults are the ways p keeps Redis from answering in time: no answer at all, or one
// after 300 ms.
func proxyFaults(p *redistest.Proxy) []fault {
	return []fault{
		{"blackhole", func() { p.Blackhole(true) }, func() { p.Blackhole(false) }},
		{"slow", func() { p.SetDelay(300 * time.Millisecond) }, func() { p.SetDelay(0) }},
	}
}

// TestCallIsBoundedInEveryMode blackholes Redis, or slows it past the timeout: every mode
// returns the same error, ErrUnavailable wrapping context.DeadlineExceeded, within about the
// timeout, and the call counts as a failure.
func TestCallIsBoundedInEveryMode(t *testing.T) {
	srv := redistest.Open(t, redistest.Miniredis)
	p := redistest.StartProxy(t, srv.Mini.Addr())
	faults := proxyFaults(p)
	for _, tt := range []struct {
		name string
		opt  redis.Options
		wrap bool
	}{
		{"context", redis.Options{ContextTimeoutEnabled: true}, false},
		{"goroutine", redis.Options{}, false},
		{"goroutine, unknown client", redis.Options{}, true},
	} {
		for _, fault := range faults {
			t.Run(tt.name+", "+fault.name, func(t *testing.T) {
				opt := tt.opt
				opt.Addr = p.Addr()
				opt.MaxRetries = -1
				rc := redis.NewClient(&opt)
				defer rc.Close()
				var rdb redis.UniversalClient = rc
				if tt.wrap {
					rdb = opaque{rc}
				}
				c := newClient(t, rdb, Config{Timeout: 100 * time.Millisecond})
				ctx := context.Background()
				if err := c.Do(ctx, func(ctx context.Context, r redis.UniversalClient) error { return r.Ping(ctx).Err() }); err != nil {
					t.Fatalf("through the proxy: %v", err)
				}
				fault.on()
				defer fault.off()
				start := time.Now()
				v, err := Call(ctx, c, func(ctx context.Context, r redis.UniversalClient) (string, error) {
					return r.Get(ctx, "k").Result()
				})
				took := time.Since(start)
				if !errors.Is(err, errTestUnavailable) || !errors.Is(err, context.DeadlineExceeded) || v != "" {
					t.Fatalf("call: %q, %v; want ErrUnavailable wrapping context.DeadlineExceeded", v, err)
				}
				// Far below go-redis's 3s ReadTimeout; the margin is for a loaded CI machine.
				if took < 90*time.Millisecond || took > time.Second {
					t.Fatalf("call took %v, want about the 100ms timeout", took)
				}
				if st := c.Stats(); st.Failures != 1 || st.Down {
					t.Fatalf("stats %+v: one failure, not yet failing fast", st)
				}
			})
		}
	}
}

// TestCallerDeadlineIsNotARedisFailure: a caller whose own context ends first gets its context's
// error, and Redis is not counted as failing, in every mode.
func TestCallerDeadlineIsNotARedisFailure(t *testing.T) {
	srv := redistest.Open(t, redistest.Miniredis)
	p := redistest.StartProxy(t, srv.Mini.Addr())
	faults := proxyFaults(p)
	for _, tt := range []struct {
		name string
		opt  redis.Options
	}{{"goroutine", redis.Options{}}, {"context", redis.Options{ContextTimeoutEnabled: true}}} {
		for _, fault := range faults {
			t.Run(tt.name+", "+fault.name, func(t *testing.T) {
				opt := tt.opt
				opt.Addr = p.Addr()
				opt.MaxRetries = -1
				rc := redis.NewClient(&opt)
				defer rc.Close()
				c := newClient(t, rc, Config{Timeout: time.Second, FailFastAfter: 1})
				_ = c.Do(context.Background(), func(ctx context.Context, r redis.UniversalClient) error { return r.Ping(ctx).Err() })
				fault.on()
				defer fault.off()
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer cancel()
				start := time.Now()
				err := c.Do(ctx, func(ctx context.Context, r redis.UniversalClient) error { return r.Ping(ctx).Err() })
				if took := time.Since(start); took > 500*time.Millisecond {
					t.Fatalf("took %v: the caller's 50ms deadline must bound the call", took)
				}
				if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errTestUnavailable) {
					t.Fatalf("err = %v, want the caller's DeadlineExceeded, not ErrUnavailable", err)
				}
				if st := c.Stats(); st.Failures != 0 || st.Down {
					t.Fatalf("stats %+v: the caller's deadline says nothing about Redis", st)
				}
				cctx, ccancel := context.WithCancel(context.Background())
				ccancel()
				if err := c.Do(cctx, func(context.Context, redis.UniversalClient) error { return nil }); !errors.Is(err, context.Canceled) {
					t.Fatalf("cancelled caller: %v", err)
				}
			})
		}
	}
}

func TestFailFastAfterConsecutiveFailures(t *testing.T) {
	b := redistest.Open(t, redistest.Miniredis)
	var log syncBuffer
	// A Timeout no machine load reaches: a timed-out call would count as a failure and go on
	// running after its caller moved on.
	c := newClient(t, b.Client, Config{Timeout: 5 * time.Second, RetryInterval: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&log, nil))})
	ctx := context.Background()
	var calls atomic.Int32 // fn runs on a goroutine of its own (the client is not ContextTimeoutEnabled)
	get := func() error {
		return c.Do(ctx, func(ctx context.Context, r redis.UniversalClient) error {
			calls.Add(1)
			return r.Ping(ctx).Err()
		})
	}
	b.Mini.SetError("LOADING Redis is loading the dataset in memory")
	for i := range 2 {
		if err := get(); !errors.Is(err, errTestUnavailable) || c.Down() {
			t.Fatalf("failure %d: %v, down %v; want ErrUnavailable, still trying", i+1, err, c.Down())
		}
	}
	b.Mini.SetError("")
	if err := get(); err != nil || c.Down() {
		t.Fatalf("a success between failures: %v", err)
	}
	b.Mini.SetError("LOADING")
	for range 3 {
		_ = get()
	}
	if !c.Down() || calls.Load() != 6 {
		t.Fatalf("after 3 consecutive failures: down %v, %d calls", c.Down(), calls.Load())
	}
	if err := get(); !errors.Is(err, errTestUnavailable) || !errors.Is(err, ErrNotSent) || calls.Load() != 6 || c.Stats().FastFails != 1 {
		t.Fatalf("failing fast: %v, %d calls, %+v", err, calls.Load(), c.Stats())
	}
	b.Mini.SetError("")
	time.Sleep(220 * time.Millisecond)
	if err := get(); err != nil || c.Down() {
		t.Fatalf("the probe after RetryInterval succeeds and ends the outage: %v", err)
	}
	// One line when the outage starts, one when it ends: none for the calls in between.
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "failing fast") ||
		!strings.Contains(lines[1], "level=INFO") || !strings.Contains(lines[1], "answers again") {
		t.Fatalf("log:\n%s\nwant one Warn at the start of the outage and one Info at its end", log.String())
	}
}

// TestTimedOutResultsAreNeverRead: in goroutine mode, a call that ends after the deadline
// delivers nothing to its caller (the race detector would flag a shared write).
func TestTimedOutResultsAreNeverRead(t *testing.T) {
	b := redistest.Open(t, redistest.Miniredis)
	c := newClient(t, opaque{b.Client}, Config{Timeout: 20 * time.Millisecond})
	release := make(chan struct{})
	finished := make(chan struct{})
	v, err := Call(context.Background(), c, func(ctx context.Context, _ redis.UniversalClient) (*int, error) {
		defer close(finished)
		<-release // ignores its context, as go-redis does without ContextTimeoutEnabled
		x := 42
		return &x, nil
	})
	close(release)
	<-finished
	if v != nil || !errors.Is(err, errTestUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Call = %v, %v; want nothing and ErrUnavailable wrapping DeadlineExceeded", v, err)
	}
}

const incr = `return redis.call('INCRBY', KEYS[1], ARGV[1])`

func TestRunLoadsScriptAndPipelines(t *testing.T) {
	for _, k := range redistest.Kinds()[1:] { // every Redis; Kinds()[0] is memory
		t.Run(string(k), func(t *testing.T) {
			b := redistest.Open(t, k)
			c := newClient(t, b.Client, Config{Timeout: time.Second})
			ctx := context.Background()
			s := NewScript(incr + " -- " + b.Prefix) // a script this server has never seen: NOSCRIPT first
			calls := []*ScriptCall{
				{Args: []any{1, b.Prefix + "{a}", 2}},
				{Args: []any{1, b.Prefix + "{b}", 3}},
			}
			if err := c.Run(ctx, s, calls); err != nil {
				t.Fatal(err)
			}
			for i, want := range []int64{2, 3} {
				if got, err := calls[i].Cmd.Int64(); err != nil || got != want {
					t.Fatalf("call %d: %d, %v; want %d", i, got, err, want)
				}
			}
			// Loaded now: one more run adds once (a NOSCRIPT resend must never run a script twice).
			one := []*ScriptCall{{Args: []any{1, b.Prefix + "{a}", 2}}}
			if err := c.Run(ctx, s, one); err != nil {
				t.Fatal(err)
			}
			if got, _ := b.Client.Get(ctx, b.Prefix+"{a}").Int64(); got != 4 {
				t.Fatalf("a = %d, want 4", got)
			}
		})
	}
}

func TestRunReportsPartialFailure(t *testing.T) {
	b := redistest.Open(t, redistest.Miniredis)
	c := newClient(t, b.Client, Config{})
	calls := []*ScriptCall{
		{Args: []any{1, b.Prefix + "{a}", 2}},
		{Args: []any{1, b.Prefix + "{b}", "not a number"}},
	}
	err := c.Run(context.Background(), NewScript(incr), calls)
	var partial *PartialError
	if !errors.As(err, &partial) || !errors.Is(err, errTestUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable wrapping a *PartialError", err)
	}
	if calls[0].Cmd.Err() != nil || calls[1].Cmd.Err() == nil {
		t.Fatalf("errors: %v, %v", calls[0].Cmd.Err(), calls[1].Cmd.Err())
	}
}

func TestRunLeavesNoCommandAfterATimeout(t *testing.T) {
	b := redistest.Open(t, redistest.Miniredis)
	p := redistest.StartProxy(t, b.Mini.Addr())
	rc := redis.NewClient(&redis.Options{Addr: p.Addr()})
	defer rc.Close()
	c := newClient(t, opaque{rc}, Config{Timeout: 30 * time.Millisecond})
	p.Blackhole(true)
	calls := []*ScriptCall{{Args: []any{1, b.Prefix + "{a}", 1}}}
	if err := c.Run(context.Background(), NewScript(incr), calls); !errors.Is(err, errTestUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if calls[0].Cmd != nil {
		t.Fatal("a timed-out call's command is still go-redis's: it must not be handed out")
	}
	p.Blackhole(false)
	p.Cut()
}

// TestSecretIsSharedByInstances: two clients of one Redis get the same secret (the first one
// creates it); a configured secret wins; while Redis is down the secret is unavailable, and
// it is fetched once it answers.
func TestSecretIsSharedByInstances(t *testing.T) {
	for _, k := range redistest.Kinds()[1:] {
		t.Run(string(k), func(t *testing.T) {
			b := redistest.Open(t, k)
			ctx := context.Background()
			a := newClient(t, b.Client, Config{Prefix: b.Prefix})
			c := newClient(t, b.NewClient(t), Config{Prefix: b.Prefix})
			sa, err := a.Secret(ctx)
			if err != nil || len(sa) < 32 {
				t.Fatalf("secret %q, %v", sa, err)
			}
			sc, err := c.Secret(ctx)
			if err != nil || string(sc) != string(sa) {
				t.Fatalf("second instance: %q, %v; want %q", sc, err, sa)
			}
			own := newClient(t, b.Client, Config{Prefix: b.Prefix, Secret: []byte("mine")})
			if s, err := own.Secret(ctx); err != nil || string(s) != "mine" {
				t.Fatalf("configured secret: %q, %v", s, err)
			}
		})
	}
	b := redistest.Open(t, redistest.Miniredis)
	c := newClient(t, b.Client, Config{Prefix: b.Prefix})
	b.Mini.SetError("LOADING")
	if _, err := c.Secret(context.Background()); !errors.Is(err, errTestUnavailable) {
		t.Fatalf("Redis down: %v", err)
	}
	b.Mini.SetError("")
	if s, err := c.Secret(context.Background()); err != nil || len(s) == 0 {
		t.Fatalf("Redis back: %q, %v", s, err)
	}
}

// countingHook counts the commands a client processes.
type countingHook struct{ n *atomic.Int64 }

func (countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(int64(len(cmds))); return next(ctx, cmds) }
}

// TestClientHooksSeeCalls: a go-redis hook (tracing, metrics) on the client, added at any time,
// sees the store's commands in every mode.
func TestClientHooksSeeCalls(t *testing.T) {
	b := redistest.Open(t, redistest.Miniredis)
	for _, opt := range []redis.Options{{}, {ContextTimeoutEnabled: true}} {
		opt.Addr = b.Mini.Addr()
		rc := redis.NewClient(&opt)
		defer rc.Close()
		c := newClient(t, rc, Config{})
		ping := func() {
			if err := c.Do(context.Background(), func(ctx context.Context, r redis.UniversalClient) error {
				return r.Ping(ctx).Err()
			}); err != nil {
				t.Fatal(err)
			}
		}
		ping()
		var n atomic.Int64
		rc.AddHook(countingHook{&n}) // after the store's first call
		ping()
		if n.Load() != 1 {
			t.Fatalf("ContextTimeoutEnabled %v: the hook saw %d commands, want 1", opt.ContextTimeoutEnabled, n.Load())
		}
	}
}

// TestFrozenRedisUnderLoad freezes a real redis-server (SIGSTOP) while eight goroutines call
// it, with go-redis's default options (ReadTimeout 3 s, retries on): in both modes no call
// waits much longer than the store's Timeout, the client starts failing fast, every error wraps
// ErrUnavailable, and once the server is thawed calls succeed again within RetryInterval. The
// calls abandoned in goroutine mode end after the thaw (goleak in TestMain).
func TestFrozenRedisUnderLoad(t *testing.T) {
	srv := redistest.StartServer(t, 0)
	for _, ctxTimeouts := range []bool{false, true} {
		t.Run(fmt.Sprintf("ContextTimeoutEnabled=%v", ctxTimeouts), func(t *testing.T) {
			rc := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: ctxTimeouts})
			defer rc.Close()
			const timeout, retry = 100 * time.Millisecond, 200 * time.Millisecond
			c := newClient(t, rc, Config{Timeout: timeout, RetryInterval: retry})
			get := func() error {
				return c.Do(context.Background(), func(ctx context.Context, r redis.UniversalClient) error {
					return r.Get(ctx, "frozen:k").Err()
				})
			}
			if err := get(); err != nil && !errors.Is(err, redis.Nil) {
				t.Fatalf("before the freeze: %v", err)
			}
			var (
				stop       atomic.Bool
				slowest    atomic.Int64
				wrongErrs  atomic.Int64
				firstWrong atomic.Value
				wg         sync.WaitGroup
			)
			for range 8 {
				wg.Go(func() {
					for !stop.Load() {
						start := time.Now()
						err := get()
						if d := int64(time.Since(start)); d > slowest.Load() {
							slowest.Store(d) // racy max: good enough for a bound
						}
						if err != nil && !errors.Is(err, redis.Nil) && !errors.Is(err, errTestUnavailable) {
							wrongErrs.Add(1)
							firstWrong.CompareAndSwap(nil, err.Error())
						}
						time.Sleep(time.Millisecond)
					}
				})
			}
			time.Sleep(100 * time.Millisecond)
			srv.Freeze()
			deadline := time.Now().Add(5 * time.Second)
			for !c.Down() && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			sawDown := c.Down()
			time.Sleep(time.Second)
			srv.Thaw()
			thawed := time.Now()
			for time.Since(thawed) < 5*time.Second {
				err := get()
				if err == nil || errors.Is(err, redis.Nil) {
					break
				}

				time.Sleep(10 * time.Millisecond)
			}
			recovered := time.Since(thawed)
			stop.Store(true)
			wg.Wait()
			if !sawDown {
				t.Error("the client never started failing fast while Redis was frozen")
			}
			// Generous for a loaded CI machine, far below go-redis's 3 s ReadTimeout.
			if d := time.Duration(slowest.Load()); d > timeout+400*time.Millisecond {
				t.Errorf("slowest call %v while Redis was frozen; want about the %v Timeout", d, timeout)
			}
			if n := wrongErrs.Load(); n > 0 {
				t.Errorf("%d errors did not wrap ErrUnavailable, first: %v", n, firstWrong.Load())
			}
			if recovered > retry+time.Second {
				t.Errorf("calls succeeded again %v after the thaw; want within RetryInterval (%v)", recovered, retry)
			}
			if c.Down() {
				t.Error("still failing fast after a successful call")
			}
			t.Logf("slowest call %v, recovered %v after the thaw, %+v", time.Duration(slowest.Load()), recovered, c.Stats())
		})
	}
}

// TestNilIsAReply: redis.Nil ("no such key") is Redis answering. A store that lets it through
// gets it back unwrapped, and a run of them never starts an outage.
func TestNilIsAReply(t *testing.T) {
	b := redistest.Open(t, redistest.Miniredis)
	c := newClient(t, b.Client, Config{FailFastAfter: 1})
	for range 5 {
		err := c.Do(context.Background(), func(ctx context.Context, r redis.UniversalClient) error {
			return r.Get(ctx, b.Prefix+"missing").Err()
		})
		if !errors.Is(err, redis.Nil) || errors.Is(err, errTestUnavailable) {
			t.Fatalf("err = %v, want redis.Nil as is", err)
		}
	}
	if st := c.Stats(); st.Down || st.Failures != 0 {
		t.Fatalf("stats %+v: a missing key is no failure", st)
	}
}

// TestSecretKeptAcrossALostKey: Redis loses the secret (a restart without persistence, an
// eviction) while instance A runs. After A's next outage ends, A's first call writes its secret
// back, so an instance starting later hashes as A does; if another instance made a new secret
// meanwhile, A keeps its own and warns.
func TestSecretKeptAcrossALostKey(t *testing.T) {
	b := redistest.Open(t, redistest.Miniredis)
	ctx := context.Background()
	var log syncBuffer
	a := newClient(t, b.Client, Config{Prefix: b.Prefix, FailFastAfter: 1, RetryInterval: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&log, nil))})
	mine, err := a.Secret(ctx)
	if err != nil {
		t.Fatal(err)
	}
	outage := func() {
		t.Helper()
		b.Mini.SetError("LOADING")
		_ = a.Do(ctx, func(ctx context.Context, r redis.UniversalClient) error { return r.Ping(ctx).Err() })
		b.Mini.SetError("")
		time.Sleep(2 * time.Millisecond)
		if err := a.Do(ctx, func(ctx context.Context, r redis.UniversalClient) error { return r.Ping(ctx).Err() }); err != nil || a.Down() {
			t.Fatalf("outage not over: %v", err)
		}
	}

	b.Mini.Del(b.Prefix + "secret") // lost
	outage()
	if s, err := a.Secret(ctx); err != nil || string(s) != string(mine) {
		t.Fatalf("A's secret after the outage: %q, %v", s, err)
	}
	later := newClient(t, b.NewClient(t), Config{Prefix: b.Prefix})
	if s, err := later.Secret(ctx); err != nil || string(s) != string(mine) {
		t.Fatalf("an instance started after the loss reads %q, %v; want A's, written back", s, err)
	}

	b.Mini.Set(b.Prefix+"secret", "made-by-another-instance")
	outage()
	if s, _ := a.Secret(ctx); string(s) != string(mine) {
		t.Fatalf("A changed its secret to %q: its keys would move", s)
	}
	if !strings.Contains(log.String(), "not this instance's") {
		t.Fatalf("no warning about the other secret; log:\n%s", log.String())
	}
}

// TestCallerCancelledMidCall: a caller cancelled while Redis does not answer gets
// context.Canceled and Redis is not counted as failing; without ContextTimeoutEnabled the call
// returns at the cancellation, with it (go-redis watches only deadlines) at the store's
// Timeout at the latest, as the package doc says.
func TestCallerCancelledMidCall(t *testing.T) {
	srv := redistest.Open(t, redistest.Miniredis)
	p := redistest.StartProxy(t, srv.Mini.Addr())
	const timeout, cancelAfter = 300 * time.Millisecond, 50 * time.Millisecond
	for _, ctxTimeouts := range []bool{false, true} {
		t.Run(fmt.Sprintf("ContextTimeoutEnabled=%v", ctxTimeouts), func(t *testing.T) {
			rc := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1, ContextTimeoutEnabled: ctxTimeouts})
			defer rc.Close()
			c := newClient(t, rc, Config{Timeout: timeout, FailFastAfter: 1})
			ping := func(ctx context.Context) error {
				return c.Do(ctx, func(ctx context.Context, r redis.UniversalClient) error { return r.Ping(ctx).Err() })
			}
			if err := ping(context.Background()); err != nil {
				t.Fatal(err)
			}
			p.Blackhole(true)
			defer func() { p.Blackhole(false); p.Cut() }()
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(cancelAfter, cancel)
			start := time.Now()
			err := ping(ctx)
			took := time.Since(start)
			if !errors.Is(err, context.Canceled) || errors.Is(err, errTestUnavailable) {
				t.Fatalf("err = %v, want context.Canceled, not ErrUnavailable", err)
			}
			bound := cancelAfter + 150*time.Millisecond
			if ctxTimeouts {
				bound = timeout + 150*time.Millisecond
			}
			if took > bound {
				t.Fatalf("returned after %v, want at most %v", took, bound)
			}
			if st := c.Stats(); st.Failures != 0 || st.Down {
				t.Fatalf("stats %+v: a cancelled caller says nothing about Redis", st)
			}
		})
	}
}
