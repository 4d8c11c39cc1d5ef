package health

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

func TestRedisCheck(t *testing.T) {
	for _, k := range redistest.Kinds() {
		if k == redistest.Memory {
			continue
		}
		t.Run(string(k), func(t *testing.T) {
			b := redistest.Open(t, k)
			check := RedisCheck(b.Client)
			require.NoError(t, check(context.Background()))

			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			assert.Error(t, check(ctx), "a cancelled context fails the check")
		})
	}
}

func TestRedisCheckFailsWhenServerIsDown(t *testing.T) {
	mini := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mini.Addr()})
	defer rdb.Close()
	check := RedisCheck(rdb)
	require.NoError(t, check(context.Background()))
	mini.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := check(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "health: redis ping")
}

func TestRedisCheckClusterPingsEveryMaster(t *testing.T) {
	if !hasKind(redistest.Cluster) {
		t.Skip("no Redis Cluster: set " + redistest.EnvCluster)
	}
	b := redistest.Open(t, redistest.Cluster)
	// Count PINGs on each master's node client, which ForEachMaster reuses.
	var pings, masters atomic.Int64
	cc := b.Client.(*redis.ClusterClient)
	require.NoError(t, cc.ForEachMaster(context.Background(), func(_ context.Context, c *redis.Client) error {
		masters.Add(1)
		c.AddHook(pingCounter{&pings})
		return nil
	}))
	require.NoError(t, RedisCheck(b.Client)(context.Background()))
	assert.GreaterOrEqual(t, masters.Load(), int64(3))
	assert.Equal(t, masters.Load(), pings.Load(), "one PING per master")
}

func hasKind(k redistest.Kind) bool {
	for _, have := range redistest.Kinds() {
		if have == k {
			return true
		}
	}
	return false
}

// pingCounter counts PINGs on every node client of a Cluster.
type pingCounter struct{ n *atomic.Int64 }

func (p pingCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (p pingCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "ping" {
			p.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (p pingCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// pingDriver is a database/sql driver whose connections' Ping returns pingErr.
type pingDriver struct{ pingErr atomic.Pointer[error] }

type pingConn struct{ d *pingDriver }

func (d *pingDriver) Open(string) (driver.Conn, error) { return pingConn{d}, nil }
func (c pingConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("not supported") }
func (c pingConn) Close() error                        { return nil }
func (c pingConn) Begin() (driver.Tx, error)           { return nil, errors.New("not supported") }
func (c pingConn) Ping(context.Context) error {
	if p := c.d.pingErr.Load(); p != nil {
		return *p
	}
	return nil
}

var testDriver = &pingDriver{}

func init() { sql.Register("healthtest", testDriver) }

func TestSQLCheck(t *testing.T) {
	db, err := sql.Open("healthtest", "")
	require.NoError(t, err)
	defer db.Close()
	check := SQLCheck(db)
	require.NoError(t, check(context.Background()))

	down := errors.New("connection refused")
	testDriver.pingErr.Store(&down)
	defer testDriver.pingErr.Store(nil)
	err = check(context.Background())
	assert.ErrorIs(t, err, down)
	assert.Contains(t, err.Error(), "health: sql ping")
}

func TestHTTPCheck(t *testing.T) {
	var status atomic.Int64
	status.Store(http.StatusNoContent)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		if status.Load() == 0 {
			time.Sleep(time.Second)
		}
		w.WriteHeader(int(max(status.Load(), 200)))
	}))
	defer srv.Close()

	check := HTTPCheck(srv.Client(), srv.URL)
	require.NoError(t, check(context.Background()))

	status.Store(http.StatusInternalServerError)
	err := check(context.Background())
	assert.ErrorIs(t, err, ErrHTTPStatus)
	assert.Contains(t, err.Error(), "500")

	status.Store(0) // slow
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, check(ctx), context.DeadlineExceeded)

	assert.Error(t, HTTPCheck(nil, "://bad url")(context.Background()), "an invalid URL fails every run")
}

func TestBuiltinChecksRejectNil(t *testing.T) {
	assert.Panics(t, func() { RedisCheck(nil) })
	assert.Panics(t, func() { SQLCheck(nil) })
}
