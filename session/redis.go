package session

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/internal/redisclient"
	"github.com/outgrow/outgrow/internal/rediskey"
)

var (
	//go:embed load.lua
	loadSource string
	//go:embed commit.lua
	commitSource string
	//go:embed user.lua
	userSource string
	//go:embed index.lua
	indexSource string

	loadScript   = redisclient.NewScript(loadSource)
	commitScript = redisclient.NewScript(commitSource)
	userScript   = redisclient.NewScript(userSource)
	indexScript  = redisclient.NewScript(indexSource)
)

// RedisConfig configures a [RedisStore]. The zero value is ready to use; a RedisConfig is a
// plain value, and NewRedisStore copies it.
//
// Create the client with ContextTimeoutEnabled: true (redis.Options, redis.ClusterOptions,
// redis.FailoverOptions): go-redis then stops each call at its deadline. Without it, each call
// runs on a goroutine of its own so that the store can stop waiting at the deadline.
type RedisConfig struct {
	// Prefix starts every key. It must not contain '{' or '}'. Default: "session:".
	Prefix string
	// Timeout bounds each store operation. Default: 100ms.
	Timeout time.Duration
	// FailFastAfter is how many consecutive failed operations make the store fail fast: then
	// operations return ErrUnavailable at once, without calling Redis, for RetryInterval, one
	// operation probes Redis, and the first success ends the outage. Default: 3.
	FailFastAfter int
	// RetryInterval is how long the store fails fast before it probes Redis again.
	// Default: 500ms.
	RetryInterval time.Duration
	// Secret keys the hash of user IDs (HMAC-SHA256) that names a user's index and tags the
	// user's session IDs, so that neither a key name nor a logged cookie can be tied to a user
	// ID without it. Every instance sharing the sessions must use the same Secret, or leave it
	// empty: the first instance then stores a random secret in Redis at Prefix+"secret" and
	// every instance reads it once and keeps it, so that a fleet needs no configuration. Keep
	// that key: it has no TTL, but an allkeys-* eviction policy or a restart without
	// persistence removes it. After such an outage the running instances write theirs back at
	// their first operation, but an instance that starts before they do makes a new one (and
	// they log a warning); List, Revoke and DestroyAll on one then miss the sessions logged in
	// on the other until every instance has restarted. Set Secret where that can happen. A new
	// secret does not end existing sessions. Default: a random secret kept in Redis.
	Secret []byte
	// Logger receives the store's outage transitions: Redis failing (FailFastAfter operations
	// in a row failed) and answering again; never a line per request. A Manager over the store
	// adds no line of its own about them. Default: slog.Default().
	Logger *slog.Logger
}

// RedisStore is a [Store] in Redis, shared by every instance of a service, so that any instance
// can serve any request. It works on standalone Redis, Sentinel and Cluster through any
// [redis.UniversalClient], and never closes the client. Its keys are described in the package
// documentation (Redis keys).
//
// Loading a session and sliding its idle deadline is one script call; committing a request's
// changes is one script call that writes only the fields that changed, so concurrent requests
// changing different keys of one session all keep their changes. Deadlines follow Redis's clock
// (key expiry and TIME), so instance clocks do not matter. Scripts run on the primary even when
// the client routes reads to replicas: a session is never read from a replica that has not seen
// its last write. A user's index is changed by the same scripts as the user's sessions,
// atomically.
//
// The zero value is not usable; create a RedisStore with [NewRedisStore]. It is safe for
// concurrent use and has no goroutine.
type RedisStore struct {
	rc *redisclient.Client
}

var _ Store = (*RedisStore)(nil)

// RedisStats is a snapshot of a [RedisStore]'s counters; a plain value.
type RedisStats struct {
	Calls     uint64 // round trips sent to Redis
	Failures  uint64 // round trips that failed: error or timeout
	FastFails uint64 // operations refused without reaching Redis during an outage
	Down      bool   // Redis is considered unavailable right now: operations fail fast
}

// Stats returns a snapshot of the store's counters.
func (s *RedisStore) Stats() RedisStats {
	st := s.rc.Stats()
	return RedisStats{Calls: st.Calls, Failures: st.Failures, FastFails: st.FastFails, Down: st.Down}
}

// NewRedisStore returns a RedisStore over rdb. Its error wraps ErrInvalidConfig and names the
// field at fault.
func NewRedisStore(rdb redis.UniversalClient, cfg RedisConfig) (*RedisStore, error) {
	rc, err := redisclient.New(rdb, redisclient.Config{
		Component: "session", Prefix: cfg.Prefix, DefaultPrefix: "session:",
		Timeout: cfg.Timeout, DefaultTimeout: 100 * time.Millisecond,
		RetryInterval: cfg.RetryInterval, FailFastAfter: cfg.FailFastAfter,
		Unavailable: ErrUnavailable, Logger: cfg.Logger, Secret: cfg.Secret,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return &RedisStore{rc: rc}, nil
}

// sessionKey is the key of the session of id.
func (s *RedisStore) sessionKey(id string) string { return sessionKey(s.rc.Prefix(), id) }

// indexKey is prefix{tag}:u:digest: the index of the user whose keyed digest it is, in the
// slot of the sessions of tag.
func (s *RedisStore) indexKey(tag, userDigest string) string {
	return rediskey.Key(s.rc.Prefix(), tag, ":u:"+userDigest)
}

// logsOutages: the store's Redis client logs outages to RedisConfig.Logger (see selfLogging).
func (*RedisStore) logsOutages() {}

func ms(v int64) time.Time { return time.UnixMilli(v) }

// Load implements [Store].
func (s *RedisStore) Load(ctx context.Context, id string) (Record, error) {
	if !validID(id) {
		return Record{}, ErrNotFound
	}
	call := &redisclient.ScriptCall{Args: []any{1, s.sessionKey(id)}}
	if err := s.rc.Run(ctx, loadScript, []*redisclient.ScriptCall{call}); err != nil {
		return Record{}, err
	}
	vals, err := call.Cmd.Slice()
	if err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if len(vals) == 0 {
		return Record{}, ErrNotFound
	}
	exp, _ := vals[0].(int64)
	packed, _ := vals[1].(string)
	r, ok := unpack([]byte(packed), vals[2:])
	if !ok {
		return Record{}, fmt.Errorf("%w: malformed session data", ErrUnavailable)
	}
	r.ID, r.Expires = id, ms(exp)
	return r, nil
}

// unpack reads the fields of a session from load.lua's reply: b is every field and value
// concatenated, lens their lengths (int64). Values are slices of b, which the Record owns.
func unpack(b []byte, lens []any) (Record, bool) {
	if len(lens)%2 != 0 {
		return Record{}, false
	}
	r := Record{Values: make(map[string][]byte, len(lens)/2)}
	next := func(n any) ([]byte, bool) {
		i, ok := n.(int64)
		if !ok || i < 0 || i > int64(len(b)) {
			return nil, false
		}
		v := b[:i:i]
		b = b[i:]
		return v, true
	}
	for i := 0; i < len(lens); i += 2 {
		f, ok := next(lens[i])
		if !ok {
			return Record{}, false
		}
		v, ok := next(lens[i+1])
		if !ok {
			return Record{}, false
		}
		switch {
		case len(f) > 0 && f[0] == '.':
			r.Values[string(f[1:])] = v
		case string(f) == "_c":
			n, _ := strconv.ParseInt(string(v), 10, 64)
			r.Created = ms(n)
		case string(f) == "_a":
			n, _ := strconv.ParseInt(string(v), 10, 64)
			r.Deadline = ms(n)
		case string(f) == "_u":
			r.User = string(v)
		}
	}
	return r, len(b) == 0
}

// Commit implements [Store]. It is one script call, one round trip: the session, its renewed
// key and its user's index share a hash tag. (The first commit of a user's session in a
// process may read the secret first.)
func (s *RedisStore) Commit(ctx context.Context, c *Change) (Record, error) {
	if err := checkChange(c); err != nil {
		return Record{}, err
	}
	user := "" // the digest naming the user's index
	if c.User != "" {
		secret, err := s.rc.Secret(ctx)
		if err != nil {
			return Record{}, err
		}
		user = userDigest(secret, c.User)
	}
	p := place(c, user)
	key := s.sessionKey(p.id)
	newKey, index := key, key
	if p.newID != "" {
		newKey = s.sessionKey(p.newID)
	}
	if user != "" {
		index = s.indexKey(p.id[:tagLen], user)
	}
	bool01 := func(b bool) string {
		if b {
			return "1"
		}
		return "0"
	}
	// Each value put in an interface costs an allocation: the key, usually also the new key and
	// the index, is boxed once.
	boxed := any(key)
	keys := [3]any{boxed, boxed, boxed}
	if newKey != key {
		keys[1] = newKey
	}
	if index != key {
		keys[2] = index
	}
	args := make([]any, 0, 10+2*len(c.Set)+len(c.Del))
	args = append(args, 3, keys[0], keys[1], keys[2], bool01(c.Create), bool01(c.Destroy),
		c.Lifetime.Milliseconds(), max(1, c.Idle.Milliseconds()), c.User, len(c.Set))
	for k, v := range c.Set {
		args = append(args, "."+k, v)
	}
	for _, k := range c.Del {
		args = append(args, "."+k)
	}
	call := &redisclient.ScriptCall{Args: args}
	if err := s.rc.Run(ctx, commitScript, []*redisclient.ScriptCall{call}); err != nil {
		return Record{}, err
	}
	v, err := call.Cmd.Slice()
	if err != nil || len(v) == 0 {
		return Record{}, fmt.Errorf("%w: unexpected reply %v: %v", ErrUnavailable, v, err)
	}
	if ok, _ := v[0].(int64); ok != 1 {
		return Record{}, ErrNotFound
	}
	if c.Destroy || len(v) < 3 {
		return Record{}, nil
	}
	abs, _ := v[1].(int64)
	exp, _ := v[2].(int64)
	return Record{ID: p.current(), Deadline: ms(abs), Expires: ms(exp)}, nil
}

// User implements [Store]: the index read on the primary, then one script over the index and
// every session it names (they share a slot) that lists them and, with destroy, deletes them; if
// a login or renewal changed the index in between, the script refuses and User reads it again.
func (s *RedisStore) User(ctx context.Context, q UserQuery) ([]Info, error) {
	secret, err := s.rc.Secret(ctx)
	if err != nil {
		return nil, err
	}
	digest := userDigest(secret, q.User)
	index := s.indexKey(digest[:tagLen], digest)
	for range 8 {
		members, err := s.indexMembers(ctx, index)
		if err != nil {
			return nil, err
		}
		infos, ok, err := s.userSessions(ctx, index, members, q)
		if err != nil || ok {
			return infos, err
		}
	}
	return nil, fmt.Errorf("%w: the sessions of a user keep changing", ErrUnavailable)
}

// indexMembers reads a user's index, on the primary.
func (s *RedisStore) indexMembers(ctx context.Context, index string) ([]string, error) {
	read := &redisclient.ScriptCall{Args: []any{1, index}}
	if err := s.rc.Run(ctx, indexScript, []*redisclient.ScriptCall{read}); err != nil {
		return nil, err
	}
	members, err := read.Cmd.StringSlice()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return members, nil
}

// userSessions runs user.lua over the index and the sessions it held when read. ok is false
// when the index has changed since: nothing was done.
func (s *RedisStore) userSessions(ctx context.Context, index string, members []string, q UserQuery) (infos []Info, ok bool, err error) {
	args := make([]any, 0, 3+len(members)+len(q.Handles))
	args = append(args, 1+len(members), index)
	for _, m := range members {
		args = append(args, m)
	}
	if !q.Destroy {
		args = append(args, "0")
	} else {
		args = append(args, "1")
		for _, h := range q.Handles {
			args = append(args, h)
		}
	}
	call := &redisclient.ScriptCall{Args: args}
	if err := s.rc.Run(ctx, userScript, []*redisclient.ScriptCall{call}); err != nil {
		return nil, false, err
	}
	v, err := call.Cmd.Slice()
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if len(v) == 1 {
		return nil, false, nil // {-1}: the index changed under us
	}
	infos = make([]Info, 0, len(v)/4)
	for i := 0; i+3 < len(v); i += 4 {
		k, _ := v[i].(string)
		c, _ := v[i+1].(int64)
		a, _ := v[i+2].(int64)
		e, _ := v[i+3].(int64)
		infos = append(infos, Info{Handle: keyHandle(k), Created: ms(c), Deadline: ms(a), Expires: ms(e)})
	}
	sortInfos(infos)
	return infos, true, nil
}
