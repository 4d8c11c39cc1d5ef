package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

// TestRedisServerOutage stops a real redis-server under load and starts it again: decisions
// follow each limiter's failure policy, none waits much longer than the store's timeout, and the
// store is used again within about a second of the server's return.
func TestRedisServerOutage(t *testing.T) {
	srv := redistest.StartServer(t, 0)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer c.Close()
	store, err := NewRedisStore(c, RedisConfig{Timeout: 50 * time.Millisecond})
	require.NoError(t, err)
	global := newLimiter(t, store, PerSecond(100_000), Config{Name: "global"})
	login := newLimiter(t, store, PerSecond(100_000), Config{Name: "login", FailurePolicy: FailClosed})
	ctx := context.Background()

	var slowest atomic.Int64
	var phase atomic.Int32 // 0 up, 1 down, 2 back
	var grantedDown, closedDown, errsUp atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("ip-%d-%d", g, i%50)
				start := time.Now()
				p := phase.Load()
				r1, err1 := global.Allow(ctx, key)
				_, err2 := login.Allow(ctx, key)
				d := int64(time.Since(start))
				for old := slowest.Load(); d > old && !slowest.CompareAndSwap(old, d); old = slowest.Load() {
				}
				switch p {
				case 0:
					if err1 != nil || err2 != nil {
						errsUp.Add(1)
					}
				case 1:
					if err1 == nil && r1.Allowed {
						grantedDown.Add(1)
					}
					if err2 != nil {
						closedDown.Add(1)
					}
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	assert.Zero(t, errsUp.Load())

	slowest.Store(0)
	phase.Store(1)
	srv.Stop()
	time.Sleep(time.Second)
	assert.Positive(t, grantedDown.Load(), "global falls back to the local limiter")
	assert.Positive(t, closedDown.Load(), "login fails closed")
	assert.True(t, global.Stats().Degraded)
	assert.Less(t, time.Duration(slowest.Load()), 400*time.Millisecond,
		"no decision waits much longer than the 50 ms timeout (two limiters per iteration, race detector on)")

	back := redistest.StartServer(t, srv.Port())
	_ = back
	phase.Store(2)
	returned := time.Now()
	require.Eventually(t, func() bool { return !global.Stats().Degraded && !login.Stats().Degraded },
		3*time.Second, 10*time.Millisecond)
	recovery := time.Since(returned)
	close(stop)
	wg.Wait()
	assert.Less(t, recovery, 1500*time.Millisecond, "RetryInterval is 500 ms: the store is probed and used again")
	t.Logf("slowest decision during the outage %v, recovery %v after restart", time.Duration(slowest.Load()), recovery)
	r, err := login.Allow(ctx, "after")
	require.NoError(t, err)
	assert.True(t, r.Allowed)
}
