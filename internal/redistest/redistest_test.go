package redistest

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestKindsFollowEnvironment(t *testing.T) {
	t.Setenv(EnvURL, "")
	t.Setenv(EnvCluster, "")
	t.Setenv(EnvSentinel, "")
	t.Setenv(EnvSentinelMaster, "")
	if got := Kinds(); !slices.Equal(got, []Kind{Memory, Miniredis}) {
		t.Fatalf("Kinds() with no servers = %v", got)
	}
	t.Setenv(EnvURL, "redis://127.0.0.1:1/0")
	t.Setenv(EnvCluster, "127.0.0.1:1")
	t.Setenv(EnvSentinel, "127.0.0.1:1")
	if got := Kinds(); !slices.Equal(got, []Kind{Memory, Miniredis, Redis, Cluster}) {
		t.Fatalf("Kinds() without a Sentinel master name = %v", got)
	}
	t.Setenv(EnvSentinelMaster, "outgrow")
	if got := Kinds(); !slices.Equal(got, []Kind{Memory, Miniredis, Redis, Cluster, Sentinel}) {
		t.Fatalf("Kinds() with every server = %v", got)
	}
}

func TestPrefixesAreUniqueAndSafe(t *testing.T) {
	a, b := newPrefix(t), newPrefix(t)
	if a == b {
		t.Fatalf("two prefixes are equal: %q", a)
	}
	if strings.ContainsAny(a, "{}") {
		t.Fatalf("prefix %q contains a hash-tag brace", a)
	}
}

// TestCleanupDeletesOnlyOwnKeys runs on every Redis backend available: the keys under a test's
// prefix are gone after its cleanup, and a key outside the prefix is untouched.
func TestCleanupDeletesOnlyOwnKeys(t *testing.T) {
	for _, k := range Kinds() {
		if k == Memory {
			continue
		}
		t.Run(string(k), func(t *testing.T) {
			ctx := context.Background()
			outer := Open(t, k) // its own prefix, cleaned when this subtest ends
			keep := outer.Prefix + "keep"
			if err := outer.Client.Set(ctx, keep, "1", 0).Err(); err != nil {
				t.Fatal(err)
			}
			var inner string
			t.Run("inner", func(t *testing.T) {
				inner = Prefix(t, outer.Client)
				// Keys in several slots, and one with glob characters in its name.
				for _, key := range []string{"a", "{x}b", "{y}c", "*?[]"} {
					if err := outer.Client.Set(ctx, inner+key, "1", 0).Err(); err != nil {
						t.Fatal(err)
					}
				}
			})
			for _, key := range []string{"a", "{x}b", "{y}c", "*?[]"} {
				n, err := outer.Client.Exists(ctx, inner+key).Result()
				if err != nil || n != 0 {
					t.Errorf("key %q still exists after cleanup (n=%d, err=%v)", inner+key, n, err)
				}
			}
			if n, err := outer.Client.Exists(ctx, keep).Result(); err != nil || n != 1 {
				t.Errorf("key %q outside the prefix was removed (n=%d, err=%v)", keep, n, err)
			}
		})
	}
}

func TestNewDefaultsToMiniredis(t *testing.T) {
	if os.Getenv(EnvURL) != "" || os.Getenv(EnvCluster) != "" {
		t.Setenv(EnvURL, "")
		t.Setenv(EnvCluster, "")
	}
	rdb := New(t)
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestEachRunsEveryKind(t *testing.T) {
	var seen []Kind
	Each(t, func(t *testing.T, b Backend) {
		seen = append(seen, b.Kind)
		if (b.Kind == Memory) == b.IsRedis() {
			t.Errorf("backend %s: IsRedis() = %v", b.Kind, b.IsRedis())
		}
		if (b.Kind == Miniredis) != (b.Mini != nil) {
			t.Errorf("backend %s: Mini set = %v", b.Kind, b.Mini != nil)
		}
		if b.Prefix == "" {
			t.Errorf("backend %s: empty prefix", b.Kind)
		}
	})
	if !slices.Equal(seen, Kinds()) {
		t.Fatalf("Each ran %v, want %v", seen, Kinds())
	}
}

// TestServerRestart: Restart kills the server and starts it again on the same port; with AOF
// it still has what it acknowledged before the crash, without it (so the restart is a real
// one) it has nothing.
func TestServerRestart(t *testing.T) {
	ctx := context.Background()
	for _, aof := range []bool{true, false} {
		t.Run(fmt.Sprintf("aof=%v", aof), func(t *testing.T) {
			s := StartServerWith(t, ServerConfig{AOF: aof})
			c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
			defer c.Close()
			if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			addr := s.Addr()
			s.Restart()
			if s.Addr() != addr {
				t.Fatalf("restarted on %s, was %s", s.Addr(), addr)
			}
			var got string
			var err error
			for range 3 { // the pool's connections to the old process fail first
				if got, err = c.Get(ctx, "k").Result(); err == nil || err == redis.Nil {
					break
				}
			}
			switch {
			case aof && got != "v":
				t.Fatalf("after a restart with AOF: GET k = %q, %v; want v", got, err)
			case !aof && err != redis.Nil:
				t.Fatalf("after a restart without persistence: GET k = %q, %v; want nil", got, err)
			}
		})
	}
}
