package ratelimit

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/rediskey"
	"github.com/outgrow/outgrow/internal/redistest"
)

// The keys of the privacy tests: personal data and a credential.
const (
	privateIP   = "203.0.113.9"
	privateUser = "ada@example.com"
	privateKey  = "sk_live_8f2c41a9"
)

// TestRedisKeyNamesHoldNoKeys: key material never appears in Redis key names: every key is
// prefix{digest}:policy, the digest a keyed hash of the key, for GCRA and strict limits alike.
func TestRedisKeyNamesHoldNoKeys(t *testing.T) {
	redistest.Each(t, func(t *testing.T, b redistest.Backend) {
		if !b.IsRedis() {
			return
		}
		s, err := NewRedisStore(b.Client, RedisConfig{Prefix: b.Prefix})
		require.NoError(t, err)
		ctx := context.Background()
		global := newLimiter(t, s, PerMinute(100), Config{Name: "global"})
		login := newLimiter(t, s, Limit{Rate: 5, Period: time.Minute, Strict: true}, Config{Name: "login"})
		apikey := newLimiter(t, s, PerMinute(100), Config{Name: "apikey", SecretKeys: true})
		d, err := AllowAll(ctx, Layer{Limiter: global, Key: privateIP}, Layer{Limiter: login, Key: privateUser},
			Layer{Limiter: apikey, Key: privateKey})
		require.NoError(t, err)
		require.True(t, d.Allowed)

		names := scanKeys(t, b.Client, b.Prefix)
		require.Len(t, names, 4, "three states and the shared secret: %v", names)
		tag := regexp.QuoteMeta(b.Prefix) + `\{[A-Za-z0-9_-]{22}\}:`
		shape := regexp.MustCompile(`^(` + tag + `(global|apikey|login:log)|` + regexp.QuoteMeta(b.Prefix) + `secret)$`)
		for _, name := range names {
			assert.Regexp(t, shape, name)
			for _, private := range []string{privateIP, privateUser, privateKey, "203.0.113", "ada", "sk_live"} {
				assert.NotContains(t, name, private)
			}
		}
	})
}

func scanKeys(t *testing.T, rdb redis.UniversalClient, prefix string) []string {
	t.Helper()
	ctx := context.Background()
	var names []string
	var mu sync.Mutex
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, "*", 1000).Iterator()
		for iter.Next(ctx) {
			if strings.HasPrefix(iter.Val(), prefix) {
				mu.Lock()
				names = append(names, iter.Val())
				mu.Unlock()
			}
		}
		return iter.Err()
	}
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		require.NoError(t, cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) }))
	} else {
		require.NoError(t, scan(ctx, rdb))
	}
	return names
}

// TestHashSecret: with RedisConfig.Secret the digest is the keyed hash under it, and stores
// share state exactly when they share the secret; without it, instances share the secret kept
// in Redis.
func TestHashSecret(t *testing.T) {
	m, _ := miniStore(t, RedisConfig{})
	open := func(secret string) *Limiter {
		c := redis.NewClient(&redis.Options{Addr: m.Addr()})
		t.Cleanup(func() { _ = c.Close() })
		s, err := NewRedisStore(c, RedisConfig{Secret: []byte(secret)})
		require.NoError(t, err)
		return newLimiter(t, s, PerHour(10), Config{Name: "global", DisableDenyCache: true})
	}
	ctx := context.Background()
	a, b, other := open("s3cret"), open("s3cret"), open("another")
	_, err := a.AllowN(ctx, privateIP, 4)
	require.NoError(t, err)
	assert.True(t, m.Exists("ratelimit:{"+rediskey.Digest([]byte("s3cret"), privateIP)+"}:global"))
	p, _ := b.Peek(ctx, privateIP)
	assert.Equal(t, 6, p.Remaining, "the same secret names the same key")
	p, _ = other.Peek(ctx, privateIP)
	assert.Equal(t, 10, p.Remaining, "another secret, another key")

	x, y := open(""), open("")
	_, err = x.AllowN(ctx, privateIP, 3)
	require.NoError(t, err)
	p, _ = y.Peek(ctx, privateIP)
	assert.Equal(t, 7, p.Remaining, "instances without a configured secret share the one kept in Redis")
	assert.True(t, m.Exists("ratelimit:secret"))
}

// TestHashSecretUnavailable: a store created while Redis is down cannot read its secret, so it
// is unavailable: the failure policies apply, and it is used, without a restart, as soon as
// Redis is back.
func TestHashSecretUnavailable(t *testing.T) {
	m, s := miniStore(t, RedisConfig{RetryInterval: time.Millisecond})
	closed := newLimiter(t, s, PerHour(10), Config{Name: "closed", FailurePolicy: FailClosed})
	local := newLimiter(t, s, PerHour(10), Config{Name: "local"})
	ctx := context.Background()
	m.Close()
	_, err := closed.Allow(ctx, privateIP)
	assert.ErrorIs(t, err, ErrUnavailable)
	r, err := local.Allow(ctx, privateIP)
	require.NoError(t, err)
	assert.True(t, r.Allowed, "decided on the local fallback")
	assert.True(t, local.Stats().Degraded)

	require.NoError(t, m.Restart())
	require.Eventually(t, func() bool {
		r, err := closed.Allow(ctx, privateIP)
		return err == nil && r.Allowed
	}, time.Second, 2*time.Millisecond)
	assert.True(t, m.Exists("ratelimit:secret"))
}

// TestSecretKeysInHooksAndLogs: the hooks of a Limiter whose keys are secrets receive a stable
// digest (the same on every instance, computable with KeyDigest), never the key; the package
// never logs keys.
func TestSecretKeysInHooksAndLogs(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	m, s := miniStore(t, RedisConfig{Logger: logger})
	var mu sync.Mutex
	var seen []string
	record := func(_ context.Context, key string, _ Result) { mu.Lock(); seen = append(seen, key); mu.Unlock() }
	hooks := Hooks{OnAllowed: record, OnLimited: record, OnDenyCacheHit: record}
	apikey := newLimiter(t, s, PerHour(1), Config{Name: "apikey", SecretKeys: true, Hooks: hooks, Logger: logger})
	other := newLimiter(t, memStore(t), PerHour(1), Config{Name: "apikey", SecretKeys: true})
	plain := newLimiter(t, s, PerHour(1), Config{Name: "ip", Hooks: hooks, Logger: logger})
	ctx := context.Background()
	for range 3 { // allowed, limited by Redis, limited by the deny cache
		_, err := apikey.Allow(ctx, privateKey)
		require.NoError(t, err)
	}
	m.SetError("ERR down")
	_, _ = apikey.Allow(ctx, "another-key") // an outage, logged
	m.SetError("")

	digest := apikey.KeyDigest(privateKey)
	assert.Len(t, digest, 22)
	assert.Equal(t, digest, other.KeyDigest(privateKey), "stable across instances and stores")
	assert.NotEqual(t, digest, apikey.KeyDigest("another-key"))
	mu.Lock()
	assert.Equal(t, []string{digest, digest, digest, digest, apikey.KeyDigest("another-key")}, seen[:5],
		"allowed, limited, deny cache hit and limited again, then the fallback's grant")
	seen = nil
	mu.Unlock()
	_, _ = plain.Allow(ctx, privateIP)
	mu.Lock()
	assert.Equal(t, []string{privateIP}, seen, "keys that are not secrets reach hooks as they are")
	mu.Unlock()
	assert.Contains(t, logs.String(), "failure policy", "the outage was logged")
	assert.NotContains(t, logs.String(), privateKey)
	assert.NotContains(t, logs.String(), "another-key")
}

// TestOnDecisionWithoutKey: OnDecision sees every decision (granted, denied by the store,
// denied by the deny cache, made by the failure policy) with its Result, and a Limiter with
// SecretKeys whose only hook is OnDecision computes no digest: its in-process decisions stay
// allocation-free.
func TestOnDecisionWithoutKey(t *testing.T) {
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, s := miniStore(t, RedisConfig{Logger: discard})
	var mu sync.Mutex
	var seen []string
	onDecision := func(_ context.Context, r Result) {
		mu.Lock()
		seen = append(seen, fmt.Sprint(r.Policy, " ", r.Allowed))
		mu.Unlock()
	}
	apikey := newLimiter(t, s, PerHour(1), Config{Name: "apikey", SecretKeys: true, Logger: discard,
		FailurePolicy: FailOpen, Hooks: Hooks{OnDecision: onDecision}})
	ctx := context.Background()
	for range 3 { // allowed, limited by Redis, limited by the deny cache
		_, err := apikey.Allow(ctx, privateKey)
		require.NoError(t, err)
	}
	m.SetError("ERR down")
	_, _ = apikey.Allow(ctx, "another-key") // granted by the failure policy
	m.SetError("")
	mu.Lock()
	assert.Equal(t, []string{"apikey true", "apikey false", "apikey false", "apikey true"}, seen)
	mu.Unlock()
	assert.Equal(t, uint64(1), apikey.Stats().DenyCacheHits)

	local := newLimiter(t, memStore(t), PerSecond(1e6), Config{Name: "apikey", SecretKeys: true,
		Hooks: Hooks{OnDecision: func(context.Context, Result) {}}})
	_, _ = local.Allow(ctx, privateKey)
	assert.Zero(t, testing.AllocsPerRun(100, func() { _, _ = local.Allow(ctx, privateKey) }))
	withKey := newLimiter(t, memStore(t), PerSecond(1e6), Config{Name: "apikey", SecretKeys: true,
		Hooks: Hooks{OnAllowed: func(context.Context, string, Result) {}}})
	_, _ = withKey.Allow(ctx, privateKey)
	assert.NotZero(t, testing.AllocsPerRun(100, func() { _, _ = withKey.Allow(ctx, privateKey) }),
		"OnAllowed gets a digest, which allocates: the check above can fail")
}
