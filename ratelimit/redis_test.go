package ratelimit

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

// holdStore is a miniredis store with the Cluster protocol forced on (each key as if in a slot
// of its own) and the clock set by the test.
func holdStore(t *testing.T, cfg RedisConfig) (*miniredis.Miniredis, *RedisStore) {
	t.Helper()
	m, s := miniStore(t, cfg)
	m.SetTime(miniStart)
	s.holds = true
	return m, s
}

// miniStart is when the clock of the miniredis of a test starts.
var miniStart = time.Now().Truncate(time.Second)

// hold places holds on reqs as another request's first phase would, and returns the batch,
// to release them.
func hold(t *testing.T, s *RedisStore, reqs ...request) *batch {
	t.Helper()
	ctx := context.Background()
	secret, err := s.rc.Secret(ctx)
	require.NoError(t, err)
	b := &batch{s: s, reqs: reqs, out: make([]outcome, len(reqs)), keys: make([]string, len(reqs)), id: "other"}
	for i := range reqs {
		b.keys[i] = s.key(secret, &reqs[i])
	}
	b.groups = s.group(b.keys, nil)
	calls := b.calls(argReserve)
	require.NoError(t, s.rc.Run(ctx, script, calls))
	for k, g := range b.groups {
		denied, busy, err := b.decode(g, calls[k].Cmd)
		require.NoError(t, err)
		require.False(t, denied || busy, "the hold was placed")
	}
	return b
}

// TestHeldUnitsAreBusyNotDenied: units held by another request's first phase make a request
// wait, not fail: it is granted once they are released; if they are not settled by its
// Timeout, it is denied with RetryAfter = Timeout, reporting the units the key really has, and
// the denial is not cached.
func TestHeldUnitsAreBusyNotDenied(t *testing.T) {
	_, s := holdStore(t, RedisConfig{Timeout: 40 * time.Millisecond})
	login := newLimiter(t, s, PerHour(3), Config{Name: "login"})
	ctx := context.Background()
	h := hold(t, s, login.request("ip", 3))

	start := time.Now()
	r, err := login.Allow(ctx, "ip")
	require.NoError(t, err)
	assert.False(t, r.Allowed, "the units are held until after the deadline")
	assert.Equal(t, 40*time.Millisecond, r.RetryAfter, "a short wait, not the key's interval")
	assert.Equal(t, 3, r.Remaining, "the key's own state has its 3 units")
	assert.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond, "it retried for about its Timeout")

	h.undo(ctx, nil, indexes(len(h.groups)))
	r, err = login.Allow(ctx, "ip")
	require.NoError(t, err)
	assert.True(t, r.Allowed, "the busy denial was not cached")
	assert.Zero(t, login.Stats().DenyCacheHits)

	// Released while the request waits: it is granted.
	h = hold(t, s, login.request("ip", 2))
	other := newLimiter(t, s, PerHour(3), Config{Name: "login"}) // another instance's
	done := make(chan Result)
	go func() {
		r, _ := other.Allow(ctx, "ip")
		done <- r
	}()
	time.Sleep(5 * time.Millisecond)
	h.undo(ctx, nil, indexes(len(h.groups)))
	assert.True(t, (<-done).Allowed, "granted once the holds are released")
}

// TestHoldsLapse: the holds of an instance that died between the phases lapse after a few
// Timeouts, and the units are available again.
func TestHoldsLapse(t *testing.T) {
	m, s := holdStore(t, RedisConfig{Timeout: time.Second})
	login := newLimiter(t, s, PerHour(3), Config{Name: "login", DisableDenyCache: true})
	hold(t, s, login.request("ip", 3)) // never released
	m.SetTime(miniStart.Add(4*time.Second + time.Millisecond))
	m.FastForward(4*time.Second + time.Millisecond)
	r, err := login.Allow(context.Background(), "ip")
	require.NoError(t, err)
	assert.True(t, r.Allowed, "the lapsed hold no longer counts")
	keys, err := s.rc.Redis().Keys(context.Background(), "*:holds").Result()
	require.NoError(t, err)
	assert.Empty(t, keys, "hold sets expire with their last hold")
}

// TestHoldsAcrossSlots: a request over keys in different slots holds, then commits (two round
// trips); when one slot denies, the others release their holds and keep their state (two round
// trips); a request whose keys share a slot is one round trip. On a single node without the
// protocol, any request is one round trip.
func TestHoldsAcrossSlots(t *testing.T) {
	_, s := holdStore(t, RedisConfig{})
	global := newLimiter(t, s, PerHour(5), Config{Name: "global"})
	login := newLimiter(t, s, PerHour(1), Config{Name: "login"})
	apikey := newLimiter(t, s, PerHour(5), Config{Name: "apikey"})
	ctx := context.Background()
	_, _ = global.Peek(ctx, "warm") // fetches the hash secret

	roundTrips := func(layers ...Layer) (Decision, uint64) {
		before := s.Stats().Calls
		d, err := AllowAll(ctx, layers...)
		require.NoError(t, err)
		return d, s.Stats().Calls - before
	}
	d, n := roundTrips(Layer{Limiter: global, Key: "ip"}, Layer{Limiter: login, Key: "ip"})
	assert.True(t, d.Allowed)
	assert.Equal(t, uint64(1), n, "one key, two policies: one slot, one call")

	d, n = roundTrips(Layer{Limiter: global, Key: "ip"}, Layer{Limiter: apikey, Key: "k"})
	assert.True(t, d.Allowed)
	assert.Equal(t, uint64(2), n, "two slots: hold, then commit")
	assert.Equal(t, []int{3, 4}, []int{d.Results[0].Remaining, d.Results[1].Remaining}, "the results are after the charge")

	d, n = roundTrips(Layer{Limiter: apikey, Key: "k"}, Layer{Limiter: login, Key: "ip"})
	assert.False(t, d.Allowed)
	assert.Equal(t, []string{"login"}, d.Denied)
	assert.Equal(t, uint64(2), n, "hold, then release")
	assert.True(t, d.Results[0].Allowed)
	assert.Equal(t, 4, d.Results[0].Remaining, "apikey reports its units, uncharged")
	p, err := apikey.Peek(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, 4, p.Remaining, "apikey was not charged")
	keys, err := s.rc.Redis().Keys(ctx, "*:holds").Result()
	require.NoError(t, err)
	assert.Empty(t, keys, "the holds were released")

	s.holds = false
	d, n = roundTrips(Layer{Limiter: global, Key: "ip2"}, Layer{Limiter: apikey, Key: "k2"})
	assert.True(t, d.Allowed)
	assert.Equal(t, uint64(1), n, "a single node: one call for any keys")
}

// TestClusterRoundTrips: on a real Cluster, the policies of one key are one call and keys in
// different slots two.
func TestClusterRoundTrips(t *testing.T) {
	if !slices.Contains(redistest.Kinds(), redistest.Cluster) {
		t.Skip("no Cluster configured (" + redistest.EnvCluster + ")")
	}
	b := redistest.Open(t, redistest.Cluster)
	s, err := NewRedisStore(b.Client, RedisConfig{Prefix: b.Prefix, Timeout: time.Second})
	require.NoError(t, err)
	require.True(t, s.holds)
	global := newLimiter(t, s, PerHour(5), Config{Name: "global"})
	login := newLimiter(t, s, Limit{Rate: 1, Period: time.Hour, Strict: true}, Config{Name: "login"})
	ctx := context.Background()
	_, _ = global.Peek(ctx, "warm")
	for _, tc := range []struct {
		keys  [2]string
		calls uint64
	}{{[2]string{"ip", "ip"}, 1}, {[2]string{"ip2", "other-ip"}, 2}} {
		before := s.Stats().Calls
		d, err := AllowAll(ctx, Layer{Limiter: global, Key: tc.keys[0]}, Layer{Limiter: login, Key: tc.keys[1]})
		require.NoError(t, err)
		assert.True(t, d.Allowed)
		assert.Equal(t, tc.calls, s.Stats().Calls-before, "keys %v", tc.keys)
	}
}
