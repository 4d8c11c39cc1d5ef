package queue

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

// The chaos test: 10,000 jobs on worker processes killed at random, two of them frozen past
// their leases, and the redis-server itself killed and restarted mid-run.
const (
	chaosJobs        = 10_000
	chaosQueue       = "chaos"
	chaosPrefix      = "chaos:"
	chaosWorkers     = 4                       // worker processes alive at once
	chaosConcurrency = 8                       // runs at once in each
	chaosLease       = 1500 * time.Millisecond // an interrupted job runs again about this late
	// A run takes 1-10ms, but one job in chaosSlowEvery takes chaosSlow: past the lease, so
	// that it holds the job by extending it, and long enough that when a frozen worker resumes
	// with its success, the run that replaced its own still goes on: the stale success then
	// reaches a job that another claim holds, not one already done.
	chaosSlow      = chaosLease + 300*time.Millisecond
	chaosSlowEvery = 200
	// chaosFreeze is how long a frozen worker stays frozen: past the lease of its runs
	// (extended Lease/3 before the freeze at most), so that the others take its jobs back, and
	// short of the end of the slow runs that replace its own.
	chaosFreeze   = chaosLease + time.Second
	chaosDowntime = time.Second      // how long Redis is down at its restart
	chaosDeadline = 90 * time.Second // the whole chaos, worst case (typically 20-30s)
	// chaosWindow is how close an interruption (a kill, a freeze, the restart, a failed store
	// call, a stall) must be to a run to explain that the run had no accepted outcome: a run
	// of 1-10ms settles within a round trip, and a slow one within chaosSlow of its start.
	chaosWindow = 3 * time.Second

	// The environment of a worker process: the Redis address and the file of its evidence.
	chaosEnvAddr = "OUTGROW_CHAOS_WORKER_REDIS"
	chaosEnvLog  = "OUTGROW_CHAOS_WORKER_LOG"
)

// TestChaosKillsAndRedisRestart: 10,000 jobs run on worker processes (the test binary run
// again: see TestChaosWorkerProcess) that the test SIGKILLs at random, one every 300-800ms,
// starting a replacement each time; twice it freezes one (SIGSTOP) in the middle of a slow
// run until the others have taken its jobs back, so that it resumes and tries to settle runs
// that are no longer its own; and once, mid-run, it kills the redis-server (AOF, appendfsync
// always) and starts it again on the same port and data.
//
// The workers record what happened to each run in files, a line per event written by one
// write(2), which a SIGKILL cannot take back; the test then checks that:
//   - no job is lost: every job's handler succeeded at least once, and the queue ends empty
//     (nothing due, scheduled, running or dead, and no job's hash left in Redis);
//   - no stale success is accepted: the store accepts at most one success per job
//     (Hooks.OnDone), and only from the job's latest claim; a job done without any must
//     have had its success taken while its worker was killed, or Redis failed, before the
//     answer came;
//   - a job runs again only after an interruption: every run but the one that counted was
//     on a worker killed, frozen, stalled or failing to reach Redis about then, or around
//     the restart.
func TestChaosKillsAndRedisRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("about 30s of chaos")
	}
	srv := redistest.StartServerWith(t, redistest.ServerConfig{AOF: true})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	store, err := NewRedisStore(rdb, RedisConfig{Prefix: chaosPrefix, Timeout: 5 * time.Second,
		RetryInterval: 50 * time.Millisecond, Logger: quiet})
	require.NoError(t, err)
	seed := rand.Uint64()
	c := &chaos{t: t, srv: srv, q: newQueue(t, store), rng: rand.New(rand.NewPCG(seed, seed)), slow: map[string]bool{}}
	t.Logf("seed %d; redis-server on %s", seed, srv.Addr())

	c.ids = make([]string, chaosJobs)
	for i := 0; i < chaosJobs; i += 1000 {
		batch := make([]Job, 1000)
		for k := range batch {
			id := fmt.Sprintf("job-%05d", i+k)
			c.ids[i+k], batch[k] = id, Job{ID: id, Queue: chaosQueue}
			if (i+k)%chaosSlowEvery == chaosSlowEvery/2 {
				batch[k].Payload, c.slow[id] = []byte("slow"), true
			}
		}
		enqueue(t, c.q, batch...)
	}
	require.Equal(t, uint64(chaosJobs), c.q.Stats().Enqueued)

	c.fleet = newChaosFleet(t, srv.Addr())
	c.run()

	// The store: empty, nothing dead, no job's hash left behind.
	ctx := context.Background()
	st, err := c.stats()
	require.NoError(t, err)
	assert.Equal(t, QueueStats{}, st, "the queue at the end")
	if st.Dead > 0 {
		dead, err := c.q.Dead(ctx, chaosQueue, 10)
		require.NoError(t, err)
		for _, d := range dead {
			t.Errorf("dead: %s after %d deliveries: %s", d.ID, d.Deliveries, d.LastError)
		}
	}
	left, err := rdb.Keys(ctx, store.key(chaosQueue, ":j:")+"*").Result()
	require.NoError(t, err)
	assert.Empty(t, left, "job hashes left in Redis")

	c.check(readChaosEvidence(t, c.fleet.procs))
}

// chaos is the state of TestChaosKillsAndRedisRestart.
type chaos struct {
	t     *testing.T
	srv   *redistest.Server
	q     *Queue
	rng   *rand.Rand
	ids   []string
	slow  map[string]bool // the slow jobs' ids
	fleet *chaosFleet

	t0, end  time.Time // the chaos began and ended (the queue was empty)
	down, up time.Time // Redis was killed, and answered again
}

// stats reads the queue's counts, bounded for the time Redis is down.
func (c *chaos) stats() (QueueStats, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.q.QueueStats(ctx, chaosQueue)
}

// run starts the workers and brings chaos until the queue is empty, then shuts the workers
// down (SIGTERM).
func (c *chaos) run() {
	t, fleet := c.t, c.fleet
	var (
		last      QueueStats
		restartAt = 0.55                 // restart Redis when this share of the jobs is left
		freezes   = []float64{0.8, 0.25} // freeze a worker when this share is left
		freezeDue time.Time              // when the next freeze became due
		frozen    *chaosProc
		nextKill  = func() time.Time { return time.Now().Add(time.Duration(300+c.rng.IntN(500)) * time.Millisecond) }
		killAt    = nextKill()
	)
	c.t0 = time.Now()
	deadline := c.t0.Add(chaosDeadline)
	for range chaosWorkers {
		fleet.start()
	}
	for {
		if time.Now().After(deadline) {
			fleet.stop()
			ev := readChaosEvidence(t, fleet.procs)
			var missing []string
			for _, id := range c.ids {
				if !slices.ContainsFunc(ev.runs[id], func(r *chaosRun) bool { return r.accepted }) {
					missing = append(missing, id)
				}
			}
			t.Fatalf("the jobs were not done within %v: the queue holds %+v (last read); %d jobs have no accepted success, e.g. %v",
				chaosDeadline, last, len(missing), missing[:min(len(missing), 20)])
		}
		time.Sleep(20 * time.Millisecond)
		st, err := c.stats()
		if err == nil {
			if last = st; st.Due+st.Scheduled+st.Running == 0 {
				break
			}
		}
		left := float64(last.Due+last.Scheduled+last.Running) / chaosJobs

		if err == nil && c.down.IsZero() && left <= restartAt {
			// Kill Redis mid-run, and start it again on the same port and AOF.
			c.down = time.Now()
			c.srv.Stop()
			time.Sleep(chaosDowntime)
			c.srv.Restart()
			c.up = time.Now()
			after, err := c.stats()
			for err != nil {
				if time.Since(c.up) > 5*time.Second {
					t.Fatalf("the queue cannot be read 5s after Redis answered again: %v", err)
				}
				time.Sleep(10 * time.Millisecond)
				after, err = c.stats()
			}
			t.Logf("redis-server killed at %v with %+v left; answering again %v later with %+v",
				c.since(c.down), st, c.up.Sub(c.down).Round(time.Millisecond), after)
			continue
		}
		if frozen != nil && time.Since(frozen.frozen) >= chaosFreeze {
			require.NoError(t, frozen.cmd.Process.Signal(syscall.SIGCONT))
			frozen.thawed, frozen = time.Now(), nil
		}
		if frozen == nil && len(freezes) > 0 && left <= freezes[0] {
			// Freeze a worker in the middle of a slow run if one is (after a while, any).
			if freezeDue.IsZero() {
				freezeDue = time.Now()
			}
			var candidates []*chaosProc
			for _, p := range fleet.live {
				if p.runningSlow(c.slow) {
					candidates = append(candidates, p)
				}
			}
			if len(candidates) == 0 && time.Since(freezeDue) > 2*time.Second {
				candidates = fleet.live
			}
			if len(candidates) > 0 {
				freezes, freezeDue = freezes[1:], time.Time{}
				frozen = candidates[c.rng.IntN(len(candidates))]
				frozen.frozen = time.Now()
				require.NoError(t, frozen.cmd.Process.Signal(syscall.SIGSTOP))
			}
		}
		if time.Now().After(killAt) {
			i := c.rng.IntN(len(fleet.live))
			if fleet.live[i] == frozen {
				i = (i + 1) % len(fleet.live)
			}
			fleet.kill(i)
			fleet.start()
			killAt = nextKill()
		}
	}
	c.end = time.Now()
	if frozen != nil {
		frozen.thawed = c.end // stop sends it SIGCONT
	}
	fleet.stop()
	require.False(t, c.down.IsZero(), "the queue emptied before the restart")
}

// since is how long after the chaos began at was, for messages.
func (c *chaos) since(at time.Time) time.Duration { return at.Sub(c.t0).Round(time.Millisecond) }

// interrupted tells why a run on p at `at` may have had no accepted outcome: its process was
// killed (after it), frozen or stalled, a call of its to Redis failed, or Redis restarted,
// about then. It returns "" when nothing explains it.
func (c *chaos) interrupted(ev chaosEvidence, p *chaosProc, at time.Time) string {
	near := func(events []time.Time) bool {
		return slices.ContainsFunc(events, func(e time.Time) bool { return within(e, at, at) })
	}
	switch {
	case !p.killed.IsZero() && !at.After(p.killed) && p.killed.Sub(at) <= chaosWindow:
		return "kill"
	case !p.frozen.IsZero() && within(at, p.frozen, p.thawed):
		return "freeze"
	case within(at, c.down, c.up):
		return "restart"
	case near(ev.failures[p]):
		return "store failure"
	case near(ev.stalls[p]):
		return "stall"
	}
	return ""
}

// describe tells what the evidence says of a job, for failure messages.
func (c *chaos) describe(ev chaosEvidence, id string) string {
	var b strings.Builder
	b.WriteString(id + ":")
	for _, r := range ev.runs[id] {
		fmt.Fprintf(&b, " [delivery %d on worker %d: started %v", r.deliveries, r.proc.n, c.since(r.start))
		if !r.succeeded.IsZero() {
			fmt.Fprintf(&b, ", succeeded %v", c.since(r.succeeded))
		}
		if r.accepted {
			b.WriteString(", accepted")
		}
		if r.lost {
			b.WriteString(", lease lost")
		}
		if !r.proc.killed.IsZero() {
			fmt.Fprintf(&b, "; worker killed %v", c.since(r.proc.killed))
		}
		if !r.proc.frozen.IsZero() {
			fmt.Fprintf(&b, "; worker frozen %v to %v", c.since(r.proc.frozen), c.since(r.proc.thawed))
		}
		for _, e := range []struct {
			what   string
			events []time.Time
		}{{"store failures", ev.failures[r.proc]}, {"stalls ended", ev.stalls[r.proc]}} {
			if len(e.events) > 0 {
				fmt.Fprintf(&b, "; worker's %s", e.what)
				for _, at := range e.events {
					fmt.Fprintf(&b, " %v", c.since(at))
				}
			}
		}
		b.WriteString("]")
	}
	return b.String()
}

// check asserts what the evidence must show (see TestChaosKillsAndRedisRestart) and logs its
// figures.
func (c *chaos) check(ev chaosEvidence) {
	t := c.t
	assert.Zero(t, ev.malformed, "malformed evidence lines")
	var (
		lost, twice, stale, unexplainedDone, unexplainedRuns   []string
		runs, extra, repeated, unanswered, frozenLost, overlap int
		causes                                                 = map[string]int{}
	)
	for _, id := range c.ids {
		rs := ev.runs[id]
		runs += len(rs)
		if len(rs) > 1 {
			repeated++
			extra += len(rs) - 1
		}
		final := -1 // the run whose success the store took
		accepted, latest := 0, 0
		for i, r := range rs {
			latest = max(latest, r.deliveries)
			if r.accepted {
				accepted++
				final = i
			}
			if !r.succeeded.IsZero() && r.lost && !r.proc.frozen.IsZero() && within(r.start, r.proc.frozen, r.proc.thawed) {
				frozenLost++ // a frozen worker's success, after its lease: refused, or not sent
				if slices.ContainsFunc(rs, func(o *chaosRun) bool {
					return o.deliveries > r.deliveries && o.start.Before(r.succeeded) && (o.succeeded.IsZero() || o.succeeded.After(r.succeeded))
				}) {
					overlap++ // while the run that replaced it went on
				}
			}
		}
		switch {
		case accepted > 1:
			twice = append(twice, c.describe(ev, id))
		case accepted == 1 && rs[final].deliveries != latest:
			stale = append(stale, c.describe(ev, id))
		case accepted == 0:
			// The job is gone from the store (checked before), with no success accepted: one
			// was, but its worker was killed or Redis failed before the answer reached it.
			for i, r := range slices.Backward(rs) {
				if !r.succeeded.IsZero() {
					final = i
					break
				}
			}
			if final < 0 {
				lost = append(lost, id)
				break
			}
			unanswered++
			if c.interrupted(ev, rs[final].proc, rs[final].succeeded) == "" {
				unexplainedDone = append(unexplainedDone, c.describe(ev, id))
			}
		}
		for i, r := range rs {
			if i == final {
				continue
			}
			why := c.interrupted(ev, r.proc, r.start)
			causes[why]++
			if why == "" {
				unexplainedRuns = append(unexplainedRuns, fmt.Sprintf("delivery %d of %s", r.deliveries, c.describe(ev, id)))
			}
		}
	}
	first := func(s []string) []string { return s[:min(len(s), 20)] }
	assert.Empty(t, first(lost), "%d jobs never succeeded: lost", len(lost))
	assert.Empty(t, first(twice), "%d jobs had two successes accepted", len(twice))
	assert.Empty(t, first(stale), "%d jobs had a success accepted from a claim that a later one replaced", len(stale))
	assert.Empty(t, first(unexplainedDone), "%d jobs were done with no success accepted, and no kill or failure to explain it", len(unexplainedDone))
	assert.Empty(t, first(unexplainedRuns), "%d runs were repeated with no interruption to explain it", len(unexplainedRuns))

	kills, freezes, stalls := 0, 0, 0
	for _, p := range c.fleet.procs {
		if !p.killed.IsZero() {
			kills++
		}
		if !p.frozen.IsZero() {
			freezes++
		} else {
			stalls += len(ev.stalls[p]) // a frozen worker's stall is its freeze
		}
	}
	recovery := "none"
	if i, _ := slices.BinarySearchFunc(ev.accepts, c.up, time.Time.Compare); i < len(ev.accepts) {
		recovery = ev.accepts[i].Sub(c.up).Round(time.Millisecond).String()
	}
	t.Logf("%d jobs in %v: %d worker processes started, %d SIGKILLed, %d frozen for %v, %d stalls of the others; Redis down %v, first success accepted %v after it answered again",
		chaosJobs, c.since(c.end), len(c.fleet.procs), kills, freezes, chaosFreeze, stalls, c.up.Sub(c.down).Round(time.Millisecond), recovery)
	t.Logf("%d runs: %d jobs ran more than once (%d extra runs; the interrupted runs by cause: %v); "+
		"%d successes taken with no OnDone (the worker killed or Redis down before the answer); "+
		"%d successes of frozen workers not recorded (their leases over), %d of them while the run that replaced theirs went on",
		runs, repeated, extra, causes, unanswered, frozenLost, overlap)
}

// TestChaosWorkerProcess is not a test: it is the entry point of the worker processes that
// TestChaosKillsAndRedisRestart starts, by running the test binary again with
// -test.run=^TestChaosWorkerProcess$ and OUTGROW_CHAOS_WORKER_REDIS set. Run by go test, it
// skips.
func TestChaosWorkerProcess(t *testing.T) {
	addr := os.Getenv(chaosEnvAddr)
	if addr == "" {
		t.Skip("the worker process of TestChaosKillsAndRedisRestart: runs only as its child")
	}
	// A worker process ends here, by os.Exit: SIGKILLed by the test, or at its SIGTERM once
	// the jobs are done, or when the test process is gone (its stdin, a pipe, closes).
	os.Exit(chaosWorker(addr, os.Getenv(chaosEnvLog)))
}

// chaosWorker serves the chaos queue until SIGTERM, and returns the exit code. It records its
// evidence in the file at path, a line per event, each written by one write(2), so that a
// SIGKILL loses nothing written: "<kind> <job id> <deliveries> <unix ns>", kind being
//
//	S  a run started (the handler was called)
//	E  the handler succeeded (written before it returns nil)
//	A  the store accepted the run's success (Hooks.OnDone)
//	L  the run's outcome was not recorded (Hooks.OnLeaseLost)
//	F  a call to Redis failed or was refused (RedisStore.Stats, sampled every 50ms; id "-")
//	P  the process was not scheduled for over 500ms, a stall that may have cost it leases
//	   (the sampler's tick came late; deliveries holds the gap in ms; id "-")
func chaosWorker(addr, path string) int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		logger.Error("chaos worker: the test process is gone")
		os.Exit(3)
	}()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		logger.Error("chaos worker", "err", err)
		return 2
	}
	var mu sync.Mutex
	var line []byte
	record := func(kind byte, id string, deliveries int) {
		mu.Lock()
		defer mu.Unlock()
		line = fmt.Appendf(line[:0], "%c %s %d %d\n", kind, id, deliveries, time.Now().UnixNano())
		if _, err := f.Write(line); err != nil {
			logger.Error("chaos worker: evidence", "err", err)
			os.Exit(2)
		}
	}

	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	store, err := NewRedisStore(rdb, RedisConfig{Prefix: chaosPrefix, Timeout: time.Second,
		RetryInterval: 100 * time.Millisecond, Logger: logger})
	if err != nil {
		logger.Error("chaos worker", "err", err)
		return 2
	}
	go func() {
		var seen uint64
		last := time.Now()
		for range time.Tick(50 * time.Millisecond) {
			if gap := time.Since(last); gap > 500*time.Millisecond {
				record('P', "-", int(gap.Milliseconds()))
			}
			last = time.Now()
			st := store.Stats()
			if n := st.Failures + st.FastFails; n != seen {
				seen = n
				record('F', "-", 0)
			}
		}
	}()
	w, err := NewWorker(store, WorkerConfig{
		Lease: chaosLease, MaxInterrupted: 20, IdleWait: time.Second, ShutdownTimeout: 2 * time.Second,
		Logger: logger,
		Hooks: Hooks{
			OnDone: func(_ context.Context, d *Delivery, _ time.Duration, err error, _ time.Time) {
				if err != nil {
					logger.Error("chaos worker: a run failed", "job", d.ID, "err", err)
				}
				record('A', d.ID, d.Deliveries)
			},
			OnLeaseLost: func(_ context.Context, d *Delivery) { record('L', d.ID, d.Deliveries) },
		},
		Queues: map[string]QueueConfig{chaosQueue: {Concurrency: chaosConcurrency,
			Handler: func(ctx context.Context, d *Delivery) error {
				record('S', d.ID, d.Deliveries)
				took := time.Duration(1+rand.IntN(10)) * time.Millisecond
				if string(d.Payload) == "slow" {
					took = chaosSlow
				}
				t := time.NewTimer(took)
				defer t.Stop()
				select {
				case <-t.C:
				case <-ctx.Done():
					return context.Cause(ctx)
				}
				record('E', d.ID, d.Deliveries)
				return nil
			}}},
	})
	if err != nil {
		logger.Error("chaos worker", "err", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := w.Run(ctx); err != nil {
		logger.Error("chaos worker", "err", err)
		return 2
	}
	_ = rdb.Close()
	if err := f.Close(); err != nil {
		return 2
	}
	return 0
}

// chaosProc is a worker process.
type chaosProc struct {
	n      int // in order of start
	cmd    *exec.Cmd
	log    string        // its evidence
	stderr string        // its output
	exited chan struct{} // closed once it exited and was reaped
	killed time.Time     // when the test SIGKILLed it mid-run (after it exited)
	// frozen and thawed bound the SIGSTOP the test gave it, if any.
	frozen, thawed time.Time
}

// runningSlow reports whether p is in the middle of a run of one of the slow jobs.
func (p *chaosProc) runningSlow(slow map[string]bool) bool {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return false
	}
	running := map[string]bool{}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) == 4 && slow[f[1]] {
			running[f[1]] = f[0] == "S"
		}
	}
	for _, r := range running {
		if r {
			return true
		}
	}
	return false
}

// chaosFleet starts and kills the worker processes.
type chaosFleet struct {
	t      *testing.T
	addr   string
	dir    string
	stdin  *os.File // the read end of a pipe that only the test holds open: the workers' stdin
	stdinW *os.File
	procs  []*chaosProc // every process started
	live   []*chaosProc // those running (a frozen one included)
	once   sync.Once
}

func newChaosFleet(t *testing.T, addr string) *chaosFleet {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	f := &chaosFleet{t: t, addr: addr, dir: t.TempDir(), stdin: r, stdinW: w}
	t.Cleanup(f.killAll) // even when the test fails: no process outlives it
	return f
}

// start starts a worker process and adds it to the live ones.
func (f *chaosFleet) start() {
	t := f.t
	p := &chaosProc{n: len(f.procs), exited: make(chan struct{})}
	p.log = filepath.Join(f.dir, fmt.Sprintf("w%03d.log", p.n))
	p.stderr = filepath.Join(f.dir, fmt.Sprintf("w%03d.err", p.n))
	out, err := os.Create(p.stderr)
	require.NoError(t, err)
	defer out.Close() // the child has its own descriptor
	p.cmd = exec.Command(os.Args[0], "-test.run=^TestChaosWorkerProcess$", "-test.count=1")
	p.cmd.Env = append(os.Environ(), chaosEnvAddr+"="+f.addr, chaosEnvLog+"="+p.log)
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = f.stdin, out, out
	require.NoError(t, p.cmd.Start())
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	f.procs = append(f.procs, p)
	f.live = append(f.live, p)
}

// kill SIGKILLs the live process at index i, waits for its exit, and removes it.
func (f *chaosFleet) kill(i int) {
	p := f.live[i]
	_ = p.cmd.Process.Kill()
	<-p.exited
	p.killed = time.Now() // after the last thing it wrote
	f.live = slices.Delete(f.live, i, i+1)
}

// stop shuts the live processes down as a deployment would (SIGTERM), waits up to 10s for
// them, then kills the rest.
func (f *chaosFleet) stop() {
	for _, p := range f.live {
		_ = p.cmd.Process.Signal(syscall.SIGCONT) // in case it is frozen
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	timeout := time.After(10 * time.Second)
	for _, p := range f.live {
		select {
		case <-p.exited:
			if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
				continue // it had not started its worker yet: nothing to shut down
			}
			if !p.cmd.ProcessState.Success() {
				b, _ := os.ReadFile(p.stderr)
				f.t.Errorf("worker process %d ended its shutdown with %v; its output:\n%s", p.n, p.cmd.ProcessState, b)
			}
		case <-timeout:
			f.t.Errorf("worker process %d did not shut down within 10s; killed", p.n)
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	f.live = nil
}

// killAll kills every process still running and closes the workers' stdin.
func (f *chaosFleet) killAll() {
	f.once.Do(func() {
		for _, p := range f.procs {
			_ = p.cmd.Process.Kill() // an error for the processes already reaped
			<-p.exited
		}
		_ = f.stdinW.Close()
		_ = f.stdin.Close()
	})
}

// chaosRun is one run of a job, as a worker process recorded it.
type chaosRun struct {
	proc       *chaosProc
	deliveries int
	start      time.Time // S
	succeeded  time.Time // E, zero if the handler did not succeed
	accepted   bool      // A
	lost       bool      // L
}

// chaosEvidence is what the worker processes recorded.
type chaosEvidence struct {
	runs      map[string][]*chaosRun     // by job id, in order of start
	failures  map[*chaosProc][]time.Time // F
	stalls    map[*chaosProc][]time.Time // P
	accepts   []time.Time                // every A, in order
	malformed int                        // lines that cannot be read
}

// readChaosEvidence reads the evidence files of procs.
func readChaosEvidence(t *testing.T, procs []*chaosProc) chaosEvidence {
	ev := chaosEvidence{runs: map[string][]*chaosRun{}, failures: map[*chaosProc][]time.Time{},
		stalls: map[*chaosProc][]time.Time{}}
	for _, p := range procs {
		b, err := os.ReadFile(p.log)
		if os.IsNotExist(err) {
			continue // killed before it opened it
		}
		require.NoError(t, err)
		byRun := map[string]*chaosRun{} // by id and deliveries
		for line := range strings.Lines(string(b)) {
			if !strings.HasSuffix(line, "\n") && !p.killed.IsZero() {
				// Cut by the SIGKILL: a write that spans two pages of the file may stop
				// between them.
				continue
			}
			fields := strings.Fields(line)
			if len(fields) != 4 || len(fields[0]) != 1 {
				ev.malformed++
				continue
			}
			deliveries, err1 := strconv.Atoi(fields[2])
			ns, err2 := strconv.ParseInt(fields[3], 10, 64)
			if err1 != nil || err2 != nil {
				ev.malformed++
				continue
			}
			kind, id, at := fields[0][0], fields[1], time.Unix(0, ns)
			key := id + " " + fields[2]
			r := byRun[key]
			switch {
			case kind == 'F':
				ev.failures[p] = append(ev.failures[p], at)
			case kind == 'P':
				ev.stalls[p] = append(ev.stalls[p], at)
			case kind == 'S':
				r = &chaosRun{proc: p, deliveries: deliveries, start: at}
				byRun[key] = r
				ev.runs[id] = append(ev.runs[id], r)
			case r == nil: // an outcome without a start
				ev.malformed++
			case kind == 'E':
				r.succeeded = at
			case kind == 'A':
				r.accepted = true
				ev.accepts = append(ev.accepts, at)
			case kind == 'L':
				r.lost = true
			default:
				ev.malformed++
			}
		}
	}
	for _, runs := range ev.runs {
		slices.SortFunc(runs, func(a, b *chaosRun) int { return a.start.Compare(b.start) })
	}
	slices.SortFunc(ev.accepts, time.Time.Compare)
	return ev
}

// within reports whether at is in [from-chaosWindow, to+chaosWindow].
func within(at, from, to time.Time) bool {
	return !at.Before(from.Add(-chaosWindow)) && !at.After(to.Add(chaosWindow))
}
