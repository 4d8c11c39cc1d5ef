package breaker

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/internal/rediskey"
	"github.com/outgrow/outgrow/internal/redisscript"
)

//go:embed shared.lua
var sharedSource string

var sharedScript = redisscript.New(sharedSource)

// RedisConfig configures a [RedisStore]. The zero value is ready to use.
type RedisConfig struct {
	// Prefix starts every key and the announcement channel; "breaker:" when empty. It must not
	// contain '{' or '}'.
	Prefix string
	// Timeout bounds the round trip of a probe lease or report, made on a call's path; 50 ms
	// when zero. A batch, which no call waits for, gets ten times as long, so that a busy CPU
	// does not pass for an outage.
	Timeout time.Duration
	// RetryInterval is how long breakers decide alone after the store failed before it is asked
	// again; 500 ms when zero. It is also how often an instance whose calls all wait for another
	// instance's probe asks again if the announcement that the probe ended was lost.
	RetryInterval time.Duration
	// FlushInterval is how often each breaker's outcomes are sent; 100 ms when zero.
	FlushInterval time.Duration
	// FlushOutcomes sends a breaker's outcomes at once when that many failures are waiting; 64
	// when zero. Successes wait for the next FlushInterval.
	FlushOutcomes int
	// Logger receives the store's background events; slog.Default() when nil.
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
	h           *hub
	rdb         redis.UniversalClient
	prefix      string
	channel     string
	ctxTimeouts bool

	mu        sync.Mutex
	sub       *redis.PubSub // nil until the listener has subscribed
	subClosed bool
	subStop   context.CancelFunc
	subReady  chan struct{}
	subDone   chan struct{}
}

// NewRedisStore returns a RedisStore over rdb.
func NewRedisStore(rdb redis.UniversalClient, cfg RedisConfig) (*RedisStore, error) {
	if rdb == nil {
		return nil, fmt.Errorf("%w: nil Redis client", ErrInvalidConfig)
	}
	prefix, err := rediskey.Prefix(cfg.Prefix, "breaker:")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	cfg.Prefix = prefix
	hc := hubConfig{
		timeout: cfg.Timeout, retry: cfg.RetryInterval, every: cfg.FlushInterval,
		batch: cfg.FlushOutcomes, logger: cfg.Logger,
	}
	if err := hc.check("RedisConfig"); err != nil {
		return nil, err
	}
	s := &RedisStore{
		rdb: rdb, prefix: cfg.Prefix, channel: cfg.Prefix + "changes",
		ctxTimeouts: redisscript.ContextTimeouts(rdb),
		subReady:    make(chan struct{}), subDone: make(chan struct{}),
	}
	s.h = newHub(s, hc)
	s.h.onClose = s.stopListening
	ctx, stop := context.WithCancel(context.Background())
	s.subStop = stop
	go s.listen(ctx)
	// Wait (at most Timeout) for Redis to confirm the subscription, so that announcements made
	// after NewRedisStore returns reach this instance. Redis may be down or slow: the listener
	// goes on trying, and go-redis subscribes again after each reconnect.
	t := time.NewTimer(hc.timeout)
	defer t.Stop()
	select {
	case <-s.subReady:
	case <-t.C:
	}
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

func (s *RedisStore) listen(ctx context.Context) {
	defer close(s.subDone)
	sub := s.rdb.Subscribe(ctx, s.channel)
	s.mu.Lock()
	if s.subClosed {
		s.mu.Unlock()
		_ = sub.Close()
		return
	}
	s.sub = sub
	s.mu.Unlock()
	_, _ = sub.Receive(ctx) // the confirmation, or an error go-redis recovers from
	close(s.subReady)
	for msg := range sub.Channel() {
		s.h.notify(msg.Payload)
	}
}

// stopListening ends the subscription and waits for the listener.
func (s *RedisStore) stopListening() {
	s.mu.Lock()
	s.subClosed = true
	sub := s.sub
	s.mu.Unlock()
	s.subStop()
	if sub != nil {
		_ = sub.Close()
	}
	<-s.subDone
}

func (s *RedisStore) key(name string) string { return rediskey.Key(s.prefix, name, "") }

func (s *RedisStore) run(ctx context.Context, timeout time.Duration, reqs []request, res []reply) error {
	calls := make([]*redisscript.Call, len(reqs))
	for i := range reqs {
		calls[i] = &redisscript.Call{Args: s.args(&reqs[i])}
	}
	err := redisscript.Bound(ctx, timeout, s.ctxTimeouts, func(ctx context.Context) error {
		return sharedScript.Run(ctx, s.rdb, calls)
	})
	var partial *redisscript.PartialError
	if err != nil && !errors.As(err, &partial) {
		// Nothing ran, or a timeout left the calls unfinished (and still owned by go-redis).
		for i := range res {
			res[i].err = err
		}
		return err
	}
	for i, c := range calls {
		if e := c.Cmd.Err(); e != nil {
			res[i].err = e
			continue
		}
		res[i], res[i].err = decode(c.Cmd)
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
		args = append(args, q.succ, q.fail, q.tail, q.late, q.lateFail, q.hold, q.seq, p.windowCalls)
	case opReport:
		args = append(args, q.slot, q.deadline, q.outcome)
	case opAcquire, opRelease:
		args = append(args, q.leaseID)
	}
	return args
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
