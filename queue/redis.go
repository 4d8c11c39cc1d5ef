package queue

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/internal/redisclient"
	"github.com/outgrow/outgrow/internal/rediskey"
)

// The scripts, each prefixed with the helpers of lib.lua (key layout in its header).
var (
	//go:embed lib.lua
	libLua string
	//go:embed enqueue.lua
	enqueueLua string
	//go:embed claim.lua
	claimLua string
	//go:embed settle.lua
	settleLua string
	//go:embed peek.lua
	peekLua string
	//go:embed stats.lua
	statsLua string
	//go:embed dead.lua
	deadLua string
	//go:embed redrive.lua
	redriveLua string
	//go:embed pause.lua
	pauseLua string

	enqueueScript = redisclient.NewScript(libLua + enqueueLua)
	claimScript   = redisclient.NewScript(libLua + claimLua)
	settleScript  = redisclient.NewScript(libLua + settleLua)
	peekScript    = redisclient.NewScript(libLua + peekLua)
	statsScript   = redisclient.NewScript(libLua + statsLua)
	deadScript    = redisclient.NewScript(libLua + deadLua)
	redriveScript = redisclient.NewScript(libLua + redriveLua)
	pauseScript   = redisclient.NewScript(libLua + pauseLua)
)

// Defaults of RedisConfig.
const (
	DefaultRedisPrefix  = "queue:"
	DefaultRedisTimeout = 100 * time.Millisecond
)

const (
	// perItem is the time a batch call gets on top of Timeout for each job or op it carries:
	// an EnqueueMany of 10,000 jobs runs for milliseconds inside Redis.
	perItem = 10 * time.Microsecond
	// maxBlock bounds one BLPOP of an idle worker: with ContextTimeoutEnabled go-redis does not
	// watch cancellations, so a cancelled wait returns within it.
	maxBlock = time.Second
	// claimUpkeep is the work a claim may do before it pops: up to 1000 leases taken back
	// and 1000 scheduled jobs promoted (see claim.lua), counted in jobs for its timeout.
	claimUpkeep = 2000
	// blockSlack is how late Redis may end a BLPOP, which it times out in its cron (hz).
	blockSlack = 100 * time.Millisecond
	// redriveChunk is how many dead jobs one redrive call takes (see redrive.lua).
	redriveChunk = 1000
)

// RedisConfig configures a [RedisStore]. The zero value is ready to use.
//
// Create the client with ContextTimeoutEnabled: true (redis.Options, redis.ClusterOptions,
// redis.FailoverOptions): go-redis then stops each call at its deadline. Without it, each call
// runs on a goroutine of its own so that the store can stop waiting at the deadline.
type RedisConfig struct {
	// Prefix starts every key. It must not contain '{' or '}'. Default: "queue:".
	Prefix string
	// Timeout bounds one call to Redis; batches (EnqueueMany, settlements) get 10µs more per
	// job. Scripts do more than one key's work (a claim takes back expired leases and promotes
	// up to 1000 scheduled jobs before it pops), and a timed-out enqueue may have stored its
	// jobs, so the default is twice the 50ms of the request-path stores. Default: 100ms.
	Timeout time.Duration
	// FailFastAfter is how many consecutive failed calls make the store fail fast: it then
	// answers ErrUnavailable at once, without calling Redis, for RetryInterval, one call probes
	// Redis, and the first success ends the outage. Default: 3.
	FailFastAfter int
	// RetryInterval is how long the store fails fast before it probes Redis again.
	// Default: 500ms.
	RetryInterval time.Duration
	// DeadRetention is how long a dead job is kept, for Dead and Redrive, after it died; then
	// Redis drops it (its hash expires; the dead set forgets it at the queue's next call).
	// Default: 168h (7 days).
	DeadRetention time.Duration
	// Logger receives the store's outage transitions. Default: slog.Default().
	Logger *slog.Logger
}

// RedisStore is a [Store] in Redis, shared by every instance of a service. It works on
// standalone Redis, Sentinel and Cluster through any [redis.UniversalClient], and never closes
// the client. It has no goroutines of its own, hence no Close.
//
// Each queue lives under one hash tag, so a queue is one Cluster slot and every script touches
// keys of that slot only; different queues spread over the cluster. A claim, a batch of
// settlements and an EnqueueMany of one queue are one script call each (one round trip); a
// batch that spans queues makes one call per queue, pipelined. The first enqueue of a store on
// a queue takes one more, to add the queue to the list of Queue.Queues. Scripts read the time from Redis
// (TIME), so leases, delays, retries and dead-job retention run on one clock whatever the
// instances' clocks say: a delayed job's delay is sent as a duration, and a job due at once is
// due at once even from an instance whose clock runs ahead (the instance's RunAt only orders it
// among due jobs, and counts in QueueStats.Lag). Work per call is bounded (no O(n) per job):
// in-flight jobs are a sorted set, not a list.
//
// Memory: a pending job costs one hash (its payload and a few short fields) and one sorted-set
// entry (benchmarks/README.md has the bytes per job, measured by TestRedisMemoryPerJob). Set
// maxmemory-policy to noeviction: an evicted job is lost.
//
// Waiting: an idle worker blocks on BLPOP of the queue's wake-up list (no polling), at most 1s
// per command (so a cancelled wait ends within it), and for no longer than until the queue's
// next scheduled job or lease deadline. A blocked command holds a pooled connection: give the
// client a PoolSize of at least the number of queues waited on at once plus the claims and
// settlements in flight (go-redis's default, 10 per CPU, is plenty for one worker pool, which
// waits with one connection per queue).
//
// Scripts are never retried after they may have run. Each call is bounded by Timeout; after
// FailFastAfter consecutive failures the store fails fast for RetryInterval. Errors wrap
// ErrUnavailable; an enqueue that timed out may have stored its jobs (enqueue them again with
// their IDs: the copies are reported as duplicates).
//
// The zero value is not usable; create a RedisStore with [NewRedisStore]. It is safe for
// concurrent use.
type RedisStore struct {
	rc        *redisclient.Client
	prefix    string
	retention string // DeadRetention in ms, as the scripts take it
	block     time.Duration
	// offset moves the store's clock: ms added to Redis TIME (and to the instance's, where it
	// tells a delay), for tests on servers whose time cannot be faked. Always 0 otherwise.
	// Every script takes it as its last ARGV.
	offset atomic.Int64
	known  sync.Map // queue names added to the Pqueues set by this store
}

// now is the instance's time, moved by the test's offset.
func (s *RedisStore) now() time.Time {
	return time.Now().Add(time.Duration(s.offset.Load()) * time.Millisecond)
}

// clock returns the last ARGV of every script: the offset.
func (s *RedisStore) clock() int64 { return s.offset.Load() }

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a RedisStore over rdb. Its errors wrap ErrInvalidConfig and name the
// field at fault.
func NewRedisStore(rdb redis.UniversalClient, cfg RedisConfig) (*RedisStore, error) {
	if cfg.DeadRetention < 0 {
		return nil, fmt.Errorf("%w: RedisConfig.DeadRetention %v is negative", ErrInvalidConfig, cfg.DeadRetention)
	}
	if cfg.DeadRetention == 0 {
		cfg.DeadRetention = DefaultDeadRetention
	}
	rc, err := redisclient.New(rdb, redisclient.Config{
		Component: "queue", Prefix: cfg.Prefix, DefaultPrefix: DefaultRedisPrefix,
		Timeout: cfg.Timeout, DefaultTimeout: DefaultRedisTimeout,
		RetryInterval: cfg.RetryInterval, FailFastAfter: cfg.FailFastAfter,
		Unavailable: ErrUnavailable, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return &RedisStore{
		rc: rc, prefix: rc.Prefix(),
		retention: strconv.FormatInt(max(cfg.DeadRetention.Milliseconds(), 1), 10),
		block:     blockBound(rdb),
	}, nil
}

// blockBound returns how long one BLPOP may block on rdb: go-redis stops reading a reply at
// the client's ReadTimeout (with or without ContextTimeoutEnabled), so a longer block would
// end in an i/o error instead of an empty reply.
func blockBound(rdb redis.UniversalClient) time.Duration {
	var rt time.Duration
	switch r := rdb.(type) {
	case *redis.Client:
		rt = r.Options().ReadTimeout
	case *redis.ClusterClient:
		rt = r.Options().ReadTimeout
	case *redis.Ring:
		rt = r.Options().ReadTimeout
	}
	switch {
	case rt <= 0 || rt >= maxBlock+250*time.Millisecond:
		return maxBlock
	case rt > 500*time.Millisecond:
		return rt - 250*time.Millisecond
	default:
		return rt / 2
	}
}

// RedisStats is a snapshot of a [RedisStore]'s counters.
type RedisStats struct {
	Calls     uint64 // round trips sent to Redis
	Failures  uint64 // round trips that failed: error or timeout
	FastFails uint64 // calls refused without reaching Redis during an outage
	Down      bool   // Redis is considered unavailable right now
}

// Stats returns a snapshot of the counters.
func (s *RedisStore) Stats() RedisStats {
	st := s.rc.Stats()
	return RedisStats{Calls: st.Calls, Failures: st.Failures, FastFails: st.FastFails, Down: st.Down}
}

func (s *RedisStore) backend() backend { return s }

// key returns the key of queue with suffix, under the queue's hash tag.
func (s *RedisStore) key(queue, suffix string) string { return rediskey.Key(s.prefix, queue, suffix) }

// batchTimeout is the bound of a call carrying n jobs or ops.
func (s *RedisStore) batchTimeout(n int) time.Duration {
	return s.rc.Timeout() + time.Duration(n)*perItem
}

// groups splits n items into runs of one queue each, in order of first appearance; one queue
// (the usual case) makes one group without a map.
func groups(n int, queueOf func(int) string) [][]int {
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	q0 := queueOf(0)
	for i := 1; i < n; i++ {
		if queueOf(i) != q0 {
			goto split
		}
	}
	return [][]int{all}
split:
	var out [][]int
	at := map[string]int{}
	for i := range n {
		g, ok := at[queueOf(i)]
		if !ok {
			g = len(out)
			at[queueOf(i)] = g
			out = append(out, nil)
		}
		out[g] = append(out[g], i)
	}
	return out
}

// ms returns d in whole milliseconds, for a script.
func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

func (s *RedisStore) enqueue(ctx context.Context, jobs []Job) ([]string, error) {
	if len(jobs) == 0 {
		return nil, nil
	}
	now := s.now() // only to tell a delayed job's delay: the scripts count it on Redis's clock
	gs := groups(len(jobs), func(i int) string { return jobs[i].Queue })
	calls := make([]*redisclient.ScriptCall, len(gs))
	for c, g := range gs {
		q := jobs[g[0]].Queue
		args := make([]any, 0, 8+len(g)*9)
		args = append(args, 5+2*len(g), s.key(q, ":due"), s.key(q, ":sched"), s.key(q, ":seq"), s.key(q, ":wake"), s.key(q, ":dead"))
		for _, i := range g {
			args = append(args, s.key(q, ":j:"+jobs[i].ID), s.key(q, ":u:"+jobs[i].UniqueKey))
		}
		args = append(args, s.retention)
		for _, i := range g {
			j := &jobs[i]
			runAt, delay := j.RunAt, j.Delay
			if runAt.IsZero() {
				runAt = now.Add(delay)
			} else {
				delay = j.RunAt.Sub(now)
			}
			var uniqueFor time.Duration
			if j.UniqueKey != "" {
				uniqueFor = j.UniqueFor
			}
			args = append(args, j.ID, j.Payload, j.Priority, runAt.UnixMilli(), ms(max(delay, 0)), j.MaxAttempts, ms(uniqueFor))
		}
		calls[c] = &redisclient.ScriptCall{Args: append(args, s.clock())}
	}
	if err := s.rc.RunFor(ctx, s.batchTimeout(len(jobs)), enqueueScript, calls); err != nil {
		return nil, err
	}
	held := make([]string, len(jobs))
	for c, g := range gs {
		v, err := calls[c].Cmd.StringSlice()
		if err != nil || len(v) != len(g) {
			return nil, badReply("enqueue", err)
		}
		for k, i := range g {
			held[i] = v[k]
		}
	}
	s.register(ctx, jobs, gs)
	return held, nil
}

// register adds the queues of gs to the set that Queues lists, the first time this store
// enqueues on each: one more round trip, once per queue and process. A failure is retried at
// the next enqueue; the jobs are stored either way.
func (s *RedisStore) register(ctx context.Context, jobs []Job, gs [][]int) {
	var names []any
	for _, g := range gs {
		if q := jobs[g[0]].Queue; !s.isKnown(q) {
			names = append(names, q)
		}
	}
	if len(names) == 0 {
		return
	}
	err := s.rc.Do(ctx, func(ctx context.Context, rdb redis.UniversalClient) error {
		return rdb.SAdd(ctx, s.prefix+"queues", names...).Err()
	})
	if err == nil {
		for _, q := range names {
			s.known.Store(q, struct{}{})
		}
	}
}

func (s *RedisStore) isKnown(queue string) bool {
	_, ok := s.known.Load(queue)
	return ok
}

func (s *RedisStore) queues(ctx context.Context) ([]string, error) {
	names, err := redisclient.Call(ctx, s.rc, func(ctx context.Context, rdb redis.UniversalClient) ([]string, error) {
		return rdb.SMembers(ctx, s.prefix+"queues").Result()
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

func (s *RedisStore) pause(ctx context.Context, queue string, paused bool) error {
	flag := 0
	if paused {
		flag = 1
	}
	return s.rc.Run(ctx, pauseScript, []*redisclient.ScriptCall{{Args: []any{
		2, s.key(queue, ":paused"), s.key(queue, ":wake"), flag, s.clock(),
	}}})
}

// runGroups runs calls, one per group of the n items of a batch (gs), and returns for each
// item whether its script answered 1 for it.
func (s *RedisStore) runGroups(ctx context.Context, script *redisclient.Script, name string, n int, gs [][]int, calls []*redisclient.ScriptCall) ([]bool, error) {
	if err := s.rc.RunFor(ctx, s.batchTimeout(n), script, calls); err != nil {
		return nil, err
	}
	out := make([]bool, n)
	for c, g := range gs {
		v, err := calls[c].Cmd.Int64Slice()
		if err != nil || len(v) != len(g) {
			return nil, badReply(name, err)
		}
		for k, i := range g {
			out[i] = v[k] == 1
		}
	}
	return out, nil
}

// badReply reports a script reply that the store cannot read: never expected, but not a
// panic either.
func badReply(script string, err error) error {
	if err == nil {
		err = errors.New("wrong length")
	}
	return fmt.Errorf("%w: unexpected reply of the %s script: %w", ErrUnavailable, script, err)
}

func (s *RedisStore) claim(ctx context.Context, queue string, n int, lease time.Duration, maxInterrupted int) ([]claimed, error) {
	got, _, err := s.settleClaim(ctx, queue, nil, n, lease, maxInterrupted)
	return got, err
}

func (s *RedisStore) settleClaim(ctx context.Context, queue string, ops []op, n int, lease time.Duration, maxInterrupted int) ([]claimed, []bool, error) {
	args := make([]any, 0, 14+len(ops)*7)
	args = append(args, 6+len(ops), s.key(queue, ":due"), s.key(queue, ":sched"), s.key(queue, ":run"), s.key(queue, ":dead"),
		s.key(queue, ":wake"), s.key(queue, ":paused"))
	for i := range ops {
		args = append(args, s.key(queue, ":j:"+ops[i].id))
	}
	args = append(args, s.key(queue, ":j:"), max(n, 0), max(lease.Milliseconds(), 1), max(maxInterrupted, 0), s.retention)
	args = appendOps(args, ops)
	call := &redisclient.ScriptCall{Args: append(args, s.clock())}
	if err := s.rc.RunFor(ctx, s.batchTimeout(n+len(ops)+claimUpkeep), claimScript, []*redisclient.ScriptCall{call}); err != nil {
		return nil, nil, err
	}
	v, err := call.Cmd.Slice()
	if err != nil || len(v) < 2 || num(v[1]) != int64(len(ops)) || (len(v)-2-len(ops))%9 != 0 {
		return nil, nil, badReply("claim", err)
	}
	deadline := time.UnixMilli(num(v[0]))
	var ok []bool
	if len(ops) > 0 {
		ok = make([]bool, len(ops))
		for i := range ops {
			ok[i] = num(v[2+i]) == 1
		}
	}
	v = v[2+len(ops):]
	out := make([]claimed, 0, len(v)/9)
	for f := v; len(f) >= 9; f = f[9:] {
		out = append(out, claimed{
			Delivery: Delivery{
				ID: str(f[0]), Queue: queue, Payload: []byte(str(f[1])), Priority: int(numStr(f[2])),
				Attempt: int(num(f[3])) + 1, MaxAttempts: int(num(f[4])), Deliveries: int(num(f[5])),
				EnqueuedAt: time.UnixMilli(num(f[6])), RunAt: time.UnixMilli(num(f[7])),
			},
			token:    num(f[8]),
			deadline: deadline,
		})
	}
	return out, ok, nil
}

// appendOps appends the 6 ARGV of each op, as settle.lua and claim.lua read them.
func appendOps(args []any, ops []op) []any {
	for i := range ops {
		o := &ops[i]
		args = append(args, int(o.kind), o.id, o.token, ms(o.delay), max(o.lease.Milliseconds(), 1), o.err)
	}
	return args
}

// num and str read the fields of a script's reply (integers and bulk strings).
func num(v any) int64 {
	n, _ := v.(int64)
	return n
}

// numStr reads an integer that a script returns as a decimal string (one that a Lua number
// would round).
func numStr(v any) int64 {
	n, _ := strconv.ParseInt(str(v), 10, 64)
	return n
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func (s *RedisStore) settle(ctx context.Context, ops []op) ([]bool, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	gs := groups(len(ops), func(i int) string { return ops[i].queue })
	calls := make([]*redisclient.ScriptCall, len(gs))
	for c, g := range gs {
		q := ops[g[0]].queue
		args := make([]any, 0, 7+len(g)*7)
		args = append(args, 5+len(g), s.key(q, ":due"), s.key(q, ":sched"), s.key(q, ":run"), s.key(q, ":dead"), s.key(q, ":wake"))
		for _, i := range g {
			args = append(args, s.key(q, ":j:"+ops[i].id))
		}
		args = append(args, s.retention)
		for _, i := range g {
			args = appendOps(args, ops[i:i+1])
		}
		calls[c] = &redisclient.ScriptCall{Args: append(args, s.clock())}
	}
	return s.runGroups(ctx, settleScript, "settle", len(ops), gs, calls)
}

func (s *RedisStore) wait(ctx context.Context, queue string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	next, err := s.peek(ctx, queue)
	switch {
	case err != nil || next == 0:
		return err
	case next > 0:
		// A scheduled job or a lease deadline comes first: be back for it.
		deadline = earlier(deadline, next)
	}
	woken := false
	wake := s.key(queue, ":wake")
	for {
		if woken {
			// A token tells that a job may be due or that the first scheduled one changed
			// (another instance enqueued or released one): ask again, then wait for that.
			if next, err := s.peek(ctx, queue); err != nil || next == 0 {
				return err
			} else if next > 0 {
				deadline = earlier(deadline, next)
			}
		}
		left := time.Until(deadline)
		if left <= 0 {
			return ctx.Err()
		}
		if left <= 2*blockSlack {
			// Redis ends blocks late by up to 1/hz (100ms at the default hz 10): the last
			// stretch is a local timer, which a wake-up cannot cut short but is on time.
			sleep(ctx, left)
			return ctx.Err()
		}
		block := min(left-blockSlack, s.block)
		woken, err = redisclient.CallFor(ctx, s.rc, block+s.rc.Timeout(), func(ctx context.Context, rdb redis.UniversalClient) (bool, error) {
			// Do, not BLPop: BLPop rounds its timeout to whole seconds. The timeout in
			// seconds with decimals needs Redis 6.
			err := rdb.Do(ctx, "blpop", wake, strconv.FormatFloat(max(block.Seconds(), 0.001), 'f', 3, 64)).Err()
			return err == nil, err
		})
		if err != nil && !errors.Is(err, redis.Nil) { // redis.Nil: the block timed out
			return err
		}
	}
}

// peek returns how many ms from now a job of queue may be due: 0 when one is, -1 when none is
// waiting or running.
func (s *RedisStore) peek(ctx context.Context, queue string) (int64, error) {
	call := &redisclient.ScriptCall{Args: []any{4, s.key(queue, ":due"), s.key(queue, ":sched"), s.key(queue, ":run"), s.key(queue, ":paused"), s.clock()}}
	if err := s.rc.Run(ctx, peekScript, []*redisclient.ScriptCall{call}); err != nil {
		return 0, err
	}
	next, err := call.Cmd.Int64()
	if err != nil {
		return 0, badReply("peek", err)
	}
	return next, nil
}

// earlier returns the earlier of deadline and ms from now.
func earlier(deadline time.Time, ms int64) time.Time {
	if d := time.Now().Add(time.Duration(ms) * time.Millisecond); d.Before(deadline) {
		return d
	}
	return deadline
}

func (s *RedisStore) stats(ctx context.Context, queue string) (QueueStats, error) {
	call := &redisclient.ScriptCall{Args: []any{
		5, s.key(queue, ":due"), s.key(queue, ":sched"), s.key(queue, ":run"), s.key(queue, ":dead"), s.key(queue, ":paused"),
		s.retention, s.clock(),
	}}
	if err := s.rc.Run(ctx, statsScript, []*redisclient.ScriptCall{call}); err != nil {
		return QueueStats{}, err
	}
	v, err := call.Cmd.Int64Slice()
	if err != nil || len(v) != 6 {
		return QueueStats{}, badReply("stats", err)
	}
	return QueueStats{Due: int(v[0]), Scheduled: int(v[1]), Running: int(v[2]), Dead: int(v[3]),
		Lag: time.Duration(v[4]) * time.Millisecond, Paused: v[5] == 1}, nil
}

func (s *RedisStore) dead(ctx context.Context, queue string, limit int) ([]DeadJob, error) {
	if limit <= 0 {
		return nil, nil
	}
	call := &redisclient.ScriptCall{Args: []any{1, s.key(queue, ":dead"), s.key(queue, ":j:"), limit, s.retention, s.clock()}}
	if err := s.rc.RunFor(ctx, s.batchTimeout(limit), deadScript, []*redisclient.ScriptCall{call}); err != nil {
		return nil, err
	}
	v, err := call.Cmd.Slice()
	if err != nil || len(v)%10 != 0 {
		return nil, badReply("dead", err)
	}
	out := make([]DeadJob, 0, len(v)/10)
	for f := v; len(f) >= 10; f = f[10:] {
		out = append(out, DeadJob{
			Delivery: Delivery{
				ID: str(f[0]), Queue: queue, Payload: []byte(str(f[1])), Priority: int(numStr(f[2])),
				Attempt: int(num(f[3])), MaxAttempts: int(num(f[4])), Deliveries: int(num(f[5])),
				EnqueuedAt: time.UnixMilli(num(f[6])), RunAt: time.UnixMilli(num(f[7])),
			},
			LastError: str(f[8]),
			DiedAt:    time.UnixMilli(num(f[9])),
		})
	}
	return out, nil
}

func (s *RedisStore) redrive(ctx context.Context, queue string, ids []string) (int, error) {
	total := 0
	for all := ids == nil; all || len(ids) > 0; {
		args := []any{3, s.key(queue, ":due"), s.key(queue, ":dead"), s.key(queue, ":wake")}
		var chunk []string
		if !all {
			chunk, ids = ids[:min(len(ids), redriveChunk)], ids[min(len(ids), redriveChunk):]
			args[0] = 3 + len(chunk)
			for _, id := range chunk {
				args = append(args, s.key(queue, ":j:"+id))
			}
		}
		args = append(args, s.retention, s.key(queue, ":j:"))
		for _, id := range chunk {
			args = append(args, id)
		}
		call := &redisclient.ScriptCall{Args: append(args, s.clock())}
		if err := s.rc.RunFor(ctx, s.batchTimeout(redriveChunk), redriveScript, []*redisclient.ScriptCall{call}); err != nil {
			return total, err
		}
		v, err := call.Cmd.Int64Slice()
		if err != nil || len(v) != 2 {
			return total, badReply("redrive", err)
		}
		total += int(v[0])
		if all && v[1] < redriveChunk {
			break
		}
	}
	return total, nil
}
