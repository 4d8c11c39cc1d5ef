package balancer

import (
	"context"
	"crypto/rand"
	_ "embed"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/internal/redisclient"
	"github.com/outgrow/outgrow/internal/rediskey"
)

// The registry's scripts, each prefixed with the helpers of registry_lib.lua (key layout and
// announcements in its header).
var (
	//go:embed registry_lib.lua
	registryLibLua string
	//go:embed registry_heartbeat.lua
	heartbeatLua string
	//go:embed registry_members.lua
	membersLua string
	//go:embed registry_deregister.lua
	deregisterLua string

	heartbeatScript  = redisclient.NewScript(registryLibLua + heartbeatLua)
	membersScript    = redisclient.NewScript(registryLibLua + membersLua)
	deregisterScript = redisclient.NewScript(registryLibLua + deregisterLua)
)

// RedisConfig configures a [RedisStore]. The zero value is ready to use; a RedisConfig is a
// plain value, and NewRedisStore copies it.
//
// Create the client with ContextTimeoutEnabled: true (redis.Options, redis.ClusterOptions,
// redis.FailoverOptions): go-redis then stops each call at its deadline. Without it, each call
// runs on a goroutine of its own so that the store can stop waiting at the deadline.
type RedisConfig struct {
	// Prefix starts every key and channel. It must not contain '{' or '}'. Default:
	// "balancer:".
	Prefix string
	// Timeout bounds one call to Redis (a heartbeat, a deregistration, a read of the members).
	// Default: 100ms.
	Timeout time.Duration
	// FailFastAfter is how many consecutive failed calls make the store fail fast: it then
	// answers ErrUnavailable at once, without calling Redis, for RetryInterval, before one call
	// tries Redis again. Default: 3.
	FailFastAfter int
	// RetryInterval is how long the store fails fast before it tries Redis again. Default:
	// 500ms.
	RetryInterval time.Duration
	// Logger receives the store's state changes: Redis failing and answering again, a
	// subscription lost and made again. Default: slog.Default().
	Logger *slog.Logger
}

// RedisStore is a registry [Store] in Redis, shared by every instance of a service. It works on
// standalone Redis, Sentinel and Cluster through any [redis.UniversalClient], and never closes
// the client.
//
// Each service's registry lives under one hash tag, Prefix{service} (one Cluster slot per
// service): a sorted set of its members by expiry, a hash of their weights and an epoch, and a
// channel of announcements; see the package documentation. A heartbeat, a deregistration and
// a read of the members are one script call each (one round trip; two the first time a
// server meets the script), reading the time from Redis TIME. Each [Registry.Watch] holds one
// subscription (one connection) for as long as it runs.
//
// The zero value is not usable; create a RedisStore with [NewRedisStore]. It is safe for
// concurrent use and has no goroutine of its own (a Watch's subscription is the Watch's), hence
// no Close.
type RedisStore struct {
	rc *redisclient.Client
	id string // random: with Redis TIME, the epoch a heartbeat sets when Redis holds none
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a RedisStore over rdb. Its error wraps ErrInvalidConfig and names the
// field at fault.
func NewRedisStore(rdb redis.UniversalClient, cfg RedisConfig) (*RedisStore, error) {
	rc, err := redisclient.New(rdb, redisclient.Config{
		Component: "balancer", Prefix: cfg.Prefix, DefaultPrefix: "balancer:",
		Timeout: cfg.Timeout, DefaultTimeout: 100 * time.Millisecond,
		RetryInterval: cfg.RetryInterval, FailFastAfter: cfg.FailFastAfter,
		Unavailable: ErrUnavailable, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return &RedisStore{rc: rc, id: rand.Text()}, nil
}

func (s *RedisStore) registry() registryBackend { return s }

// Stats returns a snapshot of the store's counters.
func (s *RedisStore) Stats() StoreStats {
	st := s.rc.Stats()
	return StoreStats{Calls: st.Calls, Failures: st.Failures, FastFails: st.FastFails, Down: st.Down}
}

// keys returns the numkeys and KEYS of a service's scripts, then its channel.
func (s *RedisStore) keys(service string) []any {
	p := s.rc.Prefix()
	return []any{3, rediskey.Key(p, service, ":members"), rediskey.Key(p, service, ":info"),
		rediskey.Key(p, service, ":epoch"), rediskey.Key(p, service, ":events")}
}

// run calls script once with args and returns its reply.
func (s *RedisStore) run(ctx context.Context, script *redisclient.Script, args []any) (*redis.Cmd, error) {
	call := &redisclient.ScriptCall{Args: args}
	if err := s.rc.Run(ctx, script, []*redisclient.ScriptCall{call}); err != nil {
		return nil, err
	}
	return call.Cmd, nil
}

// runFlag calls a script whose reply is 1 or 0, and reports whether it was 1.
func (s *RedisStore) runFlag(ctx context.Context, script *redisclient.Script, args []any) (bool, error) {
	cmd, err := s.run(ctx, script, args)
	if err != nil {
		return false, err
	}
	n, err := cmd.Int()
	if err != nil {
		return false, fmt.Errorf("%w: unexpected reply: %w", ErrUnavailable, err)
	}
	return n == 1, nil
}

func (s *RedisStore) heartbeat(ctx context.Context, service string, m member, ttl time.Duration) (bool, error) {
	return s.runFlag(ctx, heartbeatScript, append(s.keys(service),
		m.ID, strconv.Itoa(m.Weight), m.token, max(ttl.Milliseconds(), 1), s.id))
}

func (s *RedisStore) deregister(ctx context.Context, service, id, token string) (bool, error) {
	k := s.keys(service)
	return s.runFlag(ctx, deregisterScript, []any{2, k[1], k[2], k[4], id, token})
}

func (s *RedisStore) members(ctx context.Context, service string) (view, error) {
	cmd, err := s.run(ctx, membersScript, s.keys(service))
	if err != nil {
		return view{}, err
	}
	reply, err := cmd.StringSlice()
	if err != nil || len(reply)%2 != 1 {
		return view{}, fmt.Errorf("%w: members reply: %d values, %v", ErrUnavailable, len(reply), err)
	}
	v := view{epoch: reply[0], members: make([]Backend, 0, len(reply)/2)}
	for i := 1; i < len(reply); i += 2 {
		w, err := strconv.Atoi(reply[i+1])
		if err != nil || reply[i] == "" {
			continue // not written by this package: skipped, not fatal
		}
		v.members = append(v.members, Backend{ID: reply[i], Weight: clampWeight(w)})
	}
	slices.SortFunc(v.members, func(a, b Backend) int { return strings.Compare(a.ID, b.ID) })
	return v, nil
}

// subscribe listens to the service's channel on a subscription of its own, waiting at most
// Timeout for Redis to confirm it: later, the confirmation tells l that announcements may
// have been lost.
func (s *RedisStore) subscribe(service string, l listener) func() {
	sub := s.rc.Subscribe(redisclient.SubscribeConfig{
		Channel: s.keys(service)[4].(string),
		OnMessage: func(payload string) {
			if e, ok := parseEvent(payload); ok {
				l.event(e)
			}
		},
		OnSubscribed: l.subscribed,
	})
	sub.WaitReady(s.rc.Timeout())
	return sub.Close
}
