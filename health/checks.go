package health

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/redis/go-redis/v9"
)

// RedisCheck returns a check that PINGs Redis through rdb: every master of a Cluster, the
// current master behind Sentinel, or the one server otherwise. It never closes rdb.
func RedisCheck(rdb redis.UniversalClient) CheckFunc {
	if rdb == nil {
		panic("health: RedisCheck with a nil client")
	}
	return func(ctx context.Context) error {
		var err error
		if cc, ok := rdb.(*redis.ClusterClient); ok {
			err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
				return c.Ping(ctx).Err()
			})
		} else {
			err = rdb.Ping(ctx).Err()
		}
		if err != nil {
			return fmt.Errorf("health: redis ping: %w", err)
		}
		return nil
	}
}

// SQLCheck returns a check that pings db with [sql.DB.PingContext]. It never closes db.
func SQLCheck(db *sql.DB) CheckFunc {
	if db == nil {
		panic("health: SQLCheck with a nil *sql.DB")
	}
	return func(ctx context.Context) error {
		if err := db.PingContext(ctx); err != nil {
			return fmt.Errorf("health: sql ping: %w", err)
		}
		return nil
	}
}

// ErrHTTPStatus is the error of an [HTTPCheck] that got a status outside 2xx.
var ErrHTTPStatus = errors.New("health: unexpected HTTP status")

// HTTPCheck returns a check that sends GET url through client (nil means [http.DefaultClient])
// and expects a 2xx status. It reads at most 4 KiB of the body, so the connection can be reused.
// An invalid URL makes every run fail with the parse error.
func HTTPCheck(client *http.Client, url string) CheckFunc {
	if client == nil {
		client = http.DefaultClient
	}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("health: http check: %w", err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("health: http check: %w", err)
		}
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		_ = resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			return fmt.Errorf("%w %d", ErrHTTPStatus, resp.StatusCode)
		}
		return nil
	}
}
