package queue

import (
	"context"
	"time"
)

// Store keeps the jobs of every queue: a [MemoryStore] in this process, or a [RedisStore] shared
// by every instance. It is sealed: the front types and their stores work as one
// protocol, with the same semantics on every store:
//
//   - A job is waiting (due or scheduled), running (claimed under a lease), or dead. A job that
//     succeeds is removed.
//   - A claim leases a job to one worker until the lease's deadline; each claim gets a new
//     fencing token, and a settlement (ack, retry, dead, release, extend) with an older token
//     is refused, so a worker that lost its lease can change nothing.
//   - A paused queue's jobs are not claimed; everything else goes on (enqueues, the runs in
//     progress and their settlements).
//   - A job whose lease expired is waiting again at its next claim, which counts the
//     interrupted run; after maxInterrupted of them the job is dead.
//   - Times are the store's: the process clock in memory, Redis TIME on Redis.
type Store interface {
	backend() backend
}

// backend is the protocol of a store. Every method is one round trip on Redis.
type backend interface {
	// enqueue stores normalized jobs and reports, for each, "" when it stored it, or the ID
	// of the job that made it a duplicate (its own ID, or the holder of its UniqueKey).
	enqueue(ctx context.Context, jobs []Job) (held []string, err error)
	// settleClaim applies ops (settlements of queue's jobs, as settle does; ok[i] as there),
	// then leases up to n due jobs of queue for lease: the highest priority first, then the
	// earliest RunAt, then the first enqueued. It makes due scheduled jobs waiting, and takes
	// back jobs whose lease expired first (counting an interrupted run; a job interrupted
	// maxInterrupted times becomes dead instead). One round trip on Redis for both.
	settleClaim(ctx context.Context, queue string, ops []op, n int, lease time.Duration, maxInterrupted int) (got []claimed, ok []bool, err error)
	// settle applies ops in order; ok[i] is false when op i's token was not the job's (the
	// lease was lost: nothing changed).
	settle(ctx context.Context, ops []op) (ok []bool, err error)
	// wait returns when a job of queue may be due (one was enqueued or released, or a
	// scheduled one's time came), when ctx ends, or after timeout, whichever is first.
	wait(ctx context.Context, queue string, timeout time.Duration) error
	// stats counts the jobs of queue.
	stats(ctx context.Context, queue string) (QueueStats, error)
	// dead lists up to limit dead jobs of queue, the most recent first.
	dead(ctx context.Context, queue string, limit int) ([]DeadJob, error)
	// redrive makes dead jobs of queue waiting again, due now with their attempts reset, and
	// returns how many it found; ids nil means all of them.
	redrive(ctx context.Context, queue string, ids []string) (int, error)
	// pause stops (paused) or restarts the claims of queue's jobs; a restart wakes waiters.
	pause(ctx context.Context, queue string, paused bool) error
	// queues lists the queues that a job was ever enqueued on, sorted.
	queues(ctx context.Context) ([]string, error)
}

// claimed is a job leased to a worker.
type claimed struct {
	Delivery
	token    int64     // the fencing token of this claim
	deadline time.Time // the lease's end, on the store's clock
}

// opKind is what a settlement does.
type opKind uint8

const (
	opAck     opKind = iota // the handler succeeded: remove the job
	opRetry                 // the handler failed: waiting again op.delay from now, one more attempt counted
	opDead                  // the handler failed for the last time: dead, with op.err
	opRelease               // the run was stopped (shutdown): waiting again now, no attempt counted
	opExtend                // the run goes on: the lease ends op.lease from now
)

// op settles one claimed job.
type op struct {
	kind  opKind
	queue string
	id    string
	token int64
	delay time.Duration // opRetry: how long from now (the store's clock) the job waits
	lease time.Duration // opExtend: the new lease, from now
	err   string        // opRetry, opDead: the failure's message
}

// QueueStats counts the jobs of one queue, at one instant of the store.
type QueueStats struct {
	// Due counts waiting jobs whose time has come; Scheduled, those whose time is to come
	// (delayed, or waiting to be retried).
	Due, Scheduled int
	// Running counts claimed jobs, expired leases included until a claim takes them back.
	Running int
	// Dead counts dead jobs kept.
	Dead int
	// Lag is how long the oldest due job has been due; 0 when none is.
	Lag time.Duration
	// Paused says that no worker claims the queue's jobs (see Queue.Pause).
	Paused bool
}
