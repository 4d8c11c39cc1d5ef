// Package harness is what every comparison in this module shares: a Redis client from the
// environment, a key prefix of the benchmark's own that is deleted afterwards, and Redis command
// counts read from INFO commandstats, so round trips are counted rather than estimated.
package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// EnvURL names the Redis the comparisons use, as a redis:// URL. Default: redis://127.0.0.1:6379/0.
const EnvURL = "OUTGROW_REDIS_URL"

// Redis returns a client for the Redis named by OUTGROW_REDIS_URL and a key prefix unique to tb;
// every key under the prefix is deleted when tb ends. If the variable is unset and no Redis
// answers on the default address, tb is skipped; if it is set and the server does not answer, tb
// fails.
func Redis(tb testing.TB) (redis.UniversalClient, string) {
	tb.Helper()
	url, explicit := os.LookupEnv(EnvURL)
	if !explicit || url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		tb.Fatalf("harness: %s: %v", EnvURL, err)
	}
	rdb := redis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		if explicit {
			tb.Fatalf("harness: Redis at %s does not answer: %v", url, err)
		}
		tb.Skipf("harness: no Redis at %s (set %s): %v", url, EnvURL, err)
	}
	var r [6]byte
	_, _ = rand.Read(r[:])
	prefix := "bench:" + hex.EncodeToString(r[:]) + ":"
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			_ = rdb.Unlink(ctx, iter.Val()).Err()
		}
		_ = rdb.Close()
	})
	return rdb, prefix
}

// WithContextTimeouts returns a client of the same server as rdb (a *redis.Client) with
// ContextTimeoutEnabled, the setting outgrow's README recommends; it is closed when tb ends.
func WithContextTimeouts(tb testing.TB, rdb redis.UniversalClient) redis.UniversalClient {
	tb.Helper()
	opt := *rdb.(*redis.Client).Options()
	opt.ContextTimeoutEnabled = true
	c := redis.NewClient(&opt)
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// CommandStats returns the number of calls of each command ("evalsha", "get", ...) that the
// server has served, from INFO commandstats. The difference of two readings around a benchmark,
// divided by b.N, is the commands per operation; nothing else may use the server meanwhile.
func CommandStats(ctx context.Context, rdb redis.UniversalClient) (map[string]int64, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	stats := make(map[string]int64)
	for line := range strings.SplitSeq(info, "\n") {
		// cmdstat_get:calls=12,usec=34,usec_per_call=2.83,...
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		n, err := strconv.ParseInt(calls, 10, 64)
		if err != nil {
			continue
		}
		stats[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return stats, nil
}

// Delta returns the total number of commands served between two readings of CommandStats.
func Delta(before, after map[string]int64) int64 {
	var n int64
	for cmd, calls := range after {
		n += calls - before[cmd]
	}
	return n
}

// RoundTrips counts the round trips a client makes: one per command sent alone, one per
// pipeline. Add it with [CountRoundTrips]; it is safe for concurrent use.
type RoundTrips struct{ n atomic.Int64 }

// Load returns the round trips counted so far.
func (r *RoundTrips) Load() int64 { return r.n.Load() }

func (r *RoundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *RoundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmd)
	}
}

func (r *RoundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmds)
	}
}

// CountRoundTrips adds a round-trip counter to rdb.
func CountRoundTrips(rdb redis.UniversalClient) *RoundTrips {
	r := &RoundTrips{}
	rdb.AddHook(r)
	return r
}
