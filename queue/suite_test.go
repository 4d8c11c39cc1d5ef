package queue

import (
	"context"
	"fmt"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// storeCase builds a fresh store for a test of the contract every store keeps.
type storeCase struct {
	name string
	// bubble says the store's clock is the process's, so the test may run in a synctest
	// bubble and move time by sleeping.
	bubble bool
	make   func(t *testing.T) Store
	// advance, when set, returns what moves the clock of a store make returned (by default,
	// time.Sleep: the process clock).
	advance func(s Store) func(time.Duration)
}

// storeCases lists the stores the contract runs on.
func storeCases() []storeCase {
	return append([]storeCase{{name: "memory", bubble: true, make: func(t *testing.T) Store {
		s, err := NewMemoryStore(MemoryConfig{})
		require.NoError(t, err)
		return s
	}}}, redisStoreCases()...)
}

// eachStore runs fn on every store, in a synctest bubble where the store allows it; advance
// moves the store's clock by d.
func eachStore(t *testing.T, fn func(t *testing.T, s Store, advance func(d time.Duration))) {
	for _, sc := range storeCases() {
		t.Run(sc.name, func(t *testing.T) {
			if sc.bubble {
				synctest.Test(t, func(t *testing.T) { fn(t, sc.make(t), time.Sleep) })
				return
			}
			s, advance := sc.make(t), time.Sleep
			if sc.advance != nil {
				advance = sc.advance(s)
			}
			fn(t, s, advance)
		})
	}
}

func enqueue(t *testing.T, q *Queue, jobs ...Job) []Enqueued {
	t.Helper()
	out, err := q.EnqueueMany(context.Background(), jobs)
	require.NoError(t, err)
	return out
}

func claimIDs(t *testing.T, s Store, queue string, n int) []claimed {
	t.Helper()
	got, err := claim(context.Background(), s.backend(), queue, n, time.Hour, 3)
	require.NoError(t, err)
	return got
}

func ids(cs []claimed) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

// TestContractOrder: due jobs are claimed by priority, then RunAt, then enqueue order; a
// delayed job waits for its time.
func TestContractOrder(t *testing.T) {
	eachStore(t, func(t *testing.T, s Store, advance func(time.Duration)) {
		q, err := New(s, Config{})
		require.NoError(t, err)
		enqueue(t, q,
			Job{ID: "low-1", Payload: []byte("a")},
			Job{ID: "high", Priority: 5},
			Job{ID: "low-2"},
			Job{ID: "later", Priority: 9, Delay: time.Minute},
			Job{ID: "neg", Priority: -1},
		)
		got := claimIDs(t, s, DefaultQueue, 10)
		assert.Equal(t, []string{"high", "low-1", "low-2", "neg"}, ids(got))
		assert.Equal(t, []byte("a"), got[1].Payload)
		assert.Equal(t, 1, got[1].Attempt)
		assert.Equal(t, 1, got[1].Deliveries)
		assert.Equal(t, DefaultMaxAttempts, got[1].MaxAttempts)
		assert.Empty(t, claimIDs(t, s, DefaultQueue, 10), "the delayed job is not due")
		advance(time.Minute)
		assert.Equal(t, []string{"later"}, ids(claimIDs(t, s, DefaultQueue, 10)))
		assert.Empty(t, claimIDs(t, s, "other", 10), "queues are apart")
		enqueue(t, q, Job{ID: "empty", Queue: "other"})
		empty := claimIDs(t, s, "other", 1)
		require.Len(t, empty, 1)
		assert.Equal(t, []byte{}, empty[0].Payload, "an empty payload is empty, not nil, on every store")
	})
}

// TestContractDuplicates: an ID the store holds is not stored again, within one batch too.
func TestContractDuplicates(t *testing.T) {
	eachStore(t, func(t *testing.T, s Store, _ func(time.Duration)) {
		q, err := New(s, Config{})
		require.NoError(t, err)
		out := enqueue(t, q, Job{ID: "a", Payload: []byte("1")}, Job{ID: "a", Payload: []byte("2")}, Job{})
		assert.False(t, out[0].Duplicate)
		assert.True(t, out[1].Duplicate)
		assert.NotEmpty(t, out[2].ID, "generated")
		assert.NotEqual(t, out[2].ID, enqueue(t, q, Job{})[0].ID)
		got := claimIDs(t, s, DefaultQueue, 10)
		require.Len(t, got, 3)
		assert.Equal(t, []byte("1"), got[0].Payload, "the first one is kept")
		assert.True(t, enqueue(t, q, Job{ID: "a"})[0].Duplicate, "while running too")
		assert.Equal(t, Stats{Enqueued: 3, Duplicates: 2}, q.Stats())
	})
}

// TestContractFencing: settlements with a token of an earlier claim change nothing; a job
// whose lease expired is claimed again, and after maxInterrupted interruptions it is dead.
func TestContractFencing(t *testing.T) {
	eachStore(t, func(t *testing.T, s Store, advance func(time.Duration)) {
		q, err := New(s, Config{})
		require.NoError(t, err)
		b := s.backend()
		ctx := context.Background()
		enqueue(t, q, Job{ID: "j"})
		first, err := claim(ctx, b, DefaultQueue, 1, time.Second, 3)
		require.NoError(t, err)
		require.Len(t, first, 1)
		advance(2 * time.Second) // the worker stalled: its lease expired
		second, err := claim(ctx, b, DefaultQueue, 1, time.Second, 3)
		require.NoError(t, err)
		require.Len(t, second, 1)
		assert.Equal(t, 2, second[0].Deliveries)
		assert.Equal(t, 1, second[0].Attempt, "an interrupted run is no attempt")
		assert.Greater(t, second[0].token, first[0].token)

		stale := op{queue: DefaultQueue, id: "j", token: first[0].token}
		for _, k := range []opKind{opAck, opRetry, opDead, opRelease, opExtend} {
			stale.kind, stale.lease = k, time.Minute
			ok, err := b.settle(ctx, []op{stale})
			require.NoError(t, err)
			assert.False(t, ok[0], "kind %d with a stale token", k)
		}
		st, err := q.QueueStats(ctx, DefaultQueue)
		require.NoError(t, err)
		assert.Equal(t, 1, st.Running, "the new claim stands")

		advance(2 * time.Second) // second interruption
		third, err := claim(ctx, b, DefaultQueue, 1, time.Second, 3)
		require.NoError(t, err)
		require.Len(t, third, 1)
		advance(2 * time.Second) // third: dead at the next claim
		none, err := claim(ctx, b, DefaultQueue, 1, time.Second, 3)
		require.NoError(t, err)
		assert.Empty(t, none)
		dead, err := q.Dead(ctx, DefaultQueue, 10)
		require.NoError(t, err)
		require.Len(t, dead, 1)
		assert.Contains(t, dead[0].LastError, "lease expired 3 times")
		ok, err := b.settle(ctx, []op{{kind: opAck, queue: DefaultQueue, id: "j", token: third[0].token}})
		require.NoError(t, err)
		assert.False(t, ok[0], "a dead job's last worker cannot ack it")
	})
}

// TestContractSettle: ack removes, retry waits its delay with one more attempt, release gives
// the job back at once without one, extend keeps the lease, dead keeps the job for Dead and
// Redrive.
func TestContractSettle(t *testing.T) {
	eachStore(t, func(t *testing.T, s Store, advance func(time.Duration)) {
		q, err := New(s, Config{})
		require.NoError(t, err)
		b := s.backend()
		ctx := context.Background()
		enqueue(t, q, Job{ID: "ack"}, Job{ID: "retry"}, Job{ID: "release"}, Job{ID: "extend"}, Job{ID: "dead", Payload: []byte("p")})
		got, err := claim(ctx, b, DefaultQueue, 5, time.Second, 3)
		require.NoError(t, err)
		require.Len(t, got, 5)
		tok := map[string]int64{}
		for _, c := range got {
			tok[c.ID] = c.token
		}
		ok, err := b.settle(ctx, []op{
			{kind: opAck, queue: DefaultQueue, id: "ack", token: tok["ack"]},
			{kind: opRetry, queue: DefaultQueue, id: "retry", token: tok["retry"], delay: 10 * time.Second, err: "boom"},
			{kind: opRelease, queue: DefaultQueue, id: "release", token: tok["release"]},
			{kind: opExtend, queue: DefaultQueue, id: "extend", token: tok["extend"], lease: time.Hour},
			{kind: opDead, queue: DefaultQueue, id: "dead", token: tok["dead"], err: "bad input"},
		})
		require.NoError(t, err)
		assert.Equal(t, []bool{true, true, true, true, true}, ok)

		st, err := q.QueueStats(ctx, DefaultQueue)
		require.NoError(t, err)
		assertStats(t, QueueStats{Due: 1, Scheduled: 1, Running: 1, Dead: 1}, st)
		again := claimIDs(t, s, DefaultQueue, 5)
		assert.Equal(t, []string{"release"}, ids(again))
		assert.Equal(t, 1, again[0].Deliveries, "a released run is not counted")
		advance(2 * time.Second)
		assert.Empty(t, claimIDs(t, s, DefaultQueue, 5), "extended: not taken back; retry: not due")
		advance(9 * time.Second)
		retried := claimIDs(t, s, DefaultQueue, 5)
		assert.Equal(t, []string{"retry"}, ids(retried))
		assert.Equal(t, 2, retried[0].Attempt)
		assert.Equal(t, 2, retried[0].Deliveries)

		dead, err := q.Dead(ctx, DefaultQueue, 10)
		require.NoError(t, err)
		require.Len(t, dead, 1)
		assert.Equal(t, "dead", dead[0].ID)
		assert.Equal(t, "bad input", dead[0].LastError)
		assert.Equal(t, []byte("p"), dead[0].Payload)
		assert.Equal(t, 1, dead[0].Attempt)
		assert.True(t, enqueue(t, q, Job{ID: "dead"})[0].Duplicate, "a dead job holds its ID")
		n, err := q.Redrive(ctx, DefaultQueue)
		require.NoError(t, err)
		assert.Zero(t, n, "no ids: nothing (RedriveAll is for all)")
		n, err = q.Redrive(ctx, DefaultQueue, "dead", "unknown")
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		redriven := claimIDs(t, s, DefaultQueue, 5)
		require.Equal(t, []string{"dead"}, ids(redriven))
		assert.Equal(t, 1, redriven[0].Attempt, "attempts reset")
	})
}

// TestContractDeadRetention: dead jobs are dropped after DeadRetention, and their IDs freed.
func TestContractDeadRetention(t *testing.T) {
	eachStore(t, func(t *testing.T, s Store, advance func(time.Duration)) {
		q, err := New(s, Config{})
		require.NoError(t, err)
		ctx := context.Background()
		enqueue(t, q, Job{ID: "x"})
		c := claimIDs(t, s, DefaultQueue, 1)
		_, err = s.backend().settle(ctx, []op{{kind: opDead, queue: DefaultQueue, id: "x", token: c[0].token, err: "e"}})
		require.NoError(t, err)
		advance(DefaultDeadRetention + time.Second)
		dead, err := q.Dead(ctx, DefaultQueue, 10)
		require.NoError(t, err)
		assert.Empty(t, dead)
		assert.False(t, enqueue(t, q, Job{ID: "x"})[0].Duplicate)
	})
}

// TestContractWait: wait returns at once when a job is enqueued, when a scheduled job becomes
// due, and at its timeout otherwise.
func TestContractWait(t *testing.T) {
	eachStore(t, func(t *testing.T, s Store, _ func(time.Duration)) {
		q, err := New(s, Config{})
		require.NoError(t, err)
		b := s.backend()
		ctx := context.Background()
		t0 := time.Now()
		require.NoError(t, b.wait(ctx, DefaultQueue, time.Second))
		assertWaited(t, time.Second, time.Since(t0), "empty: the timeout")

		done := make(chan time.Duration)
		go func() {
			t0 := time.Now()
			_ = b.wait(ctx, DefaultQueue, time.Hour)
			done <- time.Since(t0)
		}()
		time.Sleep(time.Second)
		enqueue(t, q, Job{})
		assertWaited(t, time.Second, <-done, "woken by the enqueue")
		claimIDs(t, s, DefaultQueue, 1)

		enqueue(t, q, Job{Delay: 5 * time.Second})
		t0 = time.Now()
		require.NoError(t, b.wait(ctx, DefaultQueue, time.Hour))
		assertWaited(t, 5*time.Second, time.Since(t0), "until the scheduled job is due")

		cctx, cancel := context.WithCancel(ctx)
		cancel()
		assert.ErrorIs(t, b.wait(cctx, "idle", time.Hour), context.Canceled)
	})
}

// assertWaited checks a wait of want: exact in a synctest bubble; on a real clock, up to a
// second later (Redis hands out blocked replies in its event loop, and a loaded CI machine
// running packages side by side schedules late; the waits checked are an hour long when they
// fail).
func assertWaited(t *testing.T, want, got time.Duration, msg string) {
	t.Helper()
	// Early by up to 50ms: a delay counts on the store's clock from inside the enqueue call,
	// before the test reads its own clock when the call returns.
	assert.GreaterOrEqual(t, got, want-50*time.Millisecond, msg)
	assert.LessOrEqual(t, got, want+time.Second, msg)
}

// assertStats checks stats, their Lag as a wait (real time passes between the calls of a
// store outside a bubble).
func assertStats(t *testing.T, want, got QueueStats) {
	t.Helper()
	assertWaited(t, want.Lag, got.Lag, "lag")
	want.Lag, got.Lag = 0, 0
	assert.Equal(t, want, got)
}

// TestContractStats: counts by state and the lag of the oldest due job.
func TestContractStats(t *testing.T) {
	eachStore(t, func(t *testing.T, s Store, advance func(time.Duration)) {
		q, err := New(s, Config{})
		require.NoError(t, err)
		ctx := context.Background()
		for i := range 3 {
			enqueue(t, q, Job{ID: fmt.Sprint(i)})
		}
		enqueue(t, q, Job{Delay: time.Hour})
		advance(3 * time.Second)
		claimIDs(t, s, DefaultQueue, 1)
		st, err := q.QueueStats(ctx, DefaultQueue)
		require.NoError(t, err)
		assertStats(t, QueueStats{Due: 2, Scheduled: 1, Running: 1, Lag: 3 * time.Second}, st)
	})
}

// TestEnqueueValidation: bad jobs are refused with ErrInvalidJob naming the field, and none of
// a batch is stored.
func TestEnqueueValidation(t *testing.T) {
	s, err := NewMemoryStore(MemoryConfig{})
	require.NoError(t, err)
	q, err := New(s, Config{})
	require.NoError(t, err)
	ctx := context.Background()
	for _, j := range []Job{
		{Queue: "has space"}, {Queue: "{tag}"}, {ID: string(make([]byte, 129))},
		{Delay: -time.Second}, {MaxAttempts: -1},
	} {
		_, err := q.Enqueue(ctx, j)
		assert.ErrorIs(t, err, ErrInvalidJob, "%+v", j)
	}
	_, err = q.EnqueueMany(ctx, []Job{{ID: "ok"}, {Queue: "bad queue"}})
	require.ErrorIs(t, err, ErrInvalidJob)
	assert.Contains(t, err.Error(), "jobs[1]")
	assert.Contains(t, err.Error(), "Job.Queue")
	st, err := q.QueueStats(ctx, DefaultQueue)
	require.NoError(t, err)
	assert.Zero(t, st.Due, "nothing of the batch stored")
	_, err = q.QueueStats(ctx, "bad queue")
	assert.ErrorIs(t, err, ErrInvalidJob)
	_, err = New(nil, Config{})
	assert.ErrorIs(t, err, ErrInvalidConfig)
	_, err = NewMemoryStore(MemoryConfig{DeadRetention: -1})
	assert.ErrorIs(t, err, ErrInvalidConfig)
}

// TestQueueHooks: OnEnqueue sees each job stored, with the caller's context, and no duplicate.
func TestQueueHooks(t *testing.T) {
	s, err := NewMemoryStore(MemoryConfig{})
	require.NoError(t, err)
	type key struct{}
	var seen []string
	q, err := New(s, Config{Hooks: Hooks{OnEnqueue: func(ctx context.Context, queue, id string) {
		seen = append(seen, fmt.Sprint(ctx.Value(key{}), " ", queue, " ", id))
	}}})
	require.NoError(t, err)
	ctx := context.WithValue(context.Background(), key{}, "req")
	enqueue(t, q, Job{ID: "a"}, Job{ID: "a"}, Job{ID: "b", Queue: "emails"})
	_, err = q.Enqueue(ctx, Job{ID: "c"})
	require.NoError(t, err)
	assert.Equal(t, []string{"<nil> default a", "<nil> emails b", "req default c"}, seen)
}

// TestContractUnique: a UniqueKey keeps other jobs with it out for UniqueFor, whether the
// first is waiting or done, within one batch too; jobs without one are not concerned.
func TestContractUnique(t *testing.T) {
	eachStore(t, func(t *testing.T, s Store, advance func(time.Duration)) {
		q, err := New(s, Config{})
		require.NoError(t, err)
		ctx := context.Background()
		digest := func(id string) Job { return Job{ID: id, UniqueKey: "digest:42", UniqueFor: time.Hour} }
		out := enqueue(t, q, digest("a"), digest("b"), Job{ID: "plain"}, Job{ID: "other", UniqueKey: "digest:7", UniqueFor: time.Hour})
		assert.Equal(t, []bool{false, true, false, false}, []bool{out[0].Duplicate, out[1].Duplicate, out[2].Duplicate, out[3].Duplicate})
		assert.Equal(t, "a", out[1].ID, "a duplicate names the job holding the key")
		got := claimIDs(t, s, DefaultQueue, 10)
		require.Len(t, got, 3)
		for _, c := range got {
			ok, err := s.backend().settle(ctx, []op{{kind: opAck, queue: DefaultQueue, id: c.ID, token: c.token}})
			require.NoError(t, err)
			require.True(t, ok[0])
		}
		again := enqueue(t, q, digest("c"), Job{UniqueKey: "digest:42", UniqueFor: time.Hour})
		assert.Equal(t, []Enqueued{{ID: "a", Duplicate: true}, {ID: "a", Duplicate: true}}, again,
			"done, and the key still holds, for a job with a random ID too")
		other, err := q.Enqueue(ctx, Job{ID: "d", Queue: "elsewhere", UniqueKey: "digest:42", UniqueFor: time.Hour})
		require.NoError(t, err)
		assert.False(t, other.Duplicate, "keys are per queue")
		advance(time.Hour + time.Second)
		assert.False(t, enqueue(t, q, digest("e"))[0].Duplicate, "the key expired")
		assert.Equal(t, []string{"e"}, ids(claimIDs(t, s, DefaultQueue, 10)))

		for _, bad := range []Job{{UniqueKey: "k"}, {UniqueKey: "k", UniqueFor: -time.Second}, {UniqueKey: string(make([]byte, 129)), UniqueFor: time.Hour}} {
			_, err := q.Enqueue(ctx, bad)
			assert.ErrorIs(t, err, ErrInvalidJob)
		}
	})
}

// TestMemoryUniqueKeysSwept: expired UniqueKeys do not pile up in a MemoryStore.
func TestMemoryUniqueKeysSwept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := NewMemoryStore(MemoryConfig{})
		require.NoError(t, err)
		q, err := New(s, Config{})
		require.NoError(t, err)
		for round := range 10 {
			for i := range 100 {
				enqueue(t, q, Job{UniqueKey: fmt.Sprint(round, "-", i), UniqueFor: time.Second})
			}
			time.Sleep(2 * time.Second)
		}
		assert.LessOrEqual(t, len(s.queue(DefaultQueue).unique), 200, "at most the live keys and one round before a sweep")
	})
}

// TestContractExpiredLeaseUntilClaim: an expired lease stays the worker's until a claim takes
// it back: QueueStats, Dead and Redrive count it running and leave it (the worker may still
// extend it), and only claims count interruptions toward MaxInterrupted.
func TestContractExpiredLeaseUntilClaim(t *testing.T) {
	eachStore(t, func(t *testing.T, s Store, advance func(time.Duration)) {
		q := newQueue(t, s)
		b := s.backend()
		ctx := context.Background()
		enqueue(t, q, Job{ID: "j"})
		for round := 1; round <= 3; round++ {
			c, err := claim(ctx, b, DefaultQueue, 1, time.Second, 3)
			require.NoError(t, err)
			require.Len(t, c, 1, "round %d", round)
			advance(2 * time.Second)
			st, err := q.QueueStats(ctx, DefaultQueue)
			require.NoError(t, err)
			assert.Equal(t, QueueStats{Running: 1}, st, "round %d", round)
			_, err = q.Dead(ctx, DefaultQueue, 10)
			require.NoError(t, err)
			_, err = q.RedriveAll(ctx, DefaultQueue)
			require.NoError(t, err)
			ok, err := b.settle(ctx, []op{{kind: opExtend, queue: DefaultQueue, id: "j", token: c[0].token, lease: time.Second}})
			require.NoError(t, err)
			assert.True(t, ok[0], "round %d: no claim took the lease back", round)
			advance(2 * time.Second)
		}
		none, err := claim(ctx, b, DefaultQueue, 1, time.Second, 3)
		require.NoError(t, err)
		assert.Empty(t, none, "dead after 3 interruptions")
	})
}

// TestContractDeadExpiredNotDuplicate: a dead job past its retention does not make its ID a
// duplicate, with no other call to the store in between.
func TestContractDeadExpiredNotDuplicate(t *testing.T) {
	eachStore(t, func(t *testing.T, s Store, advance func(time.Duration)) {
		q := newQueue(t, s)
		ctx := context.Background()
		enqueue(t, q, Job{ID: "x"}, Job{ID: "y", Queue: "other"})
		c := claimIDs(t, s, DefaultQueue, 1)
		_, err := s.backend().settle(ctx, []op{{kind: opDead, queue: DefaultQueue, id: "x", token: c[0].token, err: "e"}})
		require.NoError(t, err)
		advance(DefaultDeadRetention + time.Second)
		assert.False(t, enqueue(t, q, Job{ID: "x"})[0].Duplicate)
		got := claimIDs(t, s, DefaultQueue, 10)
		require.Len(t, got, 1)
		assert.Equal(t, 1, got[0].Attempt, "a new job")
	})
}

// TestContractPriorityExtremes: a delivery carries its job's priority as given, whatever the
// int (on Redis the order is exact only where a float64 holds it).
func TestContractPriorityExtremes(t *testing.T) {
	eachStore(t, func(t *testing.T, s Store, _ func(time.Duration)) {
		q := newQueue(t, s)
		ctx := context.Background()
		enqueue(t, q, Job{ID: "min", Priority: math.MinInt64}, Job{ID: "max", Priority: math.MaxInt64},
			Job{ID: "odd", Priority: 1<<53 + 1})
		got := claimIDs(t, s, DefaultQueue, 10)
		require.Equal(t, []string{"max", "odd", "min"}, ids(got))
		assert.Equal(t, math.MaxInt64, got[0].Priority)
		assert.Equal(t, 1<<53+1, got[1].Priority)
		assert.Equal(t, math.MinInt64, got[2].Priority)
		_, err := s.backend().settle(ctx, []op{{kind: opDead, queue: DefaultQueue, id: "max", token: got[0].token, err: "e"}})
		require.NoError(t, err)
		dead, err := q.Dead(ctx, DefaultQueue, 10)
		require.NoError(t, err)
		require.Len(t, dead, 1)
		assert.Equal(t, math.MaxInt64, dead[0].Priority)
	})
}

// claim leases up to n due jobs of queue, settling nothing.
func claim(ctx context.Context, b backend, queue string, n int, lease time.Duration, maxInterrupted int) ([]claimed, error) {
	got, _, err := b.settleClaim(ctx, queue, nil, n, lease, maxInterrupted)
	return got, err
}

// TestContractSettleClaim: settlements sent with a claim apply before it, with the fencing of
// settle: a stale token is refused, an ack removes its job, a retry due at once and a release
// make their jobs claimable by that very claim.
func TestContractSettleClaim(t *testing.T) {
	eachStore(t, func(t *testing.T, s Store, _ func(time.Duration)) {
		q := newQueue(t, s)
		ctx := context.Background()
		b := s.backend()
		enqueue(t, q, Job{ID: "ack"}, Job{ID: "retry"}, Job{ID: "release"}, Job{ID: "stale"})
		got := claimIDs(t, s, DefaultQueue, 4)
		require.Len(t, got, 4)
		tok := map[string]int64{}
		for _, c := range got {
			tok[c.ID] = c.token
		}
		ops := []op{
			{kind: opAck, queue: DefaultQueue, id: "ack", token: tok["ack"]},
			{kind: opRetry, queue: DefaultQueue, id: "retry", token: tok["retry"], err: "e"},
			{kind: opRelease, queue: DefaultQueue, id: "release", token: tok["release"]},
			{kind: opAck, queue: DefaultQueue, id: "stale", token: tok["stale"] + 1},
		}
		again, ok, err := b.settleClaim(ctx, DefaultQueue, ops, 10, time.Minute, 3)
		require.NoError(t, err)
		assert.Equal(t, []bool{true, true, true, false}, ok)
		assert.ElementsMatch(t, []string{"retry", "release"}, ids(again), "claimed after their settlements")
		for _, c := range again {
			if c.ID == "retry" {
				assert.Equal(t, 2, c.Attempt, "the retry counted an attempt")
			} else {
				assert.Equal(t, 1, c.Deliveries, "the release did not count a delivery")
			}
		}
		st, err := q.QueueStats(ctx, DefaultQueue)
		require.NoError(t, err)
		assertStats(t, QueueStats{Running: 3}, st) // retry, release, and stale (still leased)
	})
}
