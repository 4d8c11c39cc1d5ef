package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"

	"github.com/outgrow/outgrow/internal/rediskey"
)

// Errors returned by the package. Match them with [errors.Is].
var (
	// ErrInvalidConfig reports a configuration that cannot be used; the error names the field.
	ErrInvalidConfig = errors.New("ratelimit: invalid config")
	// ErrInvalidRequest reports a decision that cannot be made: an empty key, a cost below 1, a
	// layer without a Limiter, or no layer at all.
	ErrInvalidRequest = errors.New("ratelimit: invalid request")
	// ErrExceedsBurst reports a request for more units than its limit ever grants at once (the
	// Burst, or the Rate of a Strict limit): waiting would not help.
	ErrExceedsBurst = errors.New("ratelimit: cost exceeds burst")
	// ErrUnavailable reports that the store could not decide (Redis down, slow or refusing) and
	// the limiter's failure policy is FailClosed. The Result is a denial.
	ErrUnavailable = errors.New("ratelimit: store unavailable")
)

// FailurePolicy is what a [Limiter] does when its store cannot decide (Redis down, slow or
// refusing). The zero value is FailLocal.
type FailurePolicy int

const (
	// FailLocal decides in process memory, with Config.FallbackLimit, until the store answers
	// again. Every instance then limits on its own: to keep a global bound, set FallbackLimit to
	// the limit divided by the number of instances. Suits broad limits, such as requests per IP.
	// It is the zero value.
	FailLocal FailurePolicy = iota
	// FailOpen grants every request while the store is unavailable. Use it only where an outage
	// of the limit costs less than refusing traffic.
	FailOpen
	// FailClosed refuses every request while the store is unavailable, returning ErrUnavailable.
	// Suits limits that protect against abuse, such as login attempts: an outage must not open a
	// window for brute force.
	FailClosed
)

// String returns "local", "open" or "closed".
func (p FailurePolicy) String() string {
	switch p {
	case FailLocal:
		return "local"
	case FailOpen:
		return "open"
	case FailClosed:
		return "closed"
	}
	return fmt.Sprintf("FailurePolicy(%d)", int(p))
}

// Config configures a [Limiter]. The zero value is ready to use.
type Config struct {
	// Name names the policy in results, headers and Redis keys. It is made of letters, digits,
	// '_', '-' and '.', at most 64 bytes. Limiters sharing a store must have different names
	// unless they are meant to share state. Default: "default".
	Name string
	// FailurePolicy is what the Limiter does when its store cannot decide. Default: FailLocal.
	FailurePolicy FailurePolicy
	// FallbackLimit is the limit of FailLocal. Default: the Limiter's own limit.
	FallbackLimit Limit
	// DenyCacheSize bounds the local cache of keys known to be over their limit, which lets a
	// Limiter over a RedisStore refuse them again without calling Redis until their RetryAfter.
	// A MemoryStore never uses it. Default: 65536.
	DenyCacheSize int
	// DisableDenyCache makes every decision call the store.
	DisableDenyCache bool
	// SecretKeys says that the keys are secrets, such as API keys: hooks then receive
	// [Limiter.KeyDigest] of a key instead of the key. Redis key names never contain keys,
	// whatever this says.
	SecretKeys bool
	// Hooks observe decisions.
	Hooks Hooks
	// Logger receives the start and the end of the failure policy, never one line per request.
	// Default: slog.Default().
	Logger *slog.Logger
}

// Hooks are optional callbacks, called synchronously on the goroutine making the decision, so
// they must be fast and safe for concurrent use. The key they receive is the key of the
// decision, or its [Limiter.KeyDigest] under Config.SecretKeys. The zero value has no hooks.
type Hooks struct {
	// OnAllowed is called for each granted key.
	OnAllowed func(ctx context.Context, key string, r Result)
	// OnLimited is called for each denied key, including denials by the deny cache.
	OnLimited func(ctx context.Context, key string, r Result)
	// OnDenyCacheHit is called when the deny cache refuses a key without calling the store.
	OnDenyCacheHit func(ctx context.Context, key string, r Result)
	// OnDecision is called for every decision, granted or denied (by the deny cache too),
	// with its Result but not its key: observers that need no key (metrics, traces) cost a
	// Limiter with SecretKeys no digest per decision, as OnAllowed and OnLimited do.
	OnDecision func(ctx context.Context, r Result)
	// OnFallback is called when the Limiter starts applying its failure policy (entered true,
	// with the store's error) and when the store answers again (entered false, nil error).
	OnFallback func(ctx context.Context, entered bool, err error)
}

// Stats is a snapshot of a Limiter's counters, a value: it does not change after Stats returns.
type Stats struct {
	Allowed       uint64 // granted decisions, whoever made them
	Limited       uint64 // denied decisions, whoever made them
	DenyCacheHits uint64 // denials made by the deny cache, without calling the store
	Fallback      uint64 // decisions made by the failure policy
	StoreErrors   uint64 // store calls that failed, including those refused at once during an outage
	Degraded      bool   // the failure policy is in force right now
}

// Limiter applies one named Limit to keys, over a Store.
//
// The zero value is not usable; create a Limiter with [New]. A Limiter is safe for concurrent
// use and has no goroutine, so it needs no Close.
type Limiter struct {
	name     string
	rule     rule
	store    Store
	mem      *MemoryStore // store, when it is a MemoryStore: the allocation-free path
	memHash  uint64       // mem's hash of the policy
	memCount []memCount   // decisions of the allocation-free path, one per shard of mem
	local    *MemoryStore // the store's fallback, under FailLocal
	fbRule   rule
	policy   FailurePolicy
	deny     *denyCache
	secret   bool
	hooks    Hooks
	hooked   bool // OnDecision, OnAllowed or OnLimited is set
	logger   *slog.Logger

	degraded atomic.Bool
	counters [stripes]counter
}

const stripes = 8

// counter is padded to a cache line so that parallel decisions do not contend on one.
type counter struct {
	allowed, limited, denyHits, fallback, storeErrors atomic.Uint64
	_                                                 [24]byte
}

// New returns a Limiter applying limit to keys held in store. Its errors wrap ErrInvalidConfig
// and name the field at fault (a nil store too, as in every package).
func New(store Store, limit Limit, cfg Config) (*Limiter, error) {
	if store == nil {
		return nil, fmt.Errorf("%w: nil Store", ErrInvalidConfig)
	}
	r, err := newRule(limit, "Limit")
	if err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		cfg.Name = "default"
	}
	if err := checkName(cfg.Name); err != nil {
		return nil, err
	}
	switch {
	case cfg.FailurePolicy < FailLocal || cfg.FailurePolicy > FailClosed:
		return nil, fmt.Errorf("%w: Config.FailurePolicy %v is unknown", ErrInvalidConfig, cfg.FailurePolicy)
	case cfg.DenyCacheSize < 0:
		return nil, fmt.Errorf("%w: Config.DenyCacheSize %d must not be negative", ErrInvalidConfig, cfg.DenyCacheSize)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	l := &Limiter{name: cfg.Name, rule: r, store: store, policy: cfg.FailurePolicy, secret: cfg.SecretKeys,
		hooks: cfg.Hooks, hooked: cfg.Hooks.OnDecision != nil || cfg.Hooks.OnAllowed != nil || cfg.Hooks.OnLimited != nil, logger: cfg.Logger}
	l.mem, _ = store.(*MemoryStore)
	if l.mem != nil {
		l.memHash = l.mem.policyHash(l.name, r.Strict)
		l.memCount = make([]memCount, len(l.mem.shards))
		return l, nil
	}
	if cfg.FailurePolicy == FailLocal {
		l.local, l.fbRule = store.fallback(), r
		if cfg.FallbackLimit != (Limit{}) {
			if l.fbRule, err = newRule(cfg.FallbackLimit, "Config.FallbackLimit"); err != nil {
				return nil, err
			}
		}
	}
	if !cfg.DisableDenyCache {
		size := cfg.DenyCacheSize
		if size == 0 {
			size = 1 << 16
		}
		l.deny = newDenyCache(size)
	}
	return l, nil
}

func checkName(name string) error {
	if len(name) > 64 {
		return fmt.Errorf("%w: Config.Name %q is longer than 64 bytes", ErrInvalidConfig, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("%w: Config.Name %q: only letters, digits, '_', '-' and '.'", ErrInvalidConfig, name)
		}
	}
	return nil
}

// Name returns the policy name.
func (l *Limiter) Name() string { return l.name }

// Limit returns the limit applied.
func (l *Limiter) Limit() Limit { return l.rule.Limit }

// Allow is AllowN(ctx, key, 1).
func (l *Limiter) Allow(ctx context.Context, key string) (Result, error) {
	return l.AllowN(ctx, key, 1)
}

// AllowN takes n units for key if they are all available now, and reports the decision. A
// denial charges nothing. The error is non-nil for invalid input (ErrInvalidRequest, or
// ErrExceedsBurst for more units than the limit grants at once), when ctx ends first (the
// context's error), and under FailClosed when the store is unavailable (ErrUnavailable); the
// Result is then a denial.
func (l *Limiter) AllowN(ctx context.Context, key string, n int) (r Result, err error) {
	if l.mem != nil && key != "" && 0 < n && n <= l.rule.max {
		// The common in-process case: one shard lock, no allocation.
		q := request{policy: l.name, key: key, rule: &l.rule, n: n}
		l.mem.takeOne(l.mem.hashWith(l.memHash, key), &q, l.memCount, &r)
		if l.hooked {
			l.hook(ctx, key, r)
		}
		return r, nil
	}
	return l.allowN(ctx, key, n)
}

// allowN is AllowN through AllowAll's path (the deny cache, the store, the failure policy), in
// a function of its own so that AllowN's frame stays small for the in-process case.
func (l *Limiter) allowN(ctx context.Context, key string, n int) (Result, error) {
	if n < 1 { // a Layer would read 0 as 1
		return notEvaluated(l), fmt.Errorf("%w: cost %d must be at least 1 (policy %q)", ErrInvalidRequest, n, l.name)
	}
	var a allowAll
	a.layerBuf[0] = Layer{Limiter: l, Key: key, N: n}
	err := a.run(ctx, a.layerBuf[:1])
	return a.out[0].Result, err
}

// Peek reports whether one unit would be granted to key now, and how many remain, without
// taking any. When the store is unavailable, a FailLocal limiter peeks at its fallback; the
// others return ErrUnavailable.
func (l *Limiter) Peek(ctx context.Context, key string) (Result, error) {
	if key == "" {
		return notEvaluated(l), fmt.Errorf("%w: empty key (policy %q)", ErrInvalidRequest, l.name)
	}
	out := make([]outcome, 1)
	err := l.store.take(ctx, []request{{policy: l.name, key: key, rule: &l.rule}}, out)
	if err != nil && l.local != nil && ctx.Err() == nil && errors.Is(err, ErrUnavailable) {
		err = l.local.take(ctx, []request{{policy: l.name, key: key, rule: &l.fbRule}}, out)
	}
	if err != nil {
		return notEvaluated(l), err
	}
	return out[0].Result, nil
}

// Reset forgets key, granting it its full limit again. With a shared store, the deny caches of
// other instances keep refusing the key until its last RetryAfter there.
func (l *Limiter) Reset(ctx context.Context, key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key (policy %q)", ErrInvalidRequest, l.name)
	}
	if l.deny != nil {
		l.deny.forget(key)
	}
	if l.local != nil {
		_ = l.local.reset(ctx, request{policy: l.name, key: key, rule: &l.fbRule})
	}
	return l.store.reset(ctx, request{policy: l.name, key: key, rule: &l.rule})
}

// KeyDigest returns the digest that hooks receive in place of key under Config.SecretKeys: 22
// characters of a one-way hash, the same on every instance and in every process, so that a
// decision can be attributed to a known key (compute its digest and compare) while hooks, logs
// and metrics never hold the key itself. It is not keyed: anyone holding a candidate key can
// check it, so use it for keys too long to guess, such as API keys and tokens.
func (l *Limiter) KeyDigest(key string) string { return rediskey.Digest(hookDigestKey, key) }

// hookDigestKey separates the digests of hooks from any other use of the hash.
var hookDigestKey = []byte("outgrow/ratelimit: key digest")

// Stats returns a snapshot of the counters.
func (l *Limiter) Stats() Stats {
	var s Stats
	for i := range l.counters {
		c := &l.counters[i]
		s.Allowed += c.allowed.Load()
		s.Limited += c.limited.Load()
		s.DenyCacheHits += c.denyHits.Load()
		s.Fallback += c.fallback.Load()
		s.StoreErrors += c.storeErrors.Load()
	}
	if l.memCount != nil {
		a, d := l.mem.sumCounts(l.memCount)
		s.Allowed += a
		s.Limited += d
	}
	s.Degraded = l.degraded.Load()
	return s
}

// request asks for n units of key under the Limiter's rule.
func (l *Limiter) request(key string, n int) request {
	return request{policy: l.name, key: key, rule: &l.rule, n: n}
}

// notEvaluated is the Result of a layer nothing was decided for.
func notEvaluated(l *Limiter) Result {
	return Result{Policy: l.name, Limit: l.rule.Limit, Remaining: -1}
}

func (l *Limiter) counter() *counter { return &l.counters[rand.Uint32()%stripes] }

// observe counts a decision and calls the hooks.
func (l *Limiter) observe(ctx context.Context, key string, r Result, fallback bool) {
	c := l.counter()
	if fallback {
		c.fallback.Add(1)
	}
	if r.Allowed {
		c.allowed.Add(1)
	} else {
		c.limited.Add(1)
	}
	l.hook(ctx, key, r)
}

// hook calls OnDecision, then OnAllowed or OnLimited.
func (l *Limiter) hook(ctx context.Context, key string, r Result) {
	if h := l.hooks.OnDecision; h != nil {
		h(ctx, r)
	}
	if h := l.hooks.OnAllowed; r.Allowed && h != nil {
		h(ctx, l.hookKey(key), r)
	} else if h := l.hooks.OnLimited; !r.Allowed && h != nil {
		h(ctx, l.hookKey(key), r)
	}
}

// hookKey is what hooks receive for key.
func (l *Limiter) hookKey(key string) string {
	if l.secret {
		return l.KeyDigest(key)
	}
	return key
}

// storeFailed records a store error and enters the failure policy.
func (l *Limiter) storeFailed(ctx context.Context, err error) {
	l.counter().storeErrors.Add(1)
	if l.degraded.CompareAndSwap(false, true) {
		l.logger.Warn("ratelimit: store unavailable; applying the failure policy",
			"policy", l.name, "failure_policy", l.policy.String(), "err", err)
		if l.hooks.OnFallback != nil {
			l.hooks.OnFallback(ctx, true, err)
		}
	}
}

// storeAnswered leaves the failure policy.
func (l *Limiter) storeAnswered(ctx context.Context) {
	if l.degraded.Load() && l.degraded.CompareAndSwap(true, false) {
		l.logger.Info("ratelimit: store answers again; failure policy lifted", "policy", l.name)
		if l.hooks.OnFallback != nil {
			l.hooks.OnFallback(ctx, false, nil)
		}
	}
}
