package breaker

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/internal/redisclient"
	"github.com/outgrow/outgrow/internal/rediskey"
)

//go:embed shared_state.lua
var sharedStateSource string

var sharedStateScript = redisclient.NewScript(sharedStateSource)

// RedisConfig configures a [RedisStore]. The zero value is ready to use; a RedisConfig is a
// plain value, and NewRedisStore copies it.
//
// Create the client with ContextTimeoutEnabled: true (redis.Options, redis.ClusterOptions,
// redis.FailoverOptions): go-redis then stops each call at its deadline. Without it, each call
// runs on a goroutine of its own so that the store can stop waiting at the deadline.
type RedisConfig struct {
	// Prefix starts every key and the announcement channel. It must not contain '{' or '}'.
	// Default: "breaker:".
	Prefix string
	// Timeout bounds the round trip of a probe lease or report, made on a call's path. A
	// batch, which no call waits for, gets ten times as long, so that a busy CPU does not pass
	// for an outage. Default: 50ms.
	Timeout time.Duration
	// FailFastAfter is how many consecutive failed round trips make the store fail fast:
	// breakers then decide alone, without asking Redis, for RetryInterval. Default: 3.
	FailFastAfter int
	// RetryInterval is how long breakers decide alone after the store failed before it is asked
	// again. It is also how often an instance whose calls all wait for another instance's probe
	// asks again if the announcement that the probe ended was lost. Default: 500ms.
	RetryInterval time.Duration
	// FlushInterval is how often each breaker's outcomes are sent. Default: 100ms.
	FlushInterval time.Duration
	// FlushOutcomes sends a breaker's outcomes at once when that many failures are waiting.
	// Successes wait for the next FlushInterval. Default: 64.
	FlushOutcomes int
	// Logger receives the store's state changes: Redis failing and answering again, the
	// subscription lost and made again. Default: slog.Default().
	Logger *slog.Logger
}

// RedisStore is the [Store] in Redis, shared by every instance of a service. It works on
// standalone Redis, Sentinel and Cluster through any [redis.UniversalClient], and never closes
// the client.
//
// Each breaker's state is one hash, prefix{name}, which expires when nobody uses the breaker
// for longer than its Window, OpenDuration and ProbeTimeout (and what is left of an open
// period); next to it, one small key per Breaker object, prefix{name}:q:<id>, lives 10
// minutes. Transitions are announced on the channel prefix + "changes". A batch is one pipeline
// of script calls (one round trip per node on a Cluster); a probe lease or report is one call.
//
// The zero value is not usable; create a RedisStore with [NewRedisStore]. It is safe for
// concurrent use. It runs two goroutines (batching and announcements), stopped by Close, which
// sends the outcomes still waiting first and returns within ten times Timeout, whatever Redis
// does.
type RedisStore struct {
	bt      *batcher
	rc      *redisclient.Client
	channel string
	sub     *redisclient.Subscription
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a RedisStore over rdb. It waits, at most Timeout, for its subscription
// to the announcements to be confirmed; if Redis does not answer, the store starts without it
// and subscribes as soon as Redis does. Its error wraps ErrInvalidConfig and names the field at
// fault.
func NewRedisStore(rdb redis.UniversalClient, cfg RedisConfig) (*RedisStore, error) {
	rc, err := redisclient.New(rdb, redisclient.Config{
		Component: "breaker", Prefix: cfg.Prefix, DefaultPrefix: "breaker:",
		Timeout: cfg.Timeout, DefaultTimeout: 50 * time.Millisecond,
		RetryInterval: cfg.RetryInterval, FailFastAfter: cfg.FailFastAfter,
		Unavailable: errStoreDown, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	bc := batcherConfig{timeout: rc.Timeout(), retry: rc.RetryInterval(), every: cfg.FlushInterval, failures: cfg.FlushOutcomes}
	if err := bc.check("RedisConfig"); err != nil {
		return nil, err
	}
	s := newRedisStore(rc)
	s.bt = newBatcher(s, bc)
	s.sub = rc.Subscribe(redisclient.SubscribeConfig{
		Channel: s.channel, OnMessage: s.bt.announced,
		OnSubscribed: func(first bool) {
			if !first {
				s.bt.resync() // announcements may have been lost: every breaker reads its state
			}
		},
	})
	s.bt.onClose = s.sub.Close
	// Wait (at most Timeout) for Redis to confirm the subscription, so that announcements made
	// after NewRedisStore returns reach this instance. Redis may be down or slow: the
	// subscription goes on trying.
	s.sub.WaitReady(bc.timeout)
	return s, nil
}

func newRedisStore(rc *redisclient.Client) *RedisStore {
	return &RedisStore{rc: rc, channel: rc.Prefix() + "changes"}
}

func (s *RedisStore) batcher() *batcher {
	if s == nil {
		return nil
	}
	return s.bt
}

// Close sends the outcomes still waiting, then stops the store's goroutines, within ten times
// Timeout: outcomes Redis has not taken by then are lost. It never closes the Redis client.
// Breakers on a closed store decide alone. Close is idempotent and always returns nil.
func (s *RedisStore) Close() error {
	s.bt.close()
	return nil
}

// Stats returns a snapshot of the store's counters.
func (s *RedisStore) Stats() StoreStats { return s.bt.stats() }

func (s *RedisStore) down() bool { return s.rc.Down() }

func (s *RedisStore) run(ctx context.Context, timeout time.Duration, reqs []request, res []reply) error {
	calls := make([]*redisclient.ScriptCall, len(reqs))
	for i := range reqs {
		calls[i] = &redisclient.ScriptCall{Args: s.args(&reqs[i])}
	}
	err := s.rc.RunFor(ctx, timeout, sharedStateScript, calls)
	for i, c := range calls {
		switch {
		case c.Cmd == nil:
			// Nothing ran, or a timeout left the calls unfinished (and still owned by go-redis).
			res[i].err = err
		case c.Cmd.Err() != nil:
			res[i].err = c.Cmd.Err()
		default:
			res[i], res[i].err = decode(c.Cmd)
		}
	}
	return err
}

// args are the script's KEYS and ARGV for q; see the header of shared_state.lua.
func (s *RedisStore) args(q *request) []any {
	p, prefix := q.policy, s.rc.Prefix()
	args := []any{
		2, rediskey.Key(prefix, q.name, ""), rediskey.Key(prefix, q.name, ":q:"+q.instance),
		string(rune(q.op)), s.channel, q.name, q.gen, strconv.FormatFloat(q.jitter, 'f', 6, 64),
		p.failures, strconv.FormatFloat(p.failureRate, 'g', -1, 64), p.minCalls, p.windowMs, p.windowCalls,
		p.openMs, p.maxOpenMs, p.probes, p.successes, p.probeTimeoutMs,
	}
	switch q.op {
	case opSync:
		args = append(args, q.successes, q.failures, q.failuresAfterSuccess, q.lateOutcomes, q.lateFailures,
			q.holdMs, q.seq, flag(q.runEnded))
	case opReport:
		args = append(args, q.slot, q.deadline, outcomeCode(q.outcome))
	case opAcquire, opRelease:
		args = append(args, q.leaseID)
	}
	return args
}

func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}

// outcomeCode is how the script reads a probe's outcome.
func outcomeCode(o Outcome) int {
	switch o {
	case OutcomeSuccess:
		return 0
	case OutcomeFailure:
		return 1
	}
	return 2
}

var errBadReply = errors.New("breaker: unexpected reply from Redis")

func decode(c *redis.Cmd) (reply, error) {
	v, err := c.Int64Slice()
	if err != nil {
		return reply{}, err
	}
	if len(v) != 7 || v[1] < 0 || v[1] > int64(StateHalfOpen) {
		return reply{}, fmt.Errorf("%w: %v", errBadReply, v)
	}
	return reply{gen: v[0], state: State(v[1]), waitMs: v[2], slot: v[3], deadline: v[4], counted: v[5] == 1, first: v[6] == 1}, nil
}
