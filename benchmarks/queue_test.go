// Background jobs side by side: outgrow/queue against hibiken/asynq, on one Redis, with a
// no-op handler, 64-byte payloads and 16 concurrent runs on both sides.
//
// Every sub-benchmark is named lib=outgrow or lib=asynq, so that `benchstat -col /lib` puts
// them side by side. The Redis benchmarks report, per job:
//
//   - rediscmds/job: every command Redis ran, those inside Lua scripts included (INFO
//     commandstats; INFO, HELLO, PING, SELECT and the like left out);
//   - roundtrips/job: the calls the library's client sent, one per command sent alone and one
//     per pipeline, counted by a go-redis hook (harness.RoundTrips);
//   - redis-cpu-us/job: the CPU time the Redis server spent (INFO cpu, user and system);
//   - cpu-ns/job: the CPU time of this process (client side, Redis excluded).
//
// They need Redis (OUTGROW_REDIS_URL, default redis://127.0.0.1:6379/0) and are skipped when
// the variable is unset and no Redis answers there. outgrow keeps its keys under a prefix of
// the benchmark's own; asynq's key names are fixed ("asynq:{<queue>}:..."), so asynq runs on
// database asynqDB of the same server, in a queue named for the benchmark, and the benchmark
// deletes that queue's keys afterwards. Nothing else should use the server during a run:
// command counts, CPU and memory are read server-wide.
package benchmarks

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/benchmarks/internal/harness"
	"github.com/outgrow/outgrow/queue"
)

const (
	queueConcurrency = 16    // runs at once on the worker (outgrow) or server (asynq)
	queuePayloadSize = 64    // bytes per job
	enqueueBatch     = 100   // jobs per EnqueueMany in BenchmarkQueueEnqueue
	fillBatch        = 500   // jobs per EnqueueMany when a benchmark fills a queue up front
	pendingJobs      = 10000 // jobs left pending by BenchmarkQueueRedisBytes
	// asynqDB is the database asynq runs on: its key names cannot be prefixed.
	asynqDB = 9
	// asynqTask is the task type of every asynq job.
	asynqTask = "bench"
)

// jobPayload returns a 64-byte payload carrying i in its first 8 bytes.
func jobPayload(i int) []byte {
	p := make([]byte, queuePayloadSize)
	binary.LittleEndian.PutUint64(p, uint64(i))
	return p
}

func payloadIndex(p []byte) int { return int(binary.LittleEndian.Uint64(p)) }

// ---- Redis set-up ----------------------------------------------------------------------------

// outgrowEnv is a RedisStore under a prefix of its own, on a client with ContextTimeoutEnabled
// (the setting outgrow's README recommends) whose round trips are counted. Its Timeout is 1s:
// with the default (100ms, plus 10µs per job of a batch) an EnqueueMany of 500 timed out now
// and then on the shared test machine, where Redis is descheduled for tens of milliseconds.
// (asynq bounds its calls by go-redis's ReadTimeout only, 3s by default.)
type outgrowEnv struct {
	info   redis.UniversalClient // for INFO and clean-up: no hook, so not counted
	rdb    redis.UniversalClient // the store's client
	prefix string
	rt     *harness.RoundTrips
	store  *queue.RedisStore
	q      *queue.Queue
}

func newOutgrowEnv(b *testing.B) *outgrowEnv {
	b.Helper()
	def, prefix := harness.Redis(b)
	rdb := harness.WithContextTimeouts(b, def)
	rt := harness.CountRoundTrips(rdb)
	st, err := queue.NewRedisStore(rdb, queue.RedisConfig{Prefix: prefix, Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	q, err := queue.New(st, queue.Config{})
	if err != nil {
		b.Fatal(err)
	}
	return &outgrowEnv{info: def, rdb: rdb, prefix: prefix, rt: rt, store: st, q: q}
}

// fill enqueues n jobs of payloads from jobPayload(first...), fillBatch per EnqueueMany.
func (e *outgrowEnv) fill(b *testing.B, first, n int) {
	b.Helper()
	batch := make([]queue.Job, 0, fillBatch)
	for i := range n {
		batch = append(batch, queue.Job{Payload: jobPayload(first + i)})
		if len(batch) == fillBatch || i == n-1 {
			if _, err := e.q.EnqueueMany(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// startWorker runs a Worker with handler on the default queue, concurrency runs at once, until the returned stop is
// called (at the latest when b ends); stop returns once Run has.
func (e *outgrowEnv) startWorker(b *testing.B, concurrency int, handler queue.Handler) (stop func() queue.WorkerStats) {
	b.Helper()
	w, err := queue.NewWorker(e.store, queue.WorkerConfig{Queues: map[string]queue.QueueConfig{
		queue.DefaultQueue: {Handler: handler, Concurrency: concurrency},
	}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- w.Run(ctx) }()
	stop = sync.OnceValue(func() queue.WorkerStats {
		cancel()
		if err := <-ran; err != nil {
			b.Error(err)
		}
		return w.Stats()
	})
	b.Cleanup(func() { stop() })
	return stop
}

// asynqEnv is a client of database asynqDB of the same server, with go-redis's default options
// (as asynq.NewClient would make it) and its round trips counted, and a queue of its own whose
// keys are deleted when b ends.
type asynqEnv struct {
	info   redis.UniversalClient
	rdb    *redis.Client
	queue  string
	rt     *harness.RoundTrips
	client *asynq.Client
}

func newAsynqEnv(b *testing.B) *asynqEnv {
	b.Helper()
	def, prefix := harness.Redis(b)
	opt := *def.(*redis.Client).Options()
	opt.DB = asynqDB
	rdb := redis.NewClient(&opt)
	// A short name of the benchmark's own: asynq stores the queue's name in every task.
	name := "b" + strings.TrimSuffix(strings.TrimPrefix(prefix, "bench:"), ":")[:8]
	b.Cleanup(func() {
		cleanAsynq(rdb, name)
		_ = rdb.Close()
	})
	rt := harness.CountRoundTrips(rdb)
	return &asynqEnv{info: def, rdb: rdb, queue: name, rt: rt, client: asynq.NewClientFromRedisClient(rdb)}
}

// cleanAsynq deletes asynq's keys of queue name: those under its hash tag, and its entry in
// the set of queues. (A server removes its own entries when it shuts down.)
func cleanAsynq(rdb *redis.Client, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	deleteKeys(ctx, rdb, "asynq:{"+name+"}:*")
	_ = rdb.SRem(ctx, "asynq:queues", name).Err()
}

// deleteKeys deletes every key matching pattern, synchronously (DEL, not UNLINK, so that a
// reading of used_memory afterwards does not see them).
func deleteKeys(ctx context.Context, rdb redis.UniversalClient, pattern string) {
	var keys []string
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	for c := range slices.Chunk(keys, 1000) {
		_ = rdb.Del(ctx, c...).Err()
	}
}

// enqueue enqueues one 64-byte job.
func (e *asynqEnv) enqueue(payload []byte) error {
	_, err := e.client.Enqueue(asynq.NewTask(asynqTask, payload), asynq.Queue(e.queue))
	return err
}

// fill enqueues n jobs from queueConcurrency goroutines: asynq has no batch enqueue.
func (e *asynqEnv) fill(b *testing.B, first, n int) {
	b.Helper()
	var next atomic.Int64
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	for range queueConcurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || failed.Load() != nil {
					return
				}
				if err := e.enqueue(jobPayload(first + i)); err != nil {
					failed.Store(&err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
}

// startServer runs an asynq Server over the env's queue with handler, concurrency runs at
// once, until the returned stop
// is called (at the latest when b ends); stop returns once Shutdown has.
func (e *asynqEnv) startServer(b *testing.B, concurrency int, handler asynq.HandlerFunc) (stop func()) {
	b.Helper()
	srv := asynq.NewServerFromRedisClient(e.rdb, asynq.Config{
		Concurrency: concurrency,
		Queues:      map[string]int{e.queue: 1},
		LogLevel:    asynq.ErrorLevel,
	})
	if err := srv.Start(handler); err != nil {
		b.Fatal(err)
	}
	stop = sync.OnceFunc(srv.Shutdown)
	b.Cleanup(stop)
	return stop
}

// ---- Measures ------------------------------------------------------------------------------

// redisMeter reads what the server and the client did between start and report.
type redisMeter struct {
	info  redis.UniversalClient
	rt    *harness.RoundTrips
	cmds  map[string]int64
	trips int64
	rcpu  float64 // Redis CPU seconds
	cpu   time.Duration
}

func startMeter(b *testing.B, info redis.UniversalClient, rt *harness.RoundTrips) *redisMeter {
	b.Helper()
	m := &redisMeter{info: info, rt: rt}
	var err error
	if m.cmds, err = harness.CommandStats(context.Background(), info); err != nil {
		b.Fatal(err)
	}
	m.rcpu = redisCPU(b, info)
	m.trips = rt.Load()
	m.cpu = processCPU()
	return m
}

// perJob is what a redisMeter measured, per job.
type perJob struct{ cmds, trips, rcpuUS, cpuNS float64 }

// read returns the measures since startMeter per job, over jobs.
func (m *redisMeter) read(b *testing.B, jobs int) perJob {
	b.Helper()
	cpu := processCPU() - m.cpu
	trips := m.rt.Load() - m.trips
	rcpu := redisCPU(b, m.info) - m.rcpu
	after, err := harness.CommandStats(context.Background(), m.info)
	if err != nil {
		b.Fatal(err)
	}
	var cmds int64
	for cmd, n := range after {
		if !notWork[cmd] {
			cmds += n - m.cmds[cmd]
		}
	}
	n := float64(max(jobs, 1))
	return perJob{cmds: float64(cmds) / n, trips: float64(trips) / n, rcpuUS: rcpu * 1e6 / n, cpuNS: float64(cpu) / n}
}

// report reports the measures since startMeter per job, over jobs.
func (m *redisMeter) report(b *testing.B, jobs int) { m.read(b, jobs).report(b, "") }

// report reports p, each unit prefixed with prefix. (Call it after the last ResetTimer, which
// forgets the metrics reported before it.)
func (p perJob) report(b *testing.B, prefix string) {
	b.ReportMetric(p.cmds, prefix+"rediscmds/job")
	b.ReportMetric(p.trips, prefix+"roundtrips/job")
	b.ReportMetric(p.rcpuUS, prefix+"redis-cpu-us/job")
	b.ReportMetric(p.cpuNS, prefix+"cpu-ns/job")
}

// redisCPU returns the CPU seconds the Redis server has used (user and system, INFO cpu).
func redisCPU(b *testing.B, rdb redis.UniversalClient) float64 {
	b.Helper()
	return infoFloat(b, rdb, "cpu", "used_cpu_user") + infoFloat(b, rdb, "cpu", "used_cpu_sys")
}

// infoFloat returns field of INFO section.
func infoFloat(b *testing.B, rdb redis.UniversalClient, section, field string) float64 {
	b.Helper()
	info, err := rdb.Info(context.Background(), section).Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			return f
		}
	}
	b.Fatalf("no %s in INFO %s", field, section)
	return 0
}

// countdown closes done when n calls of tick have been made.
type countdown struct {
	n    int64
	seen atomic.Int64
	done chan struct{}
}

func newCountdown(n int) *countdown { return &countdown{n: int64(n), done: make(chan struct{})} }

func (c *countdown) tick() {
	if c.seen.Add(1) == c.n {
		close(c.done)
	}
}

// wait waits for the countdown, failing b after timeout.
func (c *countdown) wait(b *testing.B, timeout time.Duration) {
	b.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		b.Fatalf("%d of %d jobs ran in %v", c.seen.Load(), c.n, timeout)
	}
}

// drainTimeout is how long a drain of n jobs may take before the benchmark fails.
func drainTimeout(n int) time.Duration { return time.Minute + time.Duration(n)*time.Millisecond }

// percentile returns the q-quantile (0 < q ≤ 1) of sorted, by the nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(k, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// ---- 1. Drain --------------------------------------------------------------------------------

// BenchmarkQueueDrain: b.N jobs are enqueued up front (outgrow: EnqueueMany of 500; asynq:
// Enqueue from 16 goroutines, its fastest way), then a worker (outgrow) or server (asynq) with
// conc concurrent runs (16, and 64 to see the batches grow) is started and timed until its handler has run every job: ns/op is per job,
// start-up included, and jobs/s is b.N over that time. The enqueue's own cost is reported with
// the units prefixed "enq-"; the drain's Redis counts run until the worker or server has shut
// down, so that every acknowledgement is in. Use -benchtime 20000x or more: with a time-based
// benchtime the untimed enqueue makes rounds long.
func BenchmarkQueueDrain(b *testing.B) {
	for _, conc := range []int{queueConcurrency, 4 * queueConcurrency} {
		b.Run("conc="+strconv.Itoa(conc)+"/lib=outgrow", func(b *testing.B) {
			e := newOutgrowEnv(b)
			n := b.N
			m := startMeter(b, e.info, e.rt)
			e.fill(b, 0, n)
			enq := m.read(b, n)
			c := newCountdown(n)
			b.ReportAllocs()
			m = startMeter(b, e.info, e.rt)
			b.ResetTimer()
			t0 := time.Now()
			stop := e.startWorker(b, conc, func(context.Context, *queue.Delivery) error { c.tick(); return nil })
			c.wait(b, drainTimeout(n))
			took := time.Since(t0)
			b.StopTimer()
			st := stop()
			m.report(b, n)
			enq.report(b, "enq-")
			b.ReportMetric(float64(n)/took.Seconds(), "jobs/s")
			if st.Succeeded != uint64(n) || st.Failed+st.LeaseLost != 0 {
				b.Errorf("worker stats %+v, want %d succeeded", st, n)
			}
		})

		b.Run("conc="+strconv.Itoa(conc)+"/lib=asynq", func(b *testing.B) {
			e := newAsynqEnv(b)
			n := b.N
			m := startMeter(b, e.info, e.rt)
			e.fill(b, 0, n)
			enq := m.read(b, n)
			c := newCountdown(n)
			b.ReportAllocs()
			m = startMeter(b, e.info, e.rt)
			b.ResetTimer()
			t0 := time.Now()
			stop := e.startServer(b, conc, func(context.Context, *asynq.Task) error { c.tick(); return nil })
			c.wait(b, drainTimeout(n))
			took := time.Since(t0)
			b.StopTimer()
			stop()
			m.report(b, n)
			enq.report(b, "enq-")
			b.ReportMetric(float64(n)/took.Seconds(), "jobs/s")
		})
	}
}

// ---- 2. Enqueue ------------------------------------------------------------------------------

// BenchmarkQueueEnqueue: enqueuing one 64-byte job, no worker running (the jobs stay pending
// until the round ends).
//
//   - op=serial: one at a time from one goroutine, the latency a request pays: p50-us and p99-us,
//     and p50-rtts, the p50 over the p50 of a PING on the same client (a raw round trip).
//   - op=parallel: from 16 goroutines (8 per GOMAXPROCS at -cpu 2): ns/op is the inverse of
//     the throughput, p50-us and p99-us the latency of one call.
//   - op=batch100: outgrow's EnqueueMany of 100 jobs from 16 goroutines; ns/op is per job.
//     asynq has no batch enqueue in v0.26.0, so its row is op=parallel again (one Enqueue per
//     job), its fastest way.
func BenchmarkQueueEnqueue(b *testing.B) {
	type lib struct {
		name  string
		setup func(b *testing.B) (enqueue func(payload []byte) error, rtt func() error, info redis.UniversalClient, rt *harness.RoundTrips)
	}
	outgrowSetup := func(b *testing.B) (*outgrowEnv, func([]byte) error, func() error) {
		e := newOutgrowEnv(b)
		ctx := context.Background()
		enq := func(p []byte) error { _, err := e.q.Enqueue(ctx, queue.Job{Payload: p}); return err }
		return e, enq, func() error { return e.rdb.Ping(ctx).Err() }
	}
	libs := []lib{
		{
			name: "outgrow",
			setup: func(b *testing.B) (func([]byte) error, func() error, redis.UniversalClient, *harness.RoundTrips) {
				e, enq, ping := outgrowSetup(b)
				return enq, ping, e.info, e.rt
			},
		},
		{
			name: "asynq",
			setup: func(b *testing.B) (func([]byte) error, func() error, redis.UniversalClient, *harness.RoundTrips) {
				e := newAsynqEnv(b)
				return e.enqueue, func() error { return e.rdb.Ping(context.Background()).Err() }, e.info, e.rt
			},
		},
	}

	for _, l := range libs {
		b.Run("op=serial/lib="+l.name, func(b *testing.B) {
			enq, ping, info, rt := l.setup(b)
			payload := jobPayload(0)
			rtt := make([]time.Duration, 0, 1000)
			for range 1000 {
				t := time.Now()
				if err := ping(); err != nil {
					b.Fatal(err)
				}
				rtt = append(rtt, time.Since(t))
			}
			slices.Sort(rtt)
			if err := enq(payload); err != nil { // scripts loaded, queue known
				b.Fatal(err)
			}
			lat := make([]time.Duration, 0, b.N)
			m := startMeter(b, info, rt)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				t := time.Now()
				if err := enq(payload); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t))
			}
			b.StopTimer()
			m.report(b, b.N)
			slices.Sort(lat)
			b.ReportMetric(us(percentile(lat, 0.5)), "p50-us")
			b.ReportMetric(us(percentile(lat, 0.99)), "p99-us")
			b.ReportMetric(float64(percentile(lat, 0.5))/float64(percentile(rtt, 0.5)), "p50-rtts")
		})
	}

	for _, l := range libs {
		b.Run("op=parallel/lib="+l.name, func(b *testing.B) {
			enq, _, info, rt := l.setup(b)
			benchParallelEnqueue(b, enq, info, rt)
		})
	}

	b.Run("op=batch100/lib=outgrow", func(b *testing.B) {
		e, _, _ := outgrowSetup(b)
		ctx := context.Background()
		if _, err := e.q.Enqueue(ctx, queue.Job{Payload: jobPayload(0)}); err != nil {
			b.Fatal(err)
		}
		m := startMeter(b, e.info, e.rt)
		var failed atomic.Pointer[error]
		b.SetParallelism(queueConcurrency / 2)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			batch := make([]queue.Job, 0, enqueueBatch)
			payload := jobPayload(0)
			flush := func() {
				if len(batch) == 0 {
					return
				}
				if _, err := e.q.EnqueueMany(ctx, batch); err != nil {
					failed.Store(&err)
				}
				batch = batch[:0]
			}
			for pb.Next() {
				if batch = append(batch, queue.Job{Payload: payload}); len(batch) == enqueueBatch {
					flush()
				}
			}
			flush()
		})
		b.StopTimer()
		if err := failed.Load(); err != nil {
			b.Fatal(*err)
		}
		m.report(b, b.N)
	})
	b.Run("op=batch100/lib=asynq", func(b *testing.B) {
		enq, _, info, rt := libs[1].setup(b)
		benchParallelEnqueue(b, enq, info, rt)
	})
}

// benchParallelEnqueue enqueues b.N jobs, one per call, from 16 goroutines.
func benchParallelEnqueue(b *testing.B, enq func([]byte) error, info redis.UniversalClient, rt *harness.RoundTrips) {
	payload := jobPayload(0)
	if err := enq(payload); err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var lat []time.Duration
	var failed atomic.Pointer[error]
	m := startMeter(b, info, rt)
	b.SetParallelism(queueConcurrency / 2)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			t := time.Now()
			if err := enq(payload); err != nil {
				failed.Store(&err)
				continue
			}
			mine = append(mine, time.Since(t))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	m.report(b, b.N)
	slices.Sort(lat)
	b.ReportMetric(us(percentile(lat, 0.5)), "p50-us")
	b.ReportMetric(us(percentile(lat, 0.99)), "p99-us")
}

// ---- 3. Idle pickup --------------------------------------------------------------------------

// BenchmarkQueuePickup: how long a job waits for an idle worker. The worker (server) runs with
// its queue empty; each op enqueues one job, then sleeps 5 to 20 ms (uniform), whether or not
// the job has started. Once every job has started, p50-ms, p99-ms and max-ms report the time
// from the start of each Enqueue call to the start of its handler. ns/op is left out (it is
// the sleep). asynq polls an empty queue (every 0.5-1.5 s by default, its TaskCheckInterval of
// 1 s); outgrow's idle worker blocks on BLPOP, woken by the enqueue. Use -benchtime 200x.
func BenchmarkQueuePickup(b *testing.B) {
	b.Run("lib=outgrow", func(b *testing.B) {
		e := newOutgrowEnv(b)
		p := newPickup(b.N)
		e.startWorker(b, queueConcurrency, func(_ context.Context, d *queue.Delivery) error { p.started(d.Payload); return nil })
		ctx := context.Background()
		p.run(b, func(payload []byte) error {
			_, err := e.q.Enqueue(ctx, queue.Job{Payload: payload})
			return err
		})
	})
	b.Run("lib=asynq", func(b *testing.B) {
		e := newAsynqEnv(b)
		p := newPickup(b.N)
		e.startServer(b, queueConcurrency, func(_ context.Context, t *asynq.Task) error { p.started(t.Payload()); return nil })
		p.run(b, e.enqueue)
	})
}

// pickup records when each job was enqueued and when its handler started, as durations since
// base (monotonic).
type pickup struct {
	base  time.Time
	sent  []time.Duration
	start []atomic.Int64 // 0 until the job's first run starts
	c     *countdown
}

func newPickup(n int) *pickup {
	return &pickup{base: time.Now(), sent: make([]time.Duration, n), start: make([]atomic.Int64, n), c: newCountdown(n)}
}

// started records the start of the job carrying payload; a second run of a job (at least
// once) does not count.
func (p *pickup) started(payload []byte) {
	now := int64(time.Since(p.base))
	if i := payloadIndex(payload); i < len(p.start) && p.start[i].CompareAndSwap(0, now) {
		p.c.tick()
	}
}

func (p *pickup) run(b *testing.B, enqueue func([]byte) error) {
	time.Sleep(300 * time.Millisecond) // the worker has found its queue empty and waits
	rng := rand.New(rand.NewPCG(1, 2))
	b.ResetTimer()
	for i := range b.N {
		payload := jobPayload(i)
		p.sent[i] = time.Since(p.base)
		if err := enqueue(payload); err != nil {
			b.Fatal(err)
		}
		time.Sleep(5*time.Millisecond + time.Duration(rng.Int64N(int64(15*time.Millisecond)+1)))
	}
	p.c.wait(b, 10*time.Second)
	b.StopTimer()
	lat := make([]time.Duration, b.N)
	for i := range lat {
		lat[i] = time.Duration(p.start[i].Load()) - p.sent[i]
	}
	slices.Sort(lat)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(percentile(lat, 0.5)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 0.99)), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
}

// ---- 4. Redis bytes per pending job -------------------------------------------------------

// BenchmarkQueueRedisBytes: Redis memory per pending job. Each op enqueues 10,000 jobs of 64
// bytes with no worker (outgrow: EnqueueMany of 500; asynq: Enqueue from 16 goroutines) and
// reports B/job, the growth of INFO used_memory over the jobs, and usage-B/job, the sum of
// MEMORY USAGE (SAMPLES 0) of the keys they made; then deletes them. ns/op is the time to
// enqueue the 10,000. Key names are of similar length: outgrow's job hash
// "bench:<12 hex>:{default}:j:<26-char ID>" (57 bytes), asynq's "asynq:{b<8 hex>}:t:<36-char
// UUID>" (56 bytes). Use -benchtime 1x.
func BenchmarkQueueRedisBytes(b *testing.B) {
	b.Run("lib=outgrow", func(b *testing.B) {
		e := newOutgrowEnv(b)
		pendingBytes(b, e.info, e.info, e.prefix+"*", func() { e.fill(b, 0, pendingJobs) })
	})
	b.Run("lib=asynq", func(b *testing.B) {
		e := newAsynqEnv(b)
		pendingBytes(b, e.info, e.rdb, "asynq:{"+e.queue+"}:*", func() { e.fill(b, 0, pendingJobs) })
	})
}

// pendingBytes measures fill, which enqueues pendingJobs jobs whose keys match pattern in the
// database of keys; info reads the server's INFO.
func pendingBytes(b *testing.B, info, keys redis.UniversalClient, pattern string, fill func()) {
	ctx := context.Background()
	var used, usage float64
	for b.Loop() {
		b.StopTimer()
		deleteKeys(ctx, keys, pattern)
		before := infoFloat(b, info, "memory", "used_memory")
		b.StartTimer()
		fill()
		b.StopTimer()
		used += infoFloat(b, info, "memory", "used_memory") - before
		usage += float64(memoryUsage(b, keys, pattern))
		deleteKeys(ctx, keys, pattern)
		b.StartTimer()
	}
	b.ReportMetric(used/float64(b.N)/pendingJobs, "B/job")
	b.ReportMetric(usage/float64(b.N)/pendingJobs, "usage-B/job")
}

// memoryUsage sums MEMORY USAGE (every element counted) over the keys matching pattern.
func memoryUsage(b *testing.B, rdb redis.UniversalClient, pattern string) int64 {
	ctx := context.Background()
	var keys []string
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		b.Fatal(err)
	}
	var total int64
	for c := range slices.Chunk(keys, 1000) {
		cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range c {
				p.MemoryUsage(ctx, k, 0)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		for _, cmd := range cmds {
			total += cmd.(*redis.IntCmd).Val()
		}
	}
	return total
}

// ---- 5. Memory backend -----------------------------------------------------------------------

// BenchmarkQueueMemoryBackend: outgrow's MemoryStore, enqueue and run together: the benchmark
// goroutine enqueues b.N jobs in EnqueueMany calls of 100 while a Worker with 16 concurrent
// runs drains them; ns/op is per job, until the last handler has run. There is no in-memory
// asynq. Run at -cpu 1,2.
func BenchmarkQueueMemoryBackend(b *testing.B) {
	b.Run("lib=outgrow", func(b *testing.B) {
		st, err := queue.NewMemoryStore(queue.MemoryConfig{})
		if err != nil {
			b.Fatal(err)
		}
		q, err := queue.New(st, queue.Config{})
		if err != nil {
			b.Fatal(err)
		}
		c := newCountdown(b.N)
		w, err := queue.NewWorker(st, queue.WorkerConfig{Queues: map[string]queue.QueueConfig{
			queue.DefaultQueue: {Concurrency: queueConcurrency, Handler: func(context.Context, *queue.Delivery) error { c.tick(); return nil }},
		}})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan error, 1)
		go func() { ran <- w.Run(ctx) }()
		defer func() { cancel(); <-ran }()
		payload := jobPayload(0)
		batch := make([]queue.Job, enqueueBatch)
		b.ReportAllocs()
		b.ResetTimer()
		t0 := time.Now()
		for i := 0; i < b.N; i += len(batch) {
			n := min(len(batch), b.N-i)
			for k := range n {
				batch[k] = queue.Job{Payload: payload}
			}
			if _, err := q.EnqueueMany(ctx, batch[:n]); err != nil {
				b.Fatal(err)
			}
		}
		c.wait(b, drainTimeout(b.N))
		took := time.Since(t0)
		b.StopTimer()
		b.ReportMetric(float64(b.N)/took.Seconds(), "jobs/s")
	})
}
