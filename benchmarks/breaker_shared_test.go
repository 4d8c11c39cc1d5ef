package benchmarks

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"

	"github.com/outgrow/outgrow/benchmarks/internal/harness"
	"github.com/outgrow/outgrow/breaker"
)

// Breakers shared through Redis, side by side: outgrow's RedisStore against gobreaker's
// DistributedCircuitBreaker on the same Redis. gobreaker needs a SharedDataStore; gobreakerStore
// below is written to be as kind to it as possible (its Lock waits by spinning on SET NX instead
// of failing, which would make gobreaker sleep 500 ms).

// gobreakerStore is a gobreaker.SharedDataStore over go-redis.
type gobreakerStore struct {
	rdb    redis.UniversalClient
	prefix string
	token  string
}

var unlockScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

func (s *gobreakerStore) Lock(name string) error {
	ctx := context.Background()
	for deadline := time.Now().Add(5 * time.Second); ; {
		ok, err := s.rdb.SetNX(ctx, s.prefix+name, s.token, 5*time.Second).Result()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("lock: timeout")
		}
		time.Sleep(20 * time.Microsecond)
	}
}

func (s *gobreakerStore) Unlock(name string) error {
	return unlockScript.Run(context.Background(), s.rdb, []string{s.prefix + name}, s.token).Err()
}

func (s *gobreakerStore) GetData(name string) ([]byte, error) {
	b, err := s.rdb.Get(context.Background(), s.prefix+name).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return b, err
}

func (s *gobreakerStore) SetData(name string, data []byte) error {
	return s.rdb.Set(context.Background(), s.prefix+name, data, 0).Err()
}

var instanceSeq atomic.Int64

func newGobreakerShared(b testing.TB, rdb redis.UniversalClient, prefix, name string, trip bool) *gobreaker.DistributedCircuitBreaker[struct{}] {
	st := &gobreakerStore{rdb: rdb, prefix: prefix, token: strconv.FormatInt(instanceSeq.Add(1), 10)}
	cb, err := gobreaker.NewDistributedCircuitBreaker[struct{}](st, gobreaker.Settings{
		Name:    name,
		Timeout: time.Hour,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return trip && c.ConsecutiveFailures >= 5
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	return cb
}

func newOutgrowShared(b testing.TB, rdb redis.UniversalClient, prefix, name string, failures int) *breaker.Breaker {
	st, err := breaker.NewRedisStore(rdb, breaker.RedisConfig{Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	br, err := breaker.New(breaker.Config{Name: name, Failures: failures, OpenDuration: time.Hour, Store: st})
	if err != nil {
		b.Fatal(err)
	}
	return br
}

// BenchmarkBreakerSharedCall: the cost a shared breaker adds to one successful call, one call
// at a time (the added latency a request sees), and from many goroutines at once.
func BenchmarkBreakerSharedCall(b *testing.B) {
	ctx := context.Background()
	for _, par := range []bool{false, true} {
		mode := "serial"
		if par {
			mode = "parallel"
		}
		b.Run("mode="+mode+"/lib=outgrow", func(b *testing.B) {
			rdb, prefix := harness.Redis(b)
			br := newOutgrowShared(b, rdb, prefix, "bench", 5)
			one := func() error {
				tok, err := br.Allow(ctx)
				if err != nil {
					return err
				}
				tok.Done(nil)
				return nil
			}
			runShared(b, rdb, par, one)
		})
		b.Run("mode="+mode+"/lib=gobreaker", func(b *testing.B) {
			rdb, prefix := harness.Redis(b)
			cb := newGobreakerShared(b, rdb, prefix, "bench", true)
			fn := func() (struct{}, error) { return struct{}{}, nil }
			one := func() error {
				_, err := cb.Execute(fn)
				return err
			}
			runShared(b, rdb, par, one)
		})
	}
}

func runShared(b *testing.B, rdb redis.UniversalClient, par bool, one func() error) {
	if err := one(); err != nil {
		b.Fatal(err)
	}
	c := countCommands(b, rdb)
	b.ReportAllocs()
	if par {
		b.SetParallelism(redisParallelism)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := one(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	} else {
		for b.Loop() {
			if err := one(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	c.report(b)
}

// TestBreakerSharedLostFailures: four instances, each with its own client, report failing calls
// at once to a breaker that never trips; the shared failure count should equal the failures
// made. gobreaker reads the shared state before taking its lock, so an instance can write back
// counts that miss another's updates; outgrow adds its counts inside one script.
func TestBreakerSharedLostFailures(t *testing.T) {
	const instances, goroutines, calls = 4, 4, 100
	ctx := context.Background()
	run := func(call func(i int) error) int64 {
		var made atomic.Int64
		var wg sync.WaitGroup
		for i := range instances {
			for range goroutines {
				wg.Go(func() {
					for range calls {
						if call(i) != nil {
							made.Add(1)
						}
					}
				})
			}
		}
		wg.Wait()
		return made.Load()
	}

	rdb, prefix := harness.Redis(t)
	opt := rdb.(*redis.Client).Options()

	var obs []*breaker.Breaker
	var stores []*breaker.RedisStore
	for range instances {
		c := redis.NewClient(opt)
		defer c.Close()
		st, err := breaker.NewRedisStore(c, breaker.RedisConfig{Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		stores = append(stores, st)
		br, err := breaker.New(breaker.Config{Name: "lost", DisableConsecutiveFailures: true, Store: st})
		if err != nil {
			t.Fatal(err)
		}
		obs = append(obs, br)
	}
	madeOutgrow := run(func(i int) error {
		return obs[i].Do(ctx, func(context.Context) error { return errBench })
	})
	for _, st := range stores {
		_ = st.Close() // sends what is pending
	}
	counted, err := rdb.HGet(ctx, prefix+"{lost}", "nf").Int64()
	if err != nil {
		t.Fatal(err)
	}

	var gbs []*gobreaker.DistributedCircuitBreaker[struct{}]
	for range instances {
		c := redis.NewClient(opt)
		defer c.Close()
		gbs = append(gbs, newGobreakerShared(t, c, prefix, "lost", false))
	}
	fail := func() (struct{}, error) { return struct{}{}, errBench }
	madeGo := run(func(i int) error {
		_, err := gbs[i].Execute(fail)
		return err
	})
	data, err := rdb.Get(ctx, prefix+"gobreaker:state:lost").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	var shared gobreaker.SharedState
	if err := json.Unmarshal(data, &shared); err != nil {
		t.Fatal(err)
	}

	lost := func(made, counted int64) float64 { return 100 * float64(made-counted) / float64(made) }
	t.Logf("outgrow:   %d failures made, %d counted (%.1f%% lost)", madeOutgrow, counted, lost(madeOutgrow, counted))
	t.Logf("gobreaker: %d failures made, %d counted (%.1f%% lost)", madeGo, shared.Counts.TotalFailures, lost(madeGo, int64(shared.Counts.TotalFailures)))
	if counted != madeOutgrow {
		t.Errorf("outgrow lost failures: %d made, %d counted", madeOutgrow, counted)
	}
}
