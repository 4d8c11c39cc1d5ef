package queue

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/rediskey"
	"github.com/outgrow/outgrow/internal/redistest"
)

// redisStoreCases lists a RedisStore per Redis backend of the environment (miniredis always,
// real servers when configured), each on a fresh key prefix. advance moves their clock by the
// store's offset, which works alike on servers whose time cannot be faked.
func redisStoreCases() []storeCase {
	var out []storeCase
	for _, k := range redistest.Kinds() {
		if k == redistest.Memory {
			continue
		}
		out = append(out, storeCase{
			name:    "redis-" + string(k),
			make:    func(t *testing.T) Store { return newRedisStore(t, k, RedisConfig{}) },
			advance: func(s Store) func(time.Duration) { return s.(*RedisStore).advance },
		})
	}
	return out
}

// newRedisStore returns a RedisStore on a fresh backend of kind k, under the test's prefix.
func newRedisStore(t *testing.T, k redistest.Kind, cfg RedisConfig) *RedisStore {
	t.Helper()
	b := redistest.Open(t, k)
	cfg.Prefix, cfg.Timeout = b.Prefix, testConfig(b).Timeout
	s, err := NewRedisStore(b.Client, cfg)
	require.NoError(t, err)
	return s
}

// testConfig is the config of a test's store on b: a long Timeout, since miniredis's Lua is
// slow under the race detector (a claim promoting 1000 jobs takes longer than 100ms there),
// and a real server's scripts of a few thousand jobs miss 100ms too on a busy machine under
// -race. Tests of timeouts set their own.
func testConfig(b redistest.Backend) RedisConfig {
	return RedisConfig{Prefix: b.Prefix, Timeout: 5 * time.Second}
}

// advance moves the store's clock by d.
func (s *RedisStore) advance(d time.Duration) { s.offset.Add(d.Milliseconds()) }

// eachRedis runs fn on a RedisStore per Redis backend (miniredis, and the real servers the
// environment names), with the backend for what a test needs of it.
func eachRedis(t *testing.T, fn func(t *testing.T, s *RedisStore, b redistest.Backend)) {
	t.Helper()
	for _, k := range redistest.Kinds() {
		if k == redistest.Memory {
			continue
		}
		t.Run(string(k), func(t *testing.T) {
			b := redistest.Open(t, k)
			s, err := NewRedisStore(b.Client, testConfig(b))
			require.NoError(t, err)
			fn(t, s, b)
		})
	}
}

func newQueue(t *testing.T, s Store) *Queue {
	t.Helper()
	q, err := New(s, Config{})
	require.NoError(t, err)
	return q
}

// TestRedisOrder: priority first (any int that a float64 holds, negative ones included, with
// no rounding between close ones), then RunAt (to the ms, before 1970 too), then enqueue
// order, in one batch and across batches.
func TestRedisOrder(t *testing.T) {
	eachRedis(t, func(t *testing.T, s *RedisStore, _ redistest.Backend) {
		q := newQueue(t, s)
		base := time.Now().Add(-time.Hour)
		enqueue(t, q,
			Job{ID: "p0-late", RunAt: base.Add(20 * time.Millisecond)},
			Job{ID: "p0-early", RunAt: base.Add(10 * time.Millisecond)},
			Job{ID: "p0-early-2", RunAt: base.Add(10 * time.Millisecond)},
			Job{ID: "huge", Priority: 1 << 52},
			Job{ID: "huge-1", Priority: 1<<52 - 1},
			Job{ID: "neg", Priority: -3},
			Job{ID: "ancient", RunAt: time.Unix(-100, 0)},
		)
		enqueue(t, q, Job{ID: "p0-mid", RunAt: base.Add(15 * time.Millisecond)})
		got := claimIDs(t, s, DefaultQueue, 100)
		assert.Equal(t, []string{"huge", "huge-1", "ancient", "p0-early", "p0-early-2", "p0-mid", "p0-late", "neg"}, ids(got))
		assert.Equal(t, 1<<52, got[0].Priority)
		assert.Equal(t, 1<<52-1, got[1].Priority)
		assert.Equal(t, -3, got[7].Priority)
		assert.True(t, got[2].RunAt.Equal(time.Unix(-100, 0)), "RunAt %v", got[2].RunAt)
		assert.True(t, got[3].RunAt.Equal(base.Add(10*time.Millisecond).Truncate(time.Millisecond)), "RunAt %v", got[3].RunAt)

		// Released, they go back in their places.
		ops := make([]op, len(got))
		for i, c := range got {
			ops[i] = op{kind: opRelease, queue: DefaultQueue, id: c.ID, token: c.token}
		}
		_, err := s.settle(context.Background(), ops)
		require.NoError(t, err)
		assert.Equal(t, ids(got), ids(claimIDs(t, s, DefaultQueue, 100)))
	})
}

// TestRedisRoundTrips: an EnqueueMany, a claim of many jobs and a batch of settlements of one
// queue are one round trip each; a batch over several queues is one pipelined call.
func TestRedisRoundTrips(t *testing.T) {
	eachRedis(t, func(t *testing.T, s *RedisStore, _ redistest.Backend) {
		q := newQueue(t, s)
		ctx := context.Background()
		calls := func(f func()) uint64 {
			before := s.Stats().Calls
			f()
			return s.Stats().Calls - before
		}
		// The first enqueue of a store on a queue adds a round trip, to list the queue.
		assert.Equal(t, uint64(2), calls(func() { enqueue(t, q, Job{}) }), "the first Enqueue on a queue")
		_ = claimIDs(t, s, DefaultQueue, 1)
		jobs := make([]Job, 100)
		assert.Equal(t, uint64(1), calls(func() { enqueue(t, q, jobs...) }), "EnqueueMany")
		var got []claimed
		assert.Equal(t, uint64(1), calls(func() { got = claimIDs(t, s, DefaultQueue, 100) }), "claim")
		require.Len(t, got, 100)
		ops := make([]op, len(got))
		for i, c := range got {
			ops[i] = op{kind: opAck, queue: DefaultQueue, id: c.ID, token: c.token}
		}
		assert.Equal(t, uint64(1), calls(func() {
			ok, err := s.settle(ctx, ops)
			require.NoError(t, err)
			assert.NotContains(t, ok, false)
		}), "settle")

		mixed := []Job{{Queue: "a"}, {Queue: "b"}, {Queue: "c"}, {Queue: "a"}}
		assert.Equal(t, uint64(2), calls(func() { enqueue(t, q, mixed...) }), "queues on several slots, pipelined, and listed in one more")
		assert.Equal(t, uint64(1), calls(func() { enqueue(t, q, mixed...) }), "queues on several slots, pipelined")
		for _, name := range []string{"a", "b", "c"} {
			st, err := q.QueueStats(ctx, name)
			require.NoError(t, err)
			assert.Equal(t, map[string]int{"a": 4, "b": 2, "c": 2}[name], st.Due, name)
		}
	})
}

// TestRedisPromotionBounded: a claim promotes at most 1000 scheduled jobs and takes back at
// most 1000 expired leases; the next claims take the rest.
func TestRedisPromotionBounded(t *testing.T) {
	eachRedis(t, func(t *testing.T, s *RedisStore, _ redistest.Backend) {
		q := newQueue(t, s)
		jobs := make([]Job, 1500)
		for i := range jobs {
			jobs[i].Delay = time.Minute
		}
		enqueue(t, q, jobs...)
		s.advance(time.Minute)
		assert.Len(t, claimIDs(t, s, DefaultQueue, 2000), 1000)
		assert.Len(t, claimIDs(t, s, DefaultQueue, 2000), 500)
		s.advance(2 * time.Hour) // every lease expires
		assert.Len(t, claimIDs(t, s, DefaultQueue, 2000), 1000)
		assert.Len(t, claimIDs(t, s, DefaultQueue, 2000), 500)
	})
}

// TestRedisWaitAcrossInstances: an idle worker of one instance wakes when another instance
// enqueues, and a cancelled wait returns within a block (1s).
func TestRedisWaitAcrossInstances(t *testing.T) {
	eachRedis(t, func(t *testing.T, s *RedisStore, b redistest.Backend) {
		other, err := NewRedisStore(b.NewClient(t), testConfig(b))
		require.NoError(t, err)
		ctx := context.Background()
		done := make(chan time.Duration, 1)
		go func() {
			t0 := time.Now()
			assert.NoError(t, s.wait(ctx, DefaultQueue, 10*time.Second))
			done <- time.Since(t0)
		}()
		time.Sleep(200 * time.Millisecond)
		enqueue(t, newQueue(t, other), Job{})
		assert.Less(t, <-done, 400*time.Millisecond, "woken by the other instance")
		claimIDs(t, s, DefaultQueue, 1)

		cctx, cancel := context.WithCancel(ctx)
		go func() {
			t0 := time.Now()
			assert.ErrorIs(t, s.wait(cctx, DefaultQueue, 10*time.Second), context.Canceled)
			done <- time.Since(t0)
		}()
		time.Sleep(100 * time.Millisecond)
		cancel()
		assert.Less(t, <-done, 1500*time.Millisecond)
	})
}

// TestRedisDeadRetentionExpires: a dead job's hash expires by itself after DeadRetention
// (Redis drops it even if no call comes), and the dead set forgets it at the next call.
func TestRedisDeadRetentionExpires(t *testing.T) {
	b := redistest.Open(t, redistest.Miniredis)
	start := time.Now().Truncate(time.Second)
	b.Mini.SetTime(start)
	s, err := NewRedisStore(b.Client, RedisConfig{Prefix: b.Prefix, DeadRetention: time.Hour})
	require.NoError(t, err)
	q := newQueue(t, s)
	ctx := context.Background()
	enqueue(t, q, Job{ID: "x"})
	c := claimIDs(t, s, DefaultQueue, 1)
	ok, err := s.settle(ctx, []op{{kind: opDead, queue: DefaultQueue, id: "x", token: c[0].token, err: "e"}})
	require.NoError(t, err)
	require.True(t, ok[0])
	jk := s.key(DefaultQueue, ":j:x")
	assert.Equal(t, time.Hour, b.Mini.TTL(jk))
	b.Mini.SetTime(start.Add(time.Hour + time.Second))
	b.Mini.FastForward(time.Hour + time.Second)
	assert.False(t, b.Mini.Exists(jk), "expired")
	st, err := q.QueueStats(ctx, DefaultQueue)
	require.NoError(t, err)
	assert.Zero(t, st.Dead)
	zs, _ := b.Mini.ZMembers(s.key(DefaultQueue, ":dead"))
	assert.Empty(t, zs)
}

// TestRedisRedriveAll: redriving every dead job works past one script's chunk of 1000.
func TestRedisRedriveAll(t *testing.T) {
	b := redistest.Open(t, redistest.Miniredis)
	s, err := NewRedisStore(b.Client, testConfig(b))
	require.NoError(t, err)
	q := newQueue(t, s)
	ctx := context.Background()
	enqueue(t, q, make([]Job, 1200)...)
	got := claimIDs(t, s, DefaultQueue, 1200)
	ops := make([]op, len(got))
	for i, c := range got {
		ops[i] = op{kind: opDead, queue: DefaultQueue, id: c.ID, token: c.token, err: "e"}
	}
	_, err = s.settle(ctx, ops)
	require.NoError(t, err)
	n, err := q.RedriveAll(ctx, DefaultQueue)
	require.NoError(t, err)
	assert.Equal(t, 1200, n)
	st, err := q.QueueStats(ctx, DefaultQueue)
	require.NoError(t, err)
	assert.Equal(t, 1200, st.Due)
	assert.Zero(t, st.Dead)
}

// TestRedisKeysShareTag: every key of a queue is in one slot, under the configured prefix;
// the one other key is the list of queues.
func TestRedisKeysShareTag(t *testing.T) {
	b := redistest.Open(t, redistest.Miniredis)
	s, err := NewRedisStore(b.Client, RedisConfig{Prefix: b.Prefix})
	require.NoError(t, err)
	q := newQueue(t, s)
	ctx := context.Background()
	enqueue(t, q, Job{ID: "a{b}c", Queue: "mail"}, Job{ID: "d", Queue: "mail", Delay: time.Hour}, Job{ID: "e", Queue: "mail"})
	c, err := s.claim(ctx, "mail", 1, time.Minute, 3)
	require.NoError(t, err)
	_, err = s.settle(ctx, []op{{kind: opDead, queue: "mail", id: c[0].ID, token: c[0].token}})
	require.NoError(t, err)
	keys := b.Mini.Keys()
	require.NotEmpty(t, keys)
	assert.Contains(t, keys, b.Prefix+"queues")
	for _, k := range keys {
		if k == b.Prefix+"queues" {
			continue
		}
		assert.True(t, strings.HasPrefix(k, b.Prefix+"{mail}:"), k)
		assert.Equal(t, rediskey.Slot(b.Prefix+"{mail}"), rediskey.Slot(k), k)
	}
}

// TestRedisConfig: invalid fields are refused with ErrInvalidConfig naming them.
func TestRedisConfig(t *testing.T) {
	rdb := redistest.Open(t, redistest.Miniredis).Client
	for field, cfg := range map[string]RedisConfig{
		"Prefix":        {Prefix: "a{"},
		"Timeout":       {Timeout: -1},
		"DeadRetention": {DeadRetention: -1},
		"FailFastAfter": {FailFastAfter: -1},
		"RetryInterval": {RetryInterval: -1},
	} {
		_, err := NewRedisStore(rdb, cfg)
		require.ErrorIs(t, err, ErrInvalidConfig, field)
		assert.Contains(t, err.Error(), "RedisConfig."+field)
	}
	_, err := NewRedisStore(nil, RedisConfig{})
	assert.ErrorIs(t, err, ErrInvalidConfig)
}

// TestRedisUnavailable: a Redis that fails makes every call's error wrap ErrUnavailable, and
// the store fails fast after FailFastAfter failures.
func TestRedisUnavailable(t *testing.T) {
	b := redistest.Open(t, redistest.Miniredis)
	s, err := NewRedisStore(b.Client, RedisConfig{Prefix: b.Prefix, Logger: quiet})
	require.NoError(t, err)
	q := newQueue(t, s)
	ctx := context.Background()
	b.Mini.SetError("LOADING")
	_, err = q.Enqueue(ctx, Job{})
	assert.ErrorIs(t, err, ErrUnavailable)
	_, err = s.claim(ctx, DefaultQueue, 1, time.Second, 3)
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.ErrorIs(t, s.wait(ctx, DefaultQueue, time.Second), ErrUnavailable)
	_, err = q.QueueStats(ctx, DefaultQueue)
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.True(t, s.Stats().Down)
	assert.NotZero(t, s.Stats().Failures)
}

// TestRedisWorker: the Worker drains a queue on every Redis backend, each job once.
func TestRedisWorker(t *testing.T) {
	eachRedis(t, func(t *testing.T, s *RedisStore, _ redistest.Backend) {
		q := newQueue(t, s)
		var mu sync.Mutex
		seen := map[string]int{}
		all := make(chan struct{})
		const n = 300
		h := func(_ context.Context, d *Delivery) error {
			mu.Lock()
			defer mu.Unlock()
			seen[d.ID]++
			if len(seen) == n {
				close(all)
			}
			return nil
		}
		w, stop := startWorker(t, s, WorkerConfig{Queues: map[string]QueueConfig{DefaultQueue: {Handler: h, Concurrency: 8}}})
		time.Sleep(50 * time.Millisecond) // idle: the worker blocks, then wakes
		calls := s.Stats().Calls
		enqueue(t, q, make([]Job, n)...)
		select {
		case <-all:
		case <-time.After(10 * time.Second):
			t.Fatal("not drained")
		}
		t.Logf("%.2f round trips per job (enqueue, claims, settlements, waits)", float64(s.Stats().Calls-calls)/n)
		stop()
		for id, c := range seen {
			assert.Equal(t, 1, c, id)
		}
		assert.Equal(t, uint64(n), w.Stats().Succeeded)
		st, err := q.QueueStats(context.Background(), DefaultQueue)
		require.NoError(t, err)
		assert.Equal(t, QueueStats{}, st)
	})
}

// TestRedisMemoryPerJob reports the Redis memory a pending job costs, on a real Redis (run
// with -v): used_memory before and after 10,000 jobs of a 36 B and of a 64 B payload, and
// MEMORY USAGE of one job's hash. Nothing is asserted: the figures go to benchmarks/README.md.
func TestRedisMemoryPerJob(t *testing.T) {
	if !slices.Contains(redistest.Kinds(), redistest.Redis) {
		t.Skip("needs a real Redis (" + redistest.EnvURL + ")")
	}
	for _, size := range []int{36, 64} {
		b := redistest.Open(t, redistest.Redis)
		s, err := NewRedisStore(b.Client, RedisConfig{Prefix: b.Prefix, Timeout: time.Second})
		require.NoError(t, err)
		q := newQueue(t, s)
		ctx := context.Background()
		used := func() int64 {
			info, err := b.Client.Info(ctx, "memory").Result()
			require.NoError(t, err)
			for line := range strings.Lines(info) {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
					n, err := strconv.ParseInt(v, 10, 64)
					require.NoError(t, err)
					return n
				}
			}
			t.Fatal("no used_memory")
			return 0
		}
		const n = 10000
		jobs := make([]Job, n)
		for i := range jobs {
			jobs[i].Payload = make([]byte, size)
		}
		before := used()
		for i := 0; i < n; i += 1000 {
			enqueue(t, q, jobs[i:i+1000]...)
		}
		after := used()
		got := claimIDs(t, s, DefaultQueue, 1)
		hash, err := b.Client.MemoryUsage(ctx, s.key(DefaultQueue, ":j:"+got[0].ID)).Result()
		require.NoError(t, err)
		due, err := b.Client.MemoryUsage(ctx, s.key(DefaultQueue, ":due"), 0).Result()
		require.NoError(t, err)
		perJob := float64(after-before) / n
		t.Logf("payload %d B: %.0f B per pending job (used_memory), of which the hash %d B (MEMORY USAGE) and the due-set entry about %d B; prefix %d B, id %d B",
			size, perJob, hash, due/n, len(b.Prefix), len(got[0].ID))
		// A guard against layouts that grow (about 410 B with a 36-byte payload when measured).
		assert.Less(t, perJob, float64(size)+500, "bytes per pending job")
	}
}
