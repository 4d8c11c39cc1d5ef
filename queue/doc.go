// Package queue runs heavy work (emails, PDFs, analytics) in background workers, so that an
// API does the minimum at once and responds: at-least-once jobs with leases, retries, delays,
// priorities and dead jobs, in process memory ([MemoryStore]) or shared through Redis by every
// instance ([RedisStore]: any instance enqueues, any worker process runs).
//
//	store, _ := queue.NewMemoryStore(queue.MemoryConfig{})
//	q, _ := queue.New(store, queue.Config{})
//	q.Enqueue(ctx, queue.Job{Queue: "emails", Payload: body})  // in the request: returns at once
//
//	w, _ := queue.NewWorker(store, queue.WorkerConfig{Queues: map[string]queue.QueueConfig{
//		"emails": {Handler: send, Concurrency: 10},
//	}})
//	w.Run(ctx) // until ctx ends (SIGTERM), then a graceful shutdown
//
// # Delivery
//
// Jobs run at least once: a handler must be idempotent (the job's ID is a key for that). A
// worker claims a job under a lease (WorkerConfig.Lease, 30 s) and extends it while the
// handler runs, so a long job stays one worker's. Each claim carries a fencing token: once a
// lease is lost (the worker stalled past it and another claimed the job), the first worker's
// handler context ends with ErrLeaseLost and nothing it reports is recorded; a worker cut off
// from the store stops its runs the same way once their leases are surely over. A worker that
// dies leaves its jobs to be claimed again when their leases expire; such interrupted runs use
// no attempt, but a job interrupted MaxInterrupted times (3) is dead, so a job that kills its
// workers does not loop forever.
//
// A handler's error fails the run: the job waits WorkerConfig.Backoff (full jitter over
// min(1 h, 1 s·2^(n-1)) by default) and runs again, until Job.MaxAttempts (25) failures make
// it dead. [NonRetryable] errors and panics fail it too, the first at once for good. Dead jobs
// are kept (MemoryConfig.DeadRetention, 7 days) for [Queue.Dead] and [Queue.Redrive].
//
// Job IDs are idempotency keys: enqueuing an ID the store still holds (waiting, running or
// dead) stores nothing and says so (Enqueued.Duplicate), so a request retried after a timeout
// enqueues its job once. Job.UniqueKey goes further: one job per key for Job.UniqueFor, done
// or not.
//
// # Order and waiting
//
// Due jobs of a queue run by Job.Priority (higher first), then by when they became due, then
// by enqueue order; a delayed job (Job.Delay, Job.RunAt) waits for its time. An idle worker
// does not poll: it waits on the store, woken by the next enqueue or when the next delayed job
// is due (WorkerConfig.IdleWait bounds one wait).
//
// # Priorities across queues
//
// By default each queue has its own QueueConfig.Concurrency on a worker, whatever the others
// do. With WorkerConfig.Concurrency the queues share that many slots: queues with jobs to run
// get them in proportion to their QueueConfig.Weight (weighted), or, with
// WorkerConfig.StrictPriority, by rank: a queue runs only while every queue of higher Weight
// is empty. Either way a queue with nothing to run leaves its share to the others, a queue's
// own Concurrency still caps its part, and running jobs are never stopped to make room.
//
//	w, _ := queue.NewWorker(store, queue.WorkerConfig{Concurrency: 20, Queues: map[string]queue.QueueConfig{
//		"critical": {Handler: charge, Weight: 6},
//		"default":  {Handler: send, Weight: 3},
//		"low":      {Handler: report, Weight: 1, Concurrency: 5},
//	}})
//
// # Inspection
//
// [Queue.Queues] lists the queues, [Queue.QueueStats] counts a queue's jobs by state (with the
// lag of its oldest due job), [Queue.Dead] lists its dead jobs and [Queue.Redrive] runs them
// again. [Queue.Pause] holds a queue's jobs on every worker of every instance until
// [Queue.Resume] (during an incident downstream, say). [Queue.Handler] serves the same
// readings as JSON, read-only, behind an authorization hook that it requires.
//
// # Shutdown
//
// When Run's context ends, the worker stops claiming, lets running jobs finish for
// ShutdownTimeout (25 s, within Kubernetes' 30 s), then cancels the rest and gives their jobs
// back, due at once, without counting an attempt. Stop readiness first (see package health),
// so that no new work arrives meanwhile.
//
// # Tests
//
// A [MemoryStore] is the fake for application tests, with the semantics of every store. Call
// [Worker.Work] to run the due jobs at a known point instead of running the worker in the
// background, and move time in a testing/synctest bubble to reach delayed jobs and retries.
//
// # Backends
//
// Both stores keep one contract, tested by one suite on memory, miniredis, Redis, Cluster and
// Sentinel. The RedisStore runs each operation as one Lua script under the queue's hash tag
// (one round trip per enqueue batch, claim batch and settlement batch; a busy Worker claims for
// most of its free slots at once and sends its runs' settlements with its next claim, well
// under one round trip per job), reads time from Redis TIME only, and has no goroutine. An idle
// Worker blocks on Redis (BLPOP, at most a second at a time) rather than polling: that holds
// one pooled connection per queue it serves, so give the client a PoolSize of at least the
// number of queues plus a few for claims and settlements.
//
// # Redis keys
//
// Every key of queue q starts with Prefix+"{"+q+"}:" (one Cluster slot per queue): :due,
// :sched, :run and :dead are sorted sets of job IDs by state, :seq counts enqueues, :wake wakes
// idle workers, :paused marks a paused queue, :u:<key> holds a UniqueKey until it expires, and
// :j:<id> is a job's hash (payload, priority, attempts, token, times). A dead job's hash
// expires DeadRetention after its death. One more key, Prefix+"queues", is the set of queue
// names that Queues lists. Keep Redis's maxmemory-policy at noeviction: an evicted job is
// lost.
//
// # Observability
//
// [Queue.Stats] and [Worker.Stats] count enqueues, runs and their outcomes in this process;
// [Queue.QueueStats] counts a queue's jobs by state in the store, with the lag of the oldest
// due job. [Hooks] see each enqueue and run with its context.
package queue
