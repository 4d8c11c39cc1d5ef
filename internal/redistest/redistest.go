// Package redistest hands tests a Redis client and a key prefix of their own.
//
// By default a test gets an in-process miniredis, so `go test ./...` passes on a machine with no
// Redis. Two environment variables add real servers:
//
//   - OUTGROW_REDIS_URL: a real standalone Redis, as a redis:// URL (e.g. redis://127.0.0.1:6379/0).
//   - OUTGROW_REDIS_CLUSTER: a real Redis Cluster, as comma-separated seed addresses
//     (e.g. 127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002).
//
// [New] returns the most real client configured (Cluster, then Redis, then miniredis); [Each] runs a
// backend-agnostic suite once per backend: memory, miniredis, and each real server that is configured.
//
// Tests never flush a shared server. Each backend handed out carries a unique key prefix, and when
// the test ends every key under that prefix is deleted (on every master, for a Cluster).
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// The environment variables that point tests at real servers.
const (
	EnvURL     = "OUTGROW_REDIS_URL"
	EnvCluster = "OUTGROW_REDIS_CLUSTER"
	// EnvSentinel holds comma-separated Sentinel addresses, and EnvSentinelMaster the name of
	// the primary they watch.
	EnvSentinel       = "OUTGROW_REDIS_SENTINEL"
	EnvSentinelMaster = "OUTGROW_REDIS_SENTINEL_MASTER"
)

// Kind names a backend.
type Kind string

// The backends [Each] runs a suite against.
const (
	Memory    Kind = "memory"
	Miniredis Kind = "miniredis"
	Redis     Kind = "redis"
	Cluster   Kind = "cluster"
	Sentinel  Kind = "sentinel"
)

// Backend is one place a suite runs: a Redis client (nil for [Memory]) and a key prefix that no
// other test uses.
type Backend struct {
	Kind Kind
	// Client is nil for Memory.
	Client redis.UniversalClient
	// Prefix is unique to this test and backend; keys under it are deleted when the test ends.
	Prefix string
	// Mini is the in-process server for Miniredis, nil otherwise. Use it to move time
	// (Mini.FastForward) or to simulate failures (Mini.SetError, Mini.Close).
	Mini *miniredis.Miniredis
}

// IsRedis reports whether the backend is a Redis of any kind (miniredis included).
func (b Backend) IsRedis() bool { return b.Client != nil }

// New returns a client for t: a real Cluster if OUTGROW_REDIS_CLUSTER is set, else a real Redis if
// OUTGROW_REDIS_URL is set, else a fresh miniredis. Use [Prefix] for the keys the test writes: it
// registers their cleanup.
func New(t testing.TB) redis.UniversalClient {
	t.Helper()
	switch {
	case os.Getenv(EnvCluster) != "":
		return open(t, Cluster).Client
	case os.Getenv(EnvURL) != "":
		return open(t, Redis).Client
	default:
		return open(t, Miniredis).Client
	}
}

// Prefix returns a key prefix unique to this call ("t:<name>:<random>:") and deletes every key
// under it from rdb when the test ends.
func Prefix(t testing.TB, rdb redis.UniversalClient) string {
	t.Helper()
	p := newPrefix(t)
	t.Cleanup(func() { cleanup(t, rdb, p) })
	return p
}

// Kinds lists the backends available in this environment, memory first.
func Kinds() []Kind {
	kinds := []Kind{Memory, Miniredis}
	if os.Getenv(EnvURL) != "" {
		kinds = append(kinds, Redis)
	}
	if os.Getenv(EnvCluster) != "" {
		kinds = append(kinds, Cluster)
	}
	if os.Getenv(EnvSentinel) != "" && os.Getenv(EnvSentinelMaster) != "" {
		kinds = append(kinds, Sentinel)
	}
	return kinds
}

// Each runs fn as a subtest named after each available backend (see [Kinds]). Suites build their
// store from b: the in-memory store for Memory, the Redis store on b.Client otherwise.
func Each(t *testing.T, fn func(t *testing.T, b Backend)) {
	t.Helper()
	for _, k := range Kinds() {
		t.Run(string(k), func(t *testing.T) {
			fn(t, Open(t, k))
		})
	}
}

// Open returns a ready backend of kind k for t. It fails the test if k is a real server that the
// environment does not name.
func Open(t testing.TB, k Kind) Backend {
	t.Helper()
	return open(t, k)
}

// NewClient returns another client of b's server, with its own connections, as another
// instance of a service would have; it is closed when the test ends. It is nil for Memory.
func (b Backend) NewClient(t testing.TB) redis.UniversalClient {
	t.Helper()
	if b.Client == nil {
		return nil
	}
	c := client(t, b.Kind, b.Mini)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func open(t testing.TB, k Kind) Backend {
	t.Helper()
	b := Backend{Kind: k}
	switch k {
	case Memory:
		b.Prefix = newPrefix(t)
		return b
	case Miniredis:
		b.Mini = miniredis.RunT(t)
	}
	b.Client = client(t, k, b.Mini)
	// Cleanups run last-in first-out: keys are deleted before the client closes.
	t.Cleanup(func() { _ = b.Client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Client.Ping(ctx).Err(); err != nil {
		t.Fatalf("redistest: %s backend does not answer: %v", k, err)
	}
	b.Prefix = Prefix(t, b.Client)
	return b
}

func client(t testing.TB, k Kind, mini *miniredis.Miniredis) redis.UniversalClient {
	t.Helper()
	switch k {
	case Miniredis:
		return redis.NewClient(&redis.Options{Addr: mini.Addr()})
	case Redis:
		url := os.Getenv(EnvURL)
		if url == "" {
			t.Fatalf("redistest: %s is not set", EnvURL)
		}
		opt, err := redis.ParseURL(url)
		if err != nil {
			t.Fatalf("redistest: %s: %v", EnvURL, err)
		}
		return redis.NewClient(opt)
	case Cluster:
		seeds := os.Getenv(EnvCluster)
		if seeds == "" {
			t.Fatalf("redistest: %s is not set", EnvCluster)
		}
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(seeds, ",")})
	case Sentinel:
		addrs, master := os.Getenv(EnvSentinel), os.Getenv(EnvSentinelMaster)
		if addrs == "" || master == "" {
			t.Fatalf("redistest: %s and %s must both be set", EnvSentinel, EnvSentinelMaster)
		}
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: master, SentinelAddrs: strings.Split(addrs, ",")})
	}
	t.Fatalf("redistest: unknown backend %q", k)
	return nil
}

func newPrefix(t testing.TB) string {
	var r [6]byte
	_, _ = rand.Read(r[:])
	name := strings.NewReplacer("/", ".", " ", "_", "{", "(", "}", ")").Replace(t.Name())
	return "t:" + name + ":" + hex.EncodeToString(r[:]) + ":"
}

// cleanup deletes every key under prefix, on each master of a Cluster.
func cleanup(t testing.TB, rdb redis.UniversalClient, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	del := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, escapeGlob(prefix)+"*", 500).Iterator()
		for iter.Next(ctx) {
			// One key at a time: keys of one prefix may live in different slots.
			if err := c.Unlink(ctx, iter.Val()).Err(); err != nil {
				return err
			}
		}
		return iter.Err()
	}
	var err error
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return del(ctx, c) })
	} else {
		err = del(ctx, rdb)
	}
	if err != nil && !strings.Contains(err.Error(), "closed") {
		t.Logf("redistest: cleanup of %q: %v", prefix, err)
	}
}

// escapeGlob escapes the characters SCAN MATCH treats as a pattern.
func escapeGlob(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`).Replace(s)
}
