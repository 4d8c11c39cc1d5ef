package ratelimit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/internal/redisclient"
	"github.com/outgrow/outgrow/internal/rediskey"
)

//go:embed ratelimit.lua
var scriptSource string

var script = redisclient.NewScript(scriptSource)

// RedisConfig configures a [RedisStore]. The zero value is ready to use.
//
// Create the client with ContextTimeoutEnabled: true (redis.Options, redis.ClusterOptions,
// redis.FailoverOptions): go-redis then stops each call at its deadline. Without it, each call
// runs on a goroutine of its own so that the store can stop waiting at the deadline.
type RedisConfig struct {
	// Prefix starts every key. It must not contain '{' or '}'. Default: "ratelimit:".
	Prefix string
	// Timeout bounds one round trip to Redis; a decision takes one, or two when its keys span
	// Cluster slots. Default: 50ms.
	Timeout time.Duration
	// FailFastAfter is how many consecutive failed calls make the store fail fast: it then
	// answers ErrUnavailable at once, without calling Redis, for RetryInterval, one call probes
	// Redis, and the first success ends the outage. Default: 3.
	FailFastAfter int
	// RetryInterval is how long the store fails fast before it probes Redis again.
	// Default: 500ms.
	RetryInterval time.Duration
	// Secret keys the hash that names each key in Redis (key names never contain the keys
	// themselves, such as IPs or API keys). Every instance sharing the Redis must use the same
	// Secret. Default: a random secret that the first instance stores in Redis, under
	// Prefix+"secret", and that every instance reads once (see the README's Eviction note for
	// what happens if Redis loses it).
	Secret []byte
	// Logger receives the store's outage transitions. Default: slog.Default().
	Logger *slog.Logger
}

// RedisStore is a [Store] in Redis, shared by every instance of a service. It works on
// standalone Redis, Sentinel and Cluster through any [redis.UniversalClient], and never closes
// the client.
//
// Decisions are exact and atomic: the same requests get the same answers as on a [MemoryStore],
// whatever other instances do meanwhile. A decision is one Lua script call (one round trip) when
// its keys are on one server (standalone, Sentinel) or are one key's (the policies of one key
// share a hash tag, so a Cluster slot). Otherwise, on a Cluster, it takes two round trips: first
// each slot holds the units if it has them, then every slot charges them, or, if one slot lacked
// them, every slot releases them. Other requests count held units as taken, but a key whose
// units are only held is never reported denied: such a request waits for the holds to be
// settled (briefly, within Timeout) and is otherwise denied with a short RetryAfter, without
// entering the deny cache. Holds lapse after a few Timeouts, so those of an instance that died
// between the phases do not last; an instance held up between them longer than that charges
// nothing and tries again. Scripts read the time from Redis (TIME), so instance clocks do not
// matter, and keys expire once back to their full limit.
//
// Scripts are never retried after they may have run (a retry could charge twice). Each call is
// bounded by Timeout; after FailFastAfter consecutive failures the store fails fast for
// RetryInterval (see [RedisConfig]), so an outage costs a few Timeouts, not one per request.
// Meanwhile each Limiter applies its FailurePolicy.
//
// The zero value is not usable; create a RedisStore with [NewRedisStore]. It is safe for
// concurrent use.
type RedisStore struct {
	rc     *redisclient.Client
	prefix string
	local  *MemoryStore // decides FailLocal layers while Redis is unavailable
	// holds is set when keys of different hash tags may be on different servers (Cluster,
	// Ring): a request then makes one script call per hash tag, with holds when it spans
	// several. Tests set it on a single node to run the protocol there.
	holds bool
	// life is how long a hold lives, in µs as the script takes it: a few Timeouts, so that a
	// commit sent at once finds its holds.
	life any
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a RedisStore over rdb. Its errors wrap ErrInvalidConfig and name the
// field at fault.
func NewRedisStore(rdb redis.UniversalClient, cfg RedisConfig) (*RedisStore, error) {
	rc, err := redisclient.New(rdb, redisclient.Config{
		Component: "ratelimit", Prefix: cfg.Prefix, DefaultPrefix: "ratelimit:",
		Timeout: cfg.Timeout, DefaultTimeout: 50 * time.Millisecond,
		RetryInterval: cfg.RetryInterval, FailFastAfter: cfg.FailFastAfter,
		Unavailable: ErrUnavailable, Logger: cfg.Logger, Secret: cfg.Secret,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	local, _ := NewMemoryStore(MemoryConfig{})
	return &RedisStore{rc: rc, prefix: rc.Prefix(), local: local, holds: !rc.SingleNode(),
		life: (4 * rc.Timeout()).Microseconds()}, nil
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

func (s *RedisStore) fallback() *MemoryStore { return s.local }

func (s *RedisStore) reset(ctx context.Context, q request) error {
	secret, err := s.rc.Secret(ctx)
	if err != nil {
		return err
	}
	return s.rc.Do(ctx, func(ctx context.Context, rdb redis.UniversalClient) error {
		return rdb.Del(ctx, s.key(secret, &q)).Err()
	})
}

// key returns the state key of q: prefix{digest}:policy, with ":log" after the policy of a
// strict limit. The digest (a keyed hash of the key, see rediskey.Digest) is the hash tag: the
// policies of one key share a slot, different keys spread over a Cluster, and no key name holds
// the key itself. Digests are base64url, so they need no escaping.
func (s *RedisStore) key(secret []byte, q *request) string {
	var buf [128]byte
	b := append(buf[:0], s.prefix...)
	b = append(b, '{')
	b = rediskey.AppendDigest(b, secret, q.key)
	b = append(b, "}:"...)
	b = append(b, q.policy...)
	if q.rule.Strict {
		b = append(b, ":log"...)
	}
	return string(b)
}

// tag returns the hash tag of a state key.
func (s *RedisStore) tag(key string) string {
	return key[len(s.prefix)+1 : len(s.prefix)+1+rediskey.DigestLen]
}

func (s *RedisStore) take(ctx context.Context, reqs []request, out []outcome) error {
	secret, err := s.rc.Secret(ctx)
	if err != nil {
		return err
	}
	b := &batch{s: s, reqs: reqs, out: out}
	b.keys = b.keyBuf[:0]
	for i := range reqs {
		b.keys = append(b.keys, s.key(secret, &reqs[i]))
	}
	b.groups = s.group(b.keys, b.groupBuf[:0])
	return b.run(ctx)
}

// group splits the requests of keys into script calls, one per hash tag (so one per slot or
// server) when the store uses holds, in order of first appearance.
func (s *RedisStore) group(keys []string, groups [][]int) [][]int {
	if !s.holds || len(keys) == 1 {
		return append(groups, indexes(len(keys)))
	}
outer:
	for i, k := range keys {
		for g := range groups {
			if s.tag(keys[groups[g][0]]) == s.tag(k) {
				groups[g] = append(groups[g], i)
				continue outer
			}
		}
		groups = append(groups, []int{i})
	}
	return groups
}

// batch is one take on a RedisStore: the requests, their keys and the script calls they make.
type batch struct {
	s      *RedisStore
	reqs   []request
	out    []outcome
	keys   []string
	groups [][]int // indexes of the requests of each script call
	id     string  // the holds' id, for a batch that spans calls

	// Room for the common batches, of up to three requests in one call (two with holds), in the
	// batch's one allocation: the ARGV of a call is 4 values, then 4 per request.
	keyBuf   [3]string
	groupBuf [1][]int
	call     redisclient.ScriptCall
	callBuf  [1]*redisclient.ScriptCall
	argBuf   [1 + 3 + 4 + 4*3]any
}

// run decides the batch: one round of script calls (or two across slots), and more only when
// units were held by other requests, or its own holds lapsed.
func (b *batch) run(ctx context.Context) error {
	takes := false // rather than peek or give back: only takes need holds
	for i := range b.reqs {
		takes = takes || b.reqs[i].n > 0
	}
	var deadline time.Time // Timeout after units were first found held
	for attempt := 0; ; attempt++ {
		var busy bool
		var err error
		if len(b.groups) == 1 || !takes {
			busy, err = b.decide(ctx)
		} else {
			busy, err = b.reserveThenCommit(ctx)
		}
		if err != nil || !busy {
			return err
		}
		if attempt == 0 {
			deadline = time.Now().Add(b.s.rc.Timeout())
		}
		wait := backoff(attempt, b.s.rc.Timeout())
		if time.Now().Add(wait).After(deadline) {
			b.giveUp()
			return nil
		}
		if err := sleep(ctx, wait); err != nil {
			return fmt.Errorf("ratelimit: %w", err)
		}
	}
}

// decide sends one decide call per group, in one round trip: the whole decision when there is
// one group, and for peeks and give-backs, which need no holds, whatever the groups.
func (b *batch) decide(ctx context.Context) (busy bool, err error) {
	calls := b.calls(argDecide)
	if err := b.s.rc.Run(ctx, script, calls); err != nil {
		return false, err
	}
	denied := false
	for k, g := range b.groups {
		d, bz, err := b.decode(g, calls[k].Cmd)
		if err != nil {
			return false, err
		}
		denied, busy = denied || d, busy || bz
	}
	return busy && !denied, nil
}

// calls builds one script call per group: numkeys, KEYS (the state keys, then, when the store
// uses holds, their hold sets) and ARGV (see ratelimit.lua).
func (b *batch) calls(op any) []*redisclient.ScriptCall {
	holding := b.s.holds
	calls := b.callBuf[:]
	if len(b.groups) > 1 {
		calls = make([]*redisclient.ScriptCall, len(b.groups))
	}
	for k, g := range b.groups {
		nkeys := len(g)
		if holding {
			nkeys *= 2
		}
		var args []any
		if n := 1 + nkeys + 4 + 4*len(g); len(b.groups) == 1 && n <= len(b.argBuf) {
			args = b.argBuf[:0]
		} else {
			args = make([]any, 0, n)
		}
		args = append(args, nkeys)
		for _, i := range g {
			args = append(args, b.keys[i])
		}
		if holding {
			for _, i := range g {
				args = append(args, b.keys[i]+":holds")
			}
		}
		flag, id := argNoHolds, any("")
		if holding {
			flag, id = argHolds, b.id
		}
		args = append(args, op, flag, id, b.s.life)
		for _, i := range g {
			q := &b.reqs[i]
			args = append(args, q.rule.redisArgs[0], q.rule.redisArgs[1], q.rule.redisArgs[2], q.n)
		}
		if len(b.groups) == 1 {
			b.call = redisclient.ScriptCall{Args: args}
			calls[k] = &b.call
		} else {
			calls[k] = &redisclient.ScriptCall{Args: args}
		}
	}
	return calls
}

// The script's constant arguments, boxed once.
var (
	argDecide, argReserve, argCommit, argRefund, argRelease any = "decide", "reserve", "commit", "refund", "release"
	argHolds, argNoHolds                                    any = "1", "0"
)

// decode copies the reply of the call of group g into out, and reports whether a request was
// denied and whether one was busy.
func (b *batch) decode(g []int, cmd *redis.Cmd) (denied, busy bool, err error) {
	vals, _ := cmd.Val().([]any)
	if len(vals) != 4*len(g) {
		return false, false, fmt.Errorf("%w: script returned %d values for %d requests", ErrUnavailable, len(vals), len(g))
	}
	for j, i := range g {
		var v [4]int64
		for k := range v {
			v[k], _ = vals[4*j+k].(int64)
		}
		q := &b.reqs[i]
		b.out[i] = outcome{Result: Result{
			Policy:     q.policy,
			Allowed:    v[0] != 0,
			Limit:      q.rule.Limit,
			Remaining:  int(v[1]),
			RetryAfter: time.Duration(v[2]) * time.Microsecond,
			ResetAfter: time.Duration(v[3]) * time.Microsecond,
		}, busy: v[0] == 2}
		denied, busy = denied || v[0] == 0 && q.n > 0, busy || v[0] == 2
	}
	return denied, busy, nil
}

// giveUp denies the requests still busy at the deadline, with a short RetryAfter: their keys
// had the units, held by requests that had not settled yet.
func (b *batch) giveUp() {
	for i := range b.out {
		if o := &b.out[i]; o.busy {
			o.Allowed, o.RetryAfter = false, b.s.rc.Timeout()
		}
	}
}

// backoff returns a random wait before the attempt after attempt: doubling from 1ms, capped at a
// quarter of the timeout, and spread over half to one and a half times that, so that requests
// that hold each other's keys do not retry in step.
func backoff(attempt int, timeout time.Duration) time.Duration {
	d := min(time.Millisecond<<min(attempt, 16), max(timeout/4, time.Millisecond))
	return d/2 + rand.N(d)
}

// sleep waits for d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reserveThenCommit decides a batch whose keys span groups: each group holds the units of its
// requests if it has them all (one round trip for all the groups), then every group charges
// them if every group held them, or releases what it held (a second round trip). It reports
// busy when no group denied but one was busy, or when a group's holds lapsed before its commit
// ran: the request was held up between the phases, others may have taken the units meanwhile,
// and what the other groups charged is given back (a third round trip) before it tries again.
func (b *batch) reserveThenCommit(ctx context.Context) (busy bool, err error) {
	b.id = strconv.FormatUint(rand.Uint64(), 36)
	calls := b.calls(argReserve)
	err = b.s.rc.Run(ctx, script, calls)
	var partial *redisclient.PartialError
	if err != nil && !errors.As(err, &partial) {
		return false, err
	}
	var held []int // groups that hold units
	denied := false
	for k, g := range b.groups {
		if calls[k].Cmd == nil || calls[k].Cmd.Err() != nil {
			continue
		}
		d, bz, derr := b.decode(g, calls[k].Cmd)
		if derr != nil {
			err = derr
			continue
		}
		denied, busy = denied || d, busy || bz
		if !d && !bz {
			held = append(held, k)
		}
	}
	if err != nil || denied || busy {
		b.undo(ctx, nil, held)
		return busy && !denied && err == nil, err
	}
	charged, failed, err := b.commit(ctx)
	if err == nil && len(charged) == len(b.groups) {
		return false, nil
	}
	// All or nothing: give back what some groups charged, and drop the holds of the commits
	// that failed. Then report the failure, or, if holds had lapsed, try again.
	b.undo(ctx, charged, failed)
	if err != nil {
		return false, err
	}
	for i := range b.out {
		b.out[i].busy = true
	}
	return true, nil
}

// commit charges every group's held units, in one round trip. It returns the groups that
// charged (all of them, unless the holds of some had lapsed) and the groups whose call failed.
func (b *batch) commit(ctx context.Context) (charged, failed []int, err error) {
	calls := b.calls(argCommit)
	err = b.s.rc.Run(ctx, script, calls)
	var partial *redisclient.PartialError
	if err != nil && !errors.As(err, &partial) {
		return nil, indexes(len(b.groups)), err
	}
	for k := range b.groups {
		vals, _ := calls[k].Cmd.Val().([]any)
		switch {
		case calls[k].Cmd.Err() != nil:
			failed = append(failed, k)
		case len(vals) > 0:
			charged = append(charged, k)
		}
	}
	if err == nil && len(charged) == len(b.groups) {
		for k, g := range b.groups {
			if _, _, err := b.decode(g, calls[k].Cmd); err != nil {
				return charged, nil, err
			}
		}
	}
	return charged, failed, err
}

// undo gives back what the groups of refund charged and drops the holds of the groups of
// release, in one round trip, even when ctx has ended. Failures are ignored: holds lapse on
// their own, and units not given back stay charged, which can refuse a later request early,
// never grant one too many.
func (b *batch) undo(ctx context.Context, refund, release []int) {
	var calls []*redisclient.ScriptCall
	for _, u := range []struct {
		op     any
		groups []int
	}{{argRefund, refund}, {argRelease, release}} {
		if len(u.groups) == 0 {
			continue
		}
		all := b.calls(u.op)
		for _, k := range u.groups {
			calls = append(calls, all[k])
		}
	}
	if len(calls) > 0 {
		_ = b.s.rc.Run(context.WithoutCancel(ctx), script, calls)
	}
}
