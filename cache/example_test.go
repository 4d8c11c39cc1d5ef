package cache_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/cache"
)

type Flags struct {
	NewCheckout bool
	Banner      string
}

// Feature flags cached in process for 5 minutes: the flag service is asked once per key per 5
// minutes, however many requests read the flags.
func Example() {
	store, err := cache.NewMemoryStore(cache.MemoryConfig{MaxEntries: 1000})
	if err != nil {
		fmt.Println(err)
		return
	}
	flags, err := cache.New[Flags](store, cache.Config{Policy: cache.Policy{TTL: 5 * time.Minute}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer flags.Close()

	calls := 0
	fetchFlags := func(ctx context.Context, tenant string) (Flags, error) {
		calls++ // in real life: an HTTP call to the flag service
		return Flags{NewCheckout: tenant == "acme", Banner: "Sale!"}, nil
	}
	ctx := context.Background()
	for range 3 {
		f, err := flags.GetOrLoad(ctx, "acme", fetchFlags)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(f.NewCheckout, f.Banner)
	}
	fmt.Println("flag service calls:", calls)
	// Output:
	// true Sale!
	// true Sale!
	// true Sale!
	// flag service calls: 1
}

type Profile struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type Settings struct {
	Theme string `json:"theme"`
}

var errNoRows = errors.New("no rows")

// One RedisStore, shared by every instance of the service through Redis, serves any number of
// typed caches, each under its own namespace and with its own local layer in front.
func ExampleNewRedisStore() {
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR"), ContextTimeoutEnabled: true})
	defer rdb.Close()
	store, err := cache.NewRedisStore(rdb, cache.RedisConfig{Prefix: "myapp:"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close() // after the caches: deferred calls run last first

	profiles, err := cache.New[Profile](store, cache.Config{
		Namespace: "profiles", // keys myapp:profiles:{id}
		Local:     cache.MemoryConfig{MaxEntries: 50_000},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer profiles.Close()
	settings, err := cache.New[Settings](store, cache.Config{
		Namespace: "settings",
		Policy:    cache.Policy{TTL: time.Minute},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer settings.Close()

	ctx := context.Background()
	if err := settings.Set(ctx, "42", Settings{Theme: "dark"}); err != nil {
		fmt.Println("not stored:", err) // matches cache.ErrUnavailable
	}
	p, err := profiles.Get(ctx, "42")
	fmt.Println(p.Name, err)
}

// A user-profile cache shared by every instance: one instance loads a missing profile while
// the others wait for it. Profiles are fresh for 5 minutes, served stale for a minute while
// one instance refreshes them, and for an hour if the database is down. After an update,
// Delete makes every instance drop the profile.
func ExampleCache_GetOrLoad() {
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("REDIS_ADDR"), ContextTimeoutEnabled: true})
	defer rdb.Close()
	store, err := cache.NewRedisStore(rdb, cache.RedisConfig{Prefix: "myapp:"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	profiles, err := cache.New[Profile](store, cache.Config{
		Namespace: "profiles",
		Policy: cache.Policy{
			TTL:                  5 * time.Minute,
			StaleWhileRevalidate: time.Minute,
			StaleIfError:         time.Hour,
		},
		Jitter:      0.1,
		LoadTimeout: 2 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer profiles.Close()

	loadProfile := func(ctx context.Context, id string) (Profile, error) {
		p, err := queryProfile(ctx, id)
		if errors.Is(err, errNoRows) {
			return Profile{}, cache.ErrNotFound // cached for Config.NegativeTTL
		}
		return p, err
	}
	ctx := context.Background()
	p, err := profiles.GetOrLoad(ctx, "42", loadProfile)
	switch {
	case errors.Is(err, cache.ErrNotFound):
		fmt.Println("no such user")
	case err != nil:
		fmt.Println("database down and nothing cached:", err)
	default:
		fmt.Println(p.Name)
	}

	// After an update: write the database first, then drop the cached copy everywhere.
	if err := profiles.Delete(ctx, "42"); err != nil {
		fmt.Println("cache delete failed; retry it:", err) // matches cache.ErrUnavailable
	}
}

func queryProfile(ctx context.Context, id string) (Profile, error) {
	return Profile{ID: id, Name: "Ada"}, nil
}

// The cache's counters, per layer, for metrics.
func ExampleCache_Stats() {
	store, _ := cache.NewMemoryStore(cache.MemoryConfig{})
	c, _ := cache.New[string](store, cache.Config{})
	defer c.Close()
	ctx := context.Background()
	_ = c.Set(ctx, "a", "x")
	_, _ = c.Get(ctx, "a")
	_, _ = c.Get(ctx, "b")
	st := c.Stats()
	fmt.Println("local hits:", st.LocalHits, "misses:", st.Misses, "entries:", st.Local.Entries)
	// Output:
	// local hits: 1 misses: 1 entries: 1
}
