package queue

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync/atomic"
	"time"
)

// Config configures a [Queue]. The zero value is ready to use.
type Config struct {
	// Hooks observe the Queue. Default: none.
	Hooks Hooks
}

// Hooks are optional functions called as jobs are enqueued and run, with the context of the
// call that caused the event (a request's for Enqueue, the job's for a run), so that a span
// or a request-scoped logger can be attached. A Queue calls OnEnqueue; a Worker, the others.
// They are called synchronously and must be quick and safe for concurrent use. The zero value
// calls nothing.
type Hooks struct {
	// OnEnqueue follows each job stored (not duplicates).
	OnEnqueue func(ctx context.Context, queue, id string)
	// OnStart precedes each run of a handler.
	OnStart func(ctx context.Context, d *Delivery)
	// OnDone follows each run whose outcome the store recorded, once it did: err is what the
	// handler returned (or its panic), nil on success; retryAt is when the job runs again,
	// zero when it is done or dead. ctx is the run's, without its cancellation.
	OnDone func(ctx context.Context, d *Delivery, took time.Duration, err error, retryAt time.Time)
	// OnLeaseLost follows each run whose outcome the store did not confirm: the worker lost
	// the lease (nothing was recorded), or the store did not answer the settlement (it may have
	// been recorded: the job may be done, with no OnDone). ctx is the run's, without its
	// cancellation when the loss showed at the settlement.
	OnLeaseLost func(ctx context.Context, d *Delivery)
}

// Queue enqueues jobs into a [Store] and inspects its queues; a [Worker] runs them.
//
// The zero value is not usable; create a Queue with [New]. A Queue is safe for concurrent use
// and has no goroutine.
type Queue struct {
	store           backend
	hooks           Hooks
	enqueued, dupes atomic.Uint64
}

// New returns a Queue over store.
func New(store Store, cfg Config) (*Queue, error) {
	if store == nil {
		return nil, fmt.Errorf("%w: store is nil", ErrInvalidConfig)
	}
	return &Queue{store: store.backend(), hooks: cfg.Hooks}, nil
}

// newID returns a random job ID: 128 bits, base32.
func newID() string { return rand.Text() }

// Enqueue stores job and returns at once: a worker runs it when it is due. Its error wraps
// ErrInvalidJob for a job that cannot be stored, and ErrUnavailable when the store cannot be
// reached (the job may then have been stored: enqueue it again with the same ID to be sure,
// which stores it at most once).
func (q *Queue) Enqueue(ctx context.Context, job Job) (Enqueued, error) {
	out, err := q.EnqueueMany(ctx, []Job{job})
	if err != nil {
		return Enqueued{}, err
	}
	return out[0], nil
}

// EnqueueMany stores jobs in one round trip per queue, and reports what it did with each, in
// order. A job whose ID appears earlier in jobs is a duplicate. Nothing is stored if one job is
// invalid.
func (q *Queue) EnqueueMany(ctx context.Context, jobs []Job) ([]Enqueued, error) {
	now := time.Now()
	norm := make([]Job, len(jobs))
	for i, j := range jobs {
		n, err := j.normalize(now, newID)
		if err != nil {
			return nil, fmt.Errorf("jobs[%d]: %w", i, err)
		}
		norm[i] = n
	}
	held, err := q.store.enqueue(ctx, norm)
	if err != nil {
		return nil, err
	}
	out := make([]Enqueued, len(norm))
	for i, j := range norm {
		out[i] = Enqueued{ID: j.ID}
		if held[i] != "" {
			out[i] = Enqueued{ID: held[i], Duplicate: true}
			q.dupes.Add(1)
			continue
		}
		q.enqueued.Add(1)
		if h := q.hooks.OnEnqueue; h != nil {
			h(ctx, j.Queue, j.ID)
		}
	}
	return out, nil
}

// QueueStats counts the jobs of queue in the store: all instances' together.
func (q *Queue) QueueStats(ctx context.Context, queue string) (QueueStats, error) {
	if !validName(queue, maxQueueLen) {
		return QueueStats{}, fmt.Errorf("%w: queue name %q", ErrInvalidJob, queue)
	}
	return q.store.stats(ctx, queue)
}

// MaxDeadLimit caps the limit of one Dead call, so that one call stays short and bounded in
// memory.
const MaxDeadLimit = 1000

// Dead lists up to limit (at most MaxDeadLimit) dead jobs of queue, the most recent first.
func (q *Queue) Dead(ctx context.Context, queue string, limit int) ([]DeadJob, error) {
	if !validName(queue, maxQueueLen) {
		return nil, fmt.Errorf("%w: queue name %q", ErrInvalidJob, queue)
	}
	if limit <= 0 {
		return nil, nil
	}
	return q.store.dead(ctx, queue, min(limit, MaxDeadLimit))
}

// Redrive makes the dead jobs of queue named by ids due again now, with their attempts reset,
// and returns how many it found. With no ids it does nothing: see RedriveAll.
func (q *Queue) Redrive(ctx context.Context, queue string, ids ...string) (int, error) {
	if !validName(queue, maxQueueLen) {
		return 0, fmt.Errorf("%w: queue name %q", ErrInvalidJob, queue)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	return q.store.redrive(ctx, queue, ids)
}

// RedriveAll makes every dead job of queue due again now, with its attempts reset, and returns
// how many there were.
func (q *Queue) RedriveAll(ctx context.Context, queue string) (int, error) {
	if !validName(queue, maxQueueLen) {
		return 0, fmt.Errorf("%w: queue name %q", ErrInvalidJob, queue)
	}
	return q.store.redrive(ctx, queue, nil)
}

// Pause stops every worker, in every instance, from claiming the jobs of queue until Resume:
// jobs are still enqueued, the runs in progress go on and settle, and delayed jobs come due.
// It is for an incident (a downstream system is failing, a bad deploy): pausing a queue that
// does not exist yet is allowed, and holds its first jobs.
func (q *Queue) Pause(ctx context.Context, queue string) error {
	if !validName(queue, maxQueueLen) {
		return fmt.Errorf("%w: queue name %q", ErrInvalidJob, queue)
	}
	return q.store.pause(ctx, queue, true)
}

// Resume lets workers claim the jobs of a paused queue again, at once. Resuming a queue that
// is not paused does nothing.
func (q *Queue) Resume(ctx context.Context, queue string) error {
	if !validName(queue, maxQueueLen) {
		return fmt.Errorf("%w: queue name %q", ErrInvalidJob, queue)
	}
	return q.store.pause(ctx, queue, false)
}

// Queues lists, sorted, the queues of the store that a job was ever enqueued on (by any
// instance, for a RedisStore): the names to pass to QueueStats, Dead and the others.
func (q *Queue) Queues(ctx context.Context) ([]string, error) {
	return q.store.queues(ctx)
}

// Stats counts what this Queue did since New: a snapshot, a plain value.
type Stats struct {
	Enqueued   uint64 // jobs stored
	Duplicates uint64 // jobs not stored because their ID was held
}

// Stats returns the Queue's counters.
func (q *Queue) Stats() Stats {
	return Stats{Enqueued: q.enqueued.Load(), Duplicates: q.dupes.Load()}
}
