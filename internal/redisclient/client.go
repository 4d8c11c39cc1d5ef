// Package redisclient is the one path by which outgrow's Redis-backed stores reach Redis. Every
// store (ratelimit, breaker, cache, session, and those to come) holds one [Client] and sends
// every command, script and subscription through it, so that timeouts, failures and recovery
// behave the same in every package.
//
// # Timeouts
//
// Every call is bounded by a timeout (the store's RedisConfig.Timeout unless the call asks for
// longer), without a goroutine per call where go-redis can enforce it:
//
//   - on a client created with ContextTimeoutEnabled, the deadline goes to go-redis in the
//     context (the recommended setting);
//   - on other clients, the call runs on a goroutine of its own and the caller stops waiting
//     at the deadline. (go-redis's WithTimeout clones would avoid the goroutine on a
//     *redis.Client, but in v9.23 a clone drops the client's hooks: the user's tracing and
//     metrics would stop seeing the store's calls.)
//
// In every mode a call's results reach the caller only through the return value of [Call] (or
// the calls of [Client.Run]) and only when the call ended in time: nothing a timed-out command
// writes later can be read.
//
// # Failures
//
// One policy, in every package:
//
//   - When the caller's context ends before Redis answers, the call returns the context's
//     error (context.Canceled or context.DeadlineExceeded) and says nothing about Redis. A
//     deadline stops the call at once in every mode; a cancellation does too without
//     ContextTimeoutEnabled, but with it go-redis watches only deadlines, so a cancelled call
//     returns when Redis answers or at the store's Timeout.
//   - When Redis fails or the store's own timeout passes first, the call returns an error that
//     wraps the package's ErrUnavailable and the cause (context.DeadlineExceeded for the
//     timeout, in every mode), and counts as a failure.
//   - After FailFastAfter consecutive failures the client fails fast: calls return
//     ErrUnavailable at once, without reaching Redis, for RetryInterval; then one call probes,
//     and the first success (or a confirmed subscription) ends the outage. One slow call among
//     successes never makes the client fail fast.
//
// The client logs the start and the end of an outage (Warn, Info), never one line per call.
package redisclient

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/internal/failfast"
	"github.com/outgrow/outgrow/internal/rediskey"
)

// ErrNotSent is wrapped (with the package's ErrUnavailable) into the error of a call refused
// during an outage: nothing reached Redis, so nothing needs undoing.
var ErrNotSent = errors.New("not sent: Redis failed recently")

// DefaultRetryInterval is how long a client fails fast during an outage when
// Config.RetryInterval is zero.
const DefaultRetryInterval = 500 * time.Millisecond

const defaultFailFastAfter = 3

// Config configures a [Client]. Zero durations and counts take the defaults.
type Config struct {
	// Component names the package in logs and errors, e.g. "ratelimit".
	Component string
	// Prefix is the store's configured key prefix; DefaultPrefix replaces it when empty.
	Prefix, DefaultPrefix string
	// Timeout bounds one call; DefaultTimeout replaces it when zero.
	Timeout, DefaultTimeout time.Duration
	// RetryInterval is how long the client fails fast during an outage before one call probes.
	// Default: 500ms.
	RetryInterval time.Duration
	// FailFastAfter is how many consecutive failures start an outage. Default: 3.
	FailFastAfter int
	// Unavailable is the package's sentinel, wrapped into every error that reports a Redis
	// failure or a call refused during an outage.
	Unavailable error
	// Logger receives outage transitions and subscription events; slog.Default() when nil.
	Logger *slog.Logger
	// Secret, if set, keys the store's hashes of secrets in key names (see [Client.Secret]).
	Secret []byte
}

// validate checks cfg and fills in its defaults. Its errors name the RedisConfig field at
// fault; stores wrap them in their ErrInvalidConfig.
func (cfg *Config) validate() error {
	var err error
	if cfg.Prefix, err = rediskey.Prefix(cfg.Prefix, cfg.DefaultPrefix); err != nil {
		return fmt.Errorf("RedisConfig.Prefix %q: %w", cfg.Prefix, err)
	}
	switch {
	case cfg.Timeout < 0:
		return fmt.Errorf("RedisConfig.Timeout %v is negative", cfg.Timeout)
	case cfg.RetryInterval < 0:
		return fmt.Errorf("RedisConfig.RetryInterval %v is negative", cfg.RetryInterval)
	case cfg.FailFastAfter < 0:
		return fmt.Errorf("RedisConfig.FailFastAfter %d is negative", cfg.FailFastAfter)
	case cfg.Unavailable == nil:
		return errors.New("redisclient: Config.Unavailable is nil")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = cfg.DefaultTimeout
	}
	if cfg.Timeout <= 0 {
		return errors.New("redisclient: Config.DefaultTimeout must be positive")
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = DefaultRetryInterval
	}
	if cfg.FailFastAfter == 0 {
		cfg.FailFastAfter = defaultFailFastAfter
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return nil
}

// How a Client bounds a call.
type mode uint8

const (
	modeContext   mode = iota // ContextTimeoutEnabled: the context's deadline reaches go-redis
	modeGoroutine             // anything else: the caller stops waiting at the deadline
)

// Client is a store's link to Redis. The zero value is not usable; create one with [New]. It
// is safe for concurrent use. It never closes the redis client it was given.
type Client struct {
	rdb        redis.UniversalClient
	cfg        Config
	mode       mode
	singleNode bool // one server holds every key: a script may touch keys of any slot
	window     *failfast.Window

	secret   atomic.Pointer[[]byte]
	reassert atomic.Bool // an outage ended: Redis may have lost the secret (restart, eviction)

	calls, failures, fastFails atomic.Uint64
}

// New returns a Client over rdb. Its errors name the configuration field at fault.
func New(rdb redis.UniversalClient, cfg Config) (*Client, error) {
	if rdb == nil {
		return nil, errors.New("nil Redis client")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Client{rdb: rdb, cfg: cfg, window: failfast.New(cfg.RetryInterval, cfg.FailFastAfter)}
	if len(cfg.Secret) > 0 {
		c.secret.Store(&cfg.Secret)
	}
	ctxTimeouts := false // a client type not known here gets the goroutine
	switch r := rdb.(type) {
	case *redis.Client:
		c.singleNode, ctxTimeouts = true, r.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		ctxTimeouts = r.Options().ContextTimeoutEnabled
	case *redis.Ring:
		ctxTimeouts = r.Options().ContextTimeoutEnabled
	}
	if !ctxTimeouts {
		c.mode = modeGoroutine
	}
	return c, nil
}

// Redis returns the client the store was given.
func (c *Client) Redis() redis.UniversalClient { return c.rdb }

// Prefix returns the store's key prefix.
func (c *Client) Prefix() string { return c.cfg.Prefix }

// Timeout returns the bound of one call.
func (c *Client) Timeout() time.Duration { return c.cfg.Timeout }

// RetryInterval returns how long an outage fails fast before a probe.
func (c *Client) RetryInterval() time.Duration { return c.cfg.RetryInterval }

// SingleNode reports whether one server holds every key (standalone or Sentinel), so that one
// script may touch keys of different hash tags. On a Cluster or a Ring it is false: keys of one
// script must share a slot.
func (c *Client) SingleNode() bool { return c.singleNode }

// Down reports whether the client is in an outage (failing fast).
func (c *Client) Down() bool { return c.window.Down() }

// Stats is a snapshot of a Client's counters.
type Stats struct {
	Calls     uint64 // calls sent to Redis
	Failures  uint64 // calls that failed or timed out (not those whose caller went away)
	FastFails uint64 // calls refused without reaching Redis during an outage
	Down      bool   // failing fast right now
}

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats {
	return Stats{
		Calls: c.calls.Load(), Failures: c.failures.Load(), FastFails: c.fastFails.Load(),
		Down: c.window.Down(),
	}
}

// Call runs fn against Redis within the client's Timeout (see the package documentation for
// how) and returns what fn returned, or an error wrapping the package's ErrUnavailable, or the
// caller's context error. A redis.Nil from fn is a reply (Redis answered): it is returned as
// is and does not count as a failure. fn must use the context and the client it is given, and return its
// results rather than write them elsewhere: after a timeout it may still be running.
func Call[T any](ctx context.Context, c *Client, fn func(context.Context, redis.UniversalClient) (T, error)) (T, error) {
	return CallFor(ctx, c, c.cfg.Timeout, fn)
}

// CallFor is [Call] with a timeout of its own, for the few calls that take longer than one
// round trip (many keys, batches no caller waits for).
func CallFor[T any](ctx context.Context, c *Client, timeout time.Duration, fn func(context.Context, redis.UniversalClient) (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	if !c.window.Admit() {
		c.fastFails.Add(1)
		return zero, fmt.Errorf("%w: %w; next attempt in at most %v", c.cfg.Unavailable, ErrNotSent, c.cfg.RetryInterval)
	}
	c.calls.Add(1)
	v, err := bound(ctx, c, timeout, fn)
	switch {
	case err == nil:
		c.record(failfast.Succeeded, nil)
		return v, nil
	case errors.Is(err, redis.Nil):
		// Redis answered "no such key": a reply, not a failure. Returned as is, for the store
		// to turn into its own "not found".
		c.record(failfast.Succeeded, nil)
		return v, err
	case ended(ctx):
		// The caller went away or ran out of its own time first: nothing learnt about Redis.
		c.record(failfast.Unknown, nil)
		if err := ctx.Err(); err != nil {
			return zero, err
		}
		return zero, context.DeadlineExceeded
	default:
		c.failures.Add(1)
		c.record(failfast.Failed, err)
		return v, fmt.Errorf("%w: %w", c.cfg.Unavailable, err)
	}
}

// ended reports whether ctx is done or past its deadline. go-redis, with ContextTimeoutEnabled,
// stops a call at the deadline a moment before the context's own timer marks it done.
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// Do is [Call] for functions that return only an error.
func (c *Client) Do(ctx context.Context, fn func(context.Context, redis.UniversalClient) error) error {
	_, err := Call(ctx, c, func(ctx context.Context, rdb redis.UniversalClient) (struct{}, error) {
		return struct{}{}, fn(ctx, rdb)
	})
	return err
}

func (c *Client) record(o failfast.Outcome, err error) {
	if !c.window.Record(o) {
		return
	}
	c.transition(o == failfast.Failed, err)
}

// up records that Redis answered outside a call (a subscription confirmed): an outage ends at
// once instead of at the next call.
func (c *Client) up() {
	if c.window.Up() {
		c.transition(false, nil)
	}
}

func (c *Client) transition(down bool, err error) {
	if !down {
		c.reassert.Store(true)
	}
	if down {
		c.cfg.Logger.Warn(c.cfg.Component+": Redis unavailable; failing fast",
			"err", err, "retry_interval", c.cfg.RetryInterval)
	} else {
		c.cfg.Logger.Info(c.cfg.Component + ": Redis answers again")
	}
}

// outcome carries a goroutine-bounded call's results back to its caller.
type outcome[T any] struct {
	v   T
	err error
}

func bound[T any](ctx context.Context, c *Client, timeout time.Duration, fn func(context.Context, redis.UniversalClient) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if c.mode == modeContext {
		v, err := fn(ctx, c.rdb)
		if err != nil && ended(ctx) && !errors.Is(err, context.DeadlineExceeded) {
			// go-redis reports the deadline as the socket's i/o timeout, a moment before the
			// context's own timer fires: say it as the goroutine mode does, so that the error
			// does not depend on the client's options.
			err = fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
		}
		return v, err
	}
	ch := make(chan outcome[T], 1)
	go func() {
		v, err := fn(ctx, c.rdb)
		ch <- outcome[T]{v, err}
	}()
	select {
	case o := <-ch:
		return o.v, o.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err() // fn finishes in the background; its results are dropped
	}
}

// secretScript returns the value of KEYS[1], setting it to ARGV[1] first if it has none.
var secretScript = NewScript(`local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]`)

// Secret returns the key of the store's keyed hashes (see rediskey.Digest): Config.Secret when
// set; otherwise a random secret kept in Redis under Prefix+"secret", created by the first
// instance that asks, so that every instance sharing the Redis hashes alike. It is read once
// and kept; until Redis answers, it returns an error wrapping the package's ErrUnavailable.
//
// A Redis restarted without persistence, or one that evicted the key, has lost it: after each
// outage the first call writes this instance's secret back if the key is gone, so that
// instances starting later read the same one, and logs a warning if Redis holds another (an
// instance started meanwhile made its own; only a configured Secret rules that out).
func (c *Client) Secret(ctx context.Context) ([]byte, error) {
	if s := c.secret.Load(); s != nil {
		if len(c.cfg.Secret) == 0 && c.reassert.Load() && c.reassert.CompareAndSwap(true, false) {
			c.keepSecret(ctx, *s)
		}
		return *s, nil
	}
	v, err := c.readSecret(ctx, rand.Text()+rand.Text())
	if err != nil {
		return nil, err
	}
	b := []byte(v)
	c.secret.CompareAndSwap(nil, &b)
	return *c.secret.Load(), nil
}

// readSecret returns the secret Redis holds, storing proposed first if it holds none.
func (c *Client) readSecret(ctx context.Context, proposed string) (string, error) {
	call := &ScriptCall{Args: []any{1, c.cfg.Prefix + "secret", proposed}}
	if err := c.Run(ctx, secretScript, []*ScriptCall{call}); err != nil {
		return "", err
	}
	v, err := call.Cmd.Text()
	if err != nil || v == "" {
		return "", fmt.Errorf("%w: reading the hash secret: %q, %v", c.cfg.Unavailable, v, err)
	}
	return v, nil
}

// keepSecret writes the secret this instance uses back to Redis if Redis lost it, and warns
// if Redis holds another. A failed attempt is made again at the next call.
func (c *Client) keepSecret(ctx context.Context, mine []byte) {
	v, err := c.readSecret(ctx, string(mine))
	switch {
	case err != nil:
		c.reassert.Store(true)
	case v != string(mine):
		c.cfg.Logger.Warn(c.cfg.Component+": the hash secret in Redis is not this instance's "+
			"(Redis lost it and another instance made a new one); set RedisConfig.Secret on every instance",
			"key", c.cfg.Prefix+"secret")
	}
}
