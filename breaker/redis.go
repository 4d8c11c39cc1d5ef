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

//go:embed shared.lua
var sharedSource string

var sharedScript = redisclient.NewScript(sharedSource)

// RedisConfig configures a [RedisStore]. The zero value is ready to use.
//
// Create the client with ContextTimeoutEnabled: true (redis.Options, redis.ClusterOptions,
// redis.FailoverOptions): go-redis then stops each call at its deadline. Without it, calls on a
// *redis.Client are bounded through a clone that shares its connection pool, and calls on a
// Cluster client each run on a goroutine of their own.
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
	// Logger receives the store's background events (outages, subscription lost and made
	// again). Default: slog.Default().
	Logger *slog.Logger
}

// RedisStore is a [Store] in Redis, shared by every instance of a service. It works on
// standalone Redis, Sentinel and Cluster through any [redis.UniversalClient], and never closes
// the client.
//
// Each breaker's state is one hash, prefix{name}, changed only by one Lua script that reads the
// time from Redis (TIME), so instance clocks do not matter; next to it, one small key per
// Breaker object (prefix{name}:q:<id>, 10 minutes) remembers its last batch number. The hash's TTL outlives its open
// period and window by little, so a forgotten OPEN cannot outlast its time. A flush is one
// pipeline of script calls for every breaker with news; a probe lease or report is one call.
// Transitions are published on prefix + "changes" (PUBLISH; on a Cluster it reaches every node)
// with the breaker's name only: an instance that hears it reads the state itself, so a message
// can never force a state on a breaker.
//
// A RedisStore must be created with [NewRedisStore]; it is safe for concurrent use. It runs two
// goroutines (batching and announcements), stopped by Close, which sends the outcomes still
// waiting first: Close takes up to a batch's bound, and longer if Redis is frozen (the client's
// own dial and read timeouts).
type RedisStore struct {
	h       *hub
	rc      *redisclient.Client
	prefix  string
	channel string
	sub     *redisclient.Subscription
}

// NewRedisStore returns a RedisStore over rdb.
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
	hc := hubConfig{
		timeout: rc.Timeout(), retry: rc.RetryInterval(), every: cfg.FlushInterval,
		batch: cfg.FlushOutcomes, logger: rc.Logger(),
	}
	if err := hc.check("RedisConfig"); err != nil {
		return nil, err
	}
	s := &RedisStore{rc: rc, prefix: rc.Prefix(), channel: rc.Prefix() + "changes"}
	s.h = newHub(s, hc)
	s.sub = rc.Subscribe(redisclient.SubscribeConfig{
		Channel: s.channel, OnMessage: s.h.notify,
		OnSubscribed: func(first bool) {
			if !first {
				s.h.resync() // announcements may have been lost: every breaker reads its state
			}
		},
	})
	s.h.onClose = s.sub.Close
	// Wait (at most Timeout) for Redis to confirm the subscription, so that announcements made
	// after NewRedisStore returns reach this instance. Redis may be down or slow: the
	// subscription goes on trying.
	s.sub.WaitReady(hc.timeout)
	return s, nil
}

func (s *RedisStore) hub() *hub {
	if s == nil {
		return nil
	}
	return s.h
}

// Close sends the outcomes still waiting, then stops the store's goroutines. It never closes
// the Redis client. Breakers on a closed store decide alone. Close is idempotent and always
// returns nil.
func (s *RedisStore) Close() error {
	s.h.close()
	return nil
}

// Stats returns a snapshot of the store's counters.
func (s *RedisStore) Stats() StoreStats { return s.h.stats() }

func (s *RedisStore) key(name string) string { return rediskey.Key(s.prefix, name, "") }

func (s *RedisStore) down() bool { return s.rc.Down() }

func (s *RedisStore) run(ctx context.Context, timeout time.Duration, reqs []request, res []reply) error {
	calls := make([]*redisclient.ScriptCall, len(reqs))
	for i := range reqs {
		calls[i] = &redisclient.ScriptCall{Args: s.args(&reqs[i])}
	}
	err := s.rc.RunFor(ctx, timeout, sharedScript, calls)
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

func (s *RedisStore) args(q *request) []any {
	p := q.pol
	args := []any{
		2, s.key(q.name), rediskey.Key(s.prefix, q.name, ":q:"+q.inst),
		string(rune(q.op)), s.channel, q.name,
		p.failures, strconv.FormatFloat(p.rate, 'g', -1, 64), p.minCalls, p.window, p.open, p.maxOpen,
		p.probes, p.successes, p.probeTimeout, strconv.FormatFloat(q.jitter, 'f', 6, 64),
		q.gen,
	}
	switch q.op {
	case opSync:
		args = append(args, q.succ, q.fail, q.tail, q.late, q.lateFail, q.hold, q.seq, p.windowCalls, flag(q.ended))
	case opReport:
		args = append(args, q.slot, q.deadline, q.outcome)
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

var errBadReply = errors.New("breaker: unexpected reply from Redis")

func decode(c *redis.Cmd) (reply, error) {
	v, err := c.Int64Slice()
	if err != nil {
		return reply{}, err
	}
	if len(v) != 6 || v[1] < 0 || v[1] > int64(StateHalfOpen) {
		return reply{}, fmt.Errorf("%w: %v", errBadReply, v)
	}
	return reply{gen: v[0], state: State(v[1]), wait: v[2], slot: v[3], deadline: v[4], counted: v[5] == 1}, nil
}
