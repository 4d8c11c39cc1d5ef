package ratelimit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/outgrow/outgrow/internal/redisclient"
	"github.com/outgrow/outgrow/internal/rediskey"
	"github.com/redis/go-redis/v9"
)

//go:embed gcra.lua
var gcraSource string

var gcraScript = redisclient.NewScript(gcraSource)

// RedisConfig configures a [RedisStore]. The zero value is ready to use.
//
// Create the client with ContextTimeoutEnabled: true (redis.Options, redis.ClusterOptions,
// redis.FailoverOptions): go-redis then stops each call at its deadline. Without it, each call
// runs on a goroutine of its own so that the store can stop waiting at the deadline.
type RedisConfig struct {
	// Prefix starts every key. It must not contain '{' or '}'. Default: "ratelimit:".
	Prefix string
	// Timeout bounds one decision, a single round trip in the common case. Default: 50ms.
	Timeout time.Duration
	// FailFastAfter is how many consecutive failed decisions make the store fail fast: then
	// it answers ErrUnavailable at once, without calling Redis, for RetryInterval, one decision
	// probes Redis, and the first success ends the outage. Default: 3.
	FailFastAfter int
	// RetryInterval is how long the store fails fast before it probes Redis again.
	// Default: 500ms.
	RetryInterval time.Duration
	// Logger receives the store's outage transitions. Default: slog.Default().
	Logger *slog.Logger
}

// RedisStore is a [Store] in Redis, shared by every instance of a service. It works on
// standalone Redis, Sentinel and Cluster through any [redis.UniversalClient], and never closes
// the client.
//
// Each decision is one Lua script call (one round trip) per entity: all the policies of one key
// live under one hash tag, prefix{key}:policy, so they share a Cluster slot and are decided
// atomically together; different keys are sent in one pipeline. The script reads the time from
// Redis (TIME), so instance clocks do not matter, and sets each key's TTL to the time it takes to
// be back to a full burst. A denial writes nothing.
//
// Scripts are never retried after they may have run (a retry could charge twice). Each
// decision is bounded by Timeout; after FailFastAfter consecutive failures the store fails fast
// for RetryInterval (see [RedisConfig]), so an outage costs a few Timeouts, not one per request.
//
// A RedisStore must be created with [NewRedisStore]; it is safe for concurrent use.
type RedisStore struct {
	rc     *redisclient.Client
	prefix string

	refundFailures atomic.Uint64
}

// NewRedisStore returns a RedisStore over rdb.
func NewRedisStore(rdb redis.UniversalClient, cfg RedisConfig) (*RedisStore, error) {
	rc, err := redisclient.New(rdb, redisclient.Config{
		Component: "ratelimit", Prefix: cfg.Prefix, DefaultPrefix: "ratelimit:",
		Timeout: cfg.Timeout, DefaultTimeout: 50 * time.Millisecond,
		RetryInterval: cfg.RetryInterval, FailFastAfter: cfg.FailFastAfter,
		Unavailable: ErrUnavailable, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("ratelimit: invalid config: %w", err)
	}
	return &RedisStore{rc: rc, prefix: rc.Prefix()}, nil
}

// RedisStats is a snapshot of a [RedisStore]'s counters.
type RedisStats struct {
	Calls          uint64 // decisions sent to Redis (one per Take that reached Redis)
	Failures       uint64 // decisions that failed: error or timeout
	FastFails      uint64 // decisions refused without calling Redis during an outage
	RefundFailures uint64 // undo of a partly granted batch that failed: those units stay charged
	Down           bool   // Redis is considered unavailable right now
}

// Stats returns a snapshot of the counters.
func (s *RedisStore) Stats() RedisStats {
	st := s.rc.Stats()
	return RedisStats{
		Calls: st.Calls, Failures: st.Failures, FastFails: st.FastFails,
		RefundFailures: s.refundFailures.Load(), Down: st.Down,
	}
}

// Take implements [Store].
func (s *RedisStore) Take(ctx context.Context, reqs []Request, res []Result) error {
	if err := checkBatch(reqs, res); err != nil {
		return err
	}
	return s.take(ctx, reqs, res)
}

// Reset implements [Store].
func (s *RedisStore) Reset(ctx context.Context, req Request) error {
	if req.Key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	return s.rc.Do(ctx, func(ctx context.Context, rdb redis.UniversalClient) error {
		return rdb.Del(ctx, s.key(req.Policy, req.Key)).Err()
	})
}

func (s *RedisStore) key(policy, key string) string {
	var buf [128]byte
	b := rediskey.Append(buf[:0], s.prefix, key, ":")
	return string(append(b, policy...))
}

// group is the requests of one entity, decided by one script call.
type group struct {
	idx  []int // indexes into reqs
	call redisclient.ScriptCall
}

func (s *RedisStore) take(ctx context.Context, reqs []Request, res []Result) error {
	groups := groupByKey(reqs)
	for gi := range groups {
		groups[gi].call.Args = s.args(reqs, groups[gi].idx, 1)
	}
	err := s.run(ctx, groups)
	var partial *redisclient.PartialError
	if errors.As(err, &partial) {
		// Some entities were charged, others failed: give the charged ones back, since the
		// failure policy will decide the whole request.
		s.giveBack(ctx, reqs, groups, res, func(g *group) bool { return g.call.Cmd.Err() == nil })
	}
	if err != nil {
		return err
	}
	granted := true
	for gi := range groups {
		if err := s.decode(reqs, &groups[gi], res); err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		for _, i := range groups[gi].idx {
			if reqs[i].N > 0 && !res[i].Allowed {
				granted = false
			}
		}
	}
	if granted || len(groups) == 1 {
		return nil // one script is all-or-nothing by itself
	}
	// Several entities and one denied: the granted groups were charged; give them back.
	s.giveBack(ctx, reqs, groups, res, func(*group) bool { return true })
	return nil
}

// giveBack refunds the groups that keep says were run, whose requests were all granted and
// charged something, and reports their results without the charge. A failed refund leaves the
// units charged (over-limiting, never over-admitting) and is counted in RefundFailures.
func (s *RedisStore) giveBack(ctx context.Context, reqs []Request, groups []group, res []Result, keep func(*group) bool) {
	var undo []group
	for gi := range groups {
		g := &groups[gi]
		if !keep(g) {
			continue
		}
		decoded := make([]Result, len(reqs))
		if s.decode(reqs, g, decoded) != nil {
			continue
		}
		ok, charged := true, false
		for _, i := range g.idx {
			ok = ok && (reqs[i].N <= 0 || decoded[i].Allowed)
			charged = charged || reqs[i].N > 0
		}
		if ok && charged {
			undo = append(undo, group{idx: g.idx, call: redisclient.ScriptCall{Args: s.args(reqs, g.idx, -1)}})
			for _, i := range g.idx {
				uncharge(&res[i], reqs[i])
			}
		}
	}
	if len(undo) == 0 {
		return
	}
	if err := s.run(context.WithoutCancel(ctx), undo); err != nil {
		s.refundFailures.Add(1)
	}
}

// firstOnly is the index list of a batch of one request; never modified.
var firstOnly = []int{0}

// groupByKey groups requests by entity, in order of first appearance.
func groupByKey(reqs []Request) []group {
	if len(reqs) == 1 {
		return []group{{idx: firstOnly}}
	}
	groups := make([]group, 0, 1)
outer:
	for i := range reqs {
		for gi := range groups {
			if reqs[groups[gi].idx[0]].Key == reqs[i].Key {
				groups[gi].idx = append(groups[gi].idx, i)
				continue outer
			}
		}
		groups = append(groups, group{idx: []int{i}})
	}
	return groups
}

// run sends one script call per group, in one round trip.
func (s *RedisStore) run(ctx context.Context, groups []group) error {
	calls := make([]*redisclient.ScriptCall, len(groups))
	for i := range groups {
		calls[i] = &groups[i].call
	}
	return s.rc.Run(ctx, gcraScript, calls)
}

// args builds numkeys, KEYS and ARGV for the requests idx, with each N multiplied by sign (-1
// gives charged units back).
func (s *RedisStore) args(reqs []Request, idx []int, sign int) []any {
	args := make([]any, 0, 1+4*len(idx))
	args = append(args, len(idx))
	for _, i := range idx {
		args = append(args, s.key(reqs[i].Policy, reqs[i].Key))
	}
	for _, i := range idx {
		l := reqs[i].Limit
		iv := l.interval() / int64(time.Microsecond)
		args = append(args, iv, iv*int64(l.burst()), sign*reqs[i].N)
	}
	return args
}

// decode copies a group's script reply into res.
func (s *RedisStore) decode(reqs []Request, g *group, res []Result) error {
	vals, err := g.call.Cmd.Int64Slice()
	if err != nil {
		return err
	}
	if len(vals) != 4*len(g.idx) {
		return fmt.Errorf("ratelimit: script returned %d values for %d keys", len(vals), len(g.idx))
	}
	for j, i := range g.idx {
		v := vals[4*j : 4*j+4]
		res[i] = Result{
			Policy:     reqs[i].Policy,
			Allowed:    v[0] == 1,
			Limit:      reqs[i].Limit,
			Remaining:  int(v[1]),
			RetryAfter: time.Duration(v[2]) * time.Microsecond,
			ResetAfter: time.Duration(v[3]) * time.Microsecond,
		}
	}
	return nil
}

// uncharge turns the Result of a granted request into what it reports once its units were
// given back because another request of the batch was denied.
func uncharge(r *Result, q Request) {
	if q.N > 0 && r.Allowed {
		r.Remaining += q.N
		r.ResetAfter = max(0, r.ResetAfter-time.Duration(int64(q.N)*q.Limit.interval()))
	}
}

// checkBatch validates a batch for any store.
func checkBatch(reqs []Request, res []Result) error {
	if len(res) != len(reqs) {
		return fmt.Errorf("ratelimit: %d results for %d requests", len(res), len(reqs))
	}
	takes, refunds := false, false
	for i := range reqs {
		if err := reqs[i].check(); err != nil {
			return err
		}
		takes = takes || reqs[i].N > 0
		refunds = refunds || reqs[i].N < 0
	}
	if takes && refunds {
		return fmt.Errorf("%w: a batch cannot both take and give back units", ErrInvalidKey)
	}
	return nil
}
