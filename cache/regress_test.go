package cache

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

func memFx(t *testing.T) *fixture {
	return &fixture{t: t, b: redistest.Open(t, redistest.Memory), clock: newFakeClock()}
}

// A Cache[any] holding a nil value serves it without panicking.
func TestNilInterfaceValue(t *testing.T) {
	fx := memFx(t)
	c := newCache[any](t, fx.store(), Config{})
	require.NoError(t, c.Set(ctx, "k", nil))
	var v any = "not nil"
	var err error
	require.NotPanics(t, func() { v, err = c.Get(ctx, "k") })
	require.NoError(t, err)
	assert.Nil(t, v)
}

// A store freed by Close serves a Cache of another V from scratch.
func TestStoreReusedByAnotherType(t *testing.T) {
	fx := memFx(t)
	s := fx.store()
	c1, err := New[string](s, Config{})
	require.NoError(t, err)
	require.NoError(t, c1.Set(ctx, "k", "x"))
	require.NoError(t, c1.Close())
	c2 := newCache[int](t, s, Config{})
	require.NotPanics(t, func() { _, err = c2.Get(ctx, "k") })
	assert.ErrorIs(t, err, ErrNotFound, "the former Cache's entries are gone")
}

// blockCodec parks a read between fetching from Redis and filling the local layer.
type blockCodec struct {
	entered chan struct{}
	release chan struct{}
	armed   atomic.Bool
}

func (b *blockCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }
func (b *blockCodec) Unmarshal(d []byte, v any) error {
	if b.armed.CompareAndSwap(true, false) {
		close(b.entered)
		<-b.release
	}
	return json.Unmarshal(d, v)
}

// This instance's Set wins over a concurrent read that fetched the old value first.
func TestOwnSetBeatsConcurrentFill(t *testing.T) {
	fx := realRedis(t)
	other := newCache[user](t, fx.store(), Config{})
	require.NoError(t, other.Set(ctx, "k", user{Name: "old"}))
	bc := &blockCodec{entered: make(chan struct{}), release: make(chan struct{})}
	bc.armed.Store(true)
	c := newCache[user](t, fx.store(), Config{Codec: bc})
	got := make(chan user)
	go func() { v, _ := c.Get(ctx, "k"); got <- v }()
	<-bc.entered // Get read "old" from Redis and is decoding it
	require.NoError(t, c.Set(ctx, "k", user{Name: "new"}))
	close(bc.release)
	<-got
	v, err := c.Get(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, "new", v.Name, "L1 holds the value read before this instance's own Set")
}

// After a Delete, callers do not join a refresh that serves the old value.
func TestDeleteEndsStaleRefreshFlight(t *testing.T) {
	fx := memFx(t)
	c := newCache[string](t, fx.store(), Config{Policy: Policy{TTL: time.Second, StaleWhileRevalidate: time.Minute}})
	require.NoError(t, c.Set(ctx, "k", "v1"))
	fx.advance(2 * time.Second)
	release := make(chan struct{})
	slow := func(ctx context.Context, k string) (string, error) { <-release; return "", ErrNotFound }
	v, err := c.GetOrLoad(ctx, "k", slow)
	require.NoError(t, err)
	require.Equal(t, "v1", v) // stale, refresh started
	require.NoError(t, c.Delete(ctx, "k"))
	v, err = c.GetOrLoad(ctx, "k", func(ctx context.Context, k string) (string, error) { return "", ErrNotFound })
	close(release)
	assert.ErrorIs(t, err, ErrNotFound, "got %q after Delete", v)
}

// A written entry that was evicted still keeps out a fill that started before the write.
func TestEvictedWriteStillBlocksOlderFill(t *testing.T) {
	s, err := NewMemoryStore(MemoryConfig{MaxEntries: 64})
	require.NoError(t, err)
	c := newCache[string](t, s, Config{})
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = c.GetOrLoad(ctx, "k", func(ctx context.Context, k string) (string, error) {
			close(started)
			<-release
			return "old", nil // read from the source before the Set
		})
	}()
	<-started
	require.NoError(t, c.Set(ctx, "k", "new"))
	for i := range 200 {
		require.NoError(t, c.Set(ctx, fmt.Sprint("o", i), "x"))
	}
	close(release)
	<-done
	// "new" may have been evicted since; what must never be there is "old".
	v, err := c.Get(ctx, "k")
	assert.False(t, err == nil && v == "old", "L1 stores the load that started before the Set")
}

// Close during a load gives the Redis lease back, so other instances do not stall.
func TestCloseGivesLeaseBack(t *testing.T) {
	fx := realRedis(t)
	c, err := New[string](fx.store(), Config{LoadTimeout: 5 * time.Second})
	require.NoError(t, err)
	started := make(chan struct{})
	go func() {
		_, _ = c.GetOrLoad(ctx, "k", func(ctx context.Context, k string) (string, error) {
			close(started)
			<-ctx.Done()
			return "", ctx.Err()
		})
	}()
	<-started
	p0, _ := fx.b.Client.PTTL(ctx, c.leaseKey("k")).Result()
	t.Logf("lease PTTL before Close: %v", p0)
	require.NoError(t, c.Close())
	pttl, err := fx.b.Client.PTTL(ctx, c.leaseKey("k")).Result()
	require.NoError(t, err)
	assert.LessOrEqual(t, pttl, time.Duration(0), "lease still held for %v after Close", pttl)
}

// A huge TTL is capped: it never overflows into an instantly stale value.
func TestHugeTTL(t *testing.T) {
	fx := memFx(t)
	c := newCache[string](t, fx.store(), Config{})
	require.NoError(t, c.SetWithTTL(ctx, "k", "v", math.MaxInt64))
	v, err := c.Get(ctx, "k")
	assert.NoError(t, err)
	assert.Equal(t, "v", v)
}

// Stats: a stale local entry is no LocalHit, and a GetOrLoad that loads is a Miss.
func TestStatsCountStaleAsMiss(t *testing.T) {
	fx := memFx(t)
	c := newCache[string](t, fx.store(), Config{Policy: Policy{TTL: time.Second, StaleIfError: time.Minute}})
	require.NoError(t, c.Set(ctx, "k", "v"))
	fx.advance(2 * time.Second)
	_, err := c.Get(ctx, "k")
	require.ErrorIs(t, err, ErrNotFound)
	_, _ = c.GetOrLoad(ctx, "cold", func(ctx context.Context, k string) (string, error) { return "x", nil })
	st := c.Stats()
	t.Logf("LocalHits=%d Misses=%d Loads=%d", st.LocalHits, st.Misses, st.Loads)
	assert.Equal(t, uint64(0), st.LocalHits)
	assert.Equal(t, uint64(2), st.Misses)
}
