package queue

import (
	"errors"
	"fmt"
	"time"
)

// Job is a unit of background work as it is enqueued. Only Payload is usually set; the zero
// value of every other field is a default.
type Job struct {
	// ID names the job, and is its idempotency key while the store holds the job: enqueuing an
	// ID that is waiting, running or dead stores nothing and reports Enqueued.Duplicate. A job
	// that succeeded is gone, and its ID free again: for a key that outlives the job (an
	// Idempotency-Key header), use UniqueKey. It names a Redis key: keep secrets out of it. At
	// most 128 bytes. Default: a random ID.
	ID string
	// Queue is the queue the job waits in; workers serve queues by name. Letters, digits, '-',
	// '_', '.' and ':', at most 64 bytes. Default: "default".
	Queue string
	// Payload is what the handler receives, as it was given. It stays in the store until the
	// job ends (and, for a dead job, until DeadRetention): keep secrets out of it.
	Payload []byte
	// RunAt delays the job until then. Default: now (or Delay from now).
	RunAt time.Time
	// Delay delays the job by this long from the enqueue, when RunAt is zero. Default: 0.
	Delay time.Duration
	// Priority orders the due jobs of a queue: higher runs first, ties in order of RunAt,
	// then of enqueue. Default: 0.
	Priority int
	// MaxAttempts is how many times the handler may fail before the job is dead. Default: 25.
	MaxAttempts int
	// UniqueKey makes the job one of a kind in its queue for UniqueFor from its enqueue: while
	// that lasts, a job with the same UniqueKey is not stored (Enqueued.Duplicate, with the
	// first job's ID), whether the first is waiting, running or done ("one digest per user per
	// hour", or an Idempotency-Key for a day). It names a Redis key: keep secrets out of it. At
	// most 128 bytes. Default: "" (none).
	UniqueKey string
	// UniqueFor is how long UniqueKey holds. Required with UniqueKey.
	UniqueFor time.Duration
}

// Enqueued reports what Enqueue did with a job.
type Enqueued struct {
	// ID is the job's ID, as given or generated; for a duplicate, the ID of the job that was
	// there first (the same ID, or the holder of the UniqueKey).
	ID string
	// Duplicate reports that nothing was stored: a job with this ID was in the store already,
	// or one held the UniqueKey.
	Duplicate bool
}

// Delivery is a job as a handler receives it.
type Delivery struct {
	ID    string
	Queue string
	// Payload is the job's payload. Treat it as read-only: a MemoryStore hands every run the
	// copy it keeps.
	Payload  []byte
	Priority int
	// Attempt is this run's number among the runs that ended in a failure: 1 for the first
	// run, 2 after one failure. Runs interrupted by a crash or a lost lease are not counted.
	Attempt     int
	MaxAttempts int
	// Deliveries counts the times the job was claimed, this one included: it exceeds Attempt
	// when a worker crashed or lost its lease while running it.
	Deliveries int
	// EnqueuedAt is when the job was enqueued; RunAt, when it became due.
	EnqueuedAt, RunAt time.Time
}

// DeadJob is a job that will not run again unless redriven.
type DeadJob struct {
	Delivery
	// LastError is the message of the failure that ended it: the handler's error, or why the
	// store gave up on it ("lease expired N times" for a job that kept crashing its workers).
	LastError string
	// DiedAt is when it became dead.
	DiedAt time.Time
}

// The errors of the package.
var (
	// ErrInvalidConfig is wrapped by the errors of New, NewWorker and the store constructors
	// for a Config that cannot work, naming the field at fault.
	ErrInvalidConfig = errors.New("queue: invalid config")
	// ErrInvalidJob is wrapped by Enqueue's error for a job that cannot be stored (a bad ID or
	// Queue, a negative field), naming the field.
	ErrInvalidJob = errors.New("queue: invalid job")
	// ErrClosed is returned by the calls of a closed Queue or Worker.
	ErrClosed = errors.New("queue: closed")
	// ErrLeaseLost is the cause of a handler context's cancellation when the worker lost the
	// job's lease (it expired, and another worker may run the job now): stop, the outcome will
	// not be recorded.
	ErrLeaseLost = errors.New("queue: lease lost")
	// ErrUnavailable is wrapped by the errors of a store that cannot be reached.
	ErrUnavailable = errors.New("queue: store unavailable")
)

// nonRetryable marks an error that ends a job at once.
type nonRetryable struct{ err error }

func (e nonRetryable) Error() string { return e.err.Error() }
func (e nonRetryable) Unwrap() error { return e.err }

// NonRetryable wraps err so that a handler returning it sends the job to the dead jobs at
// once, whatever attempts are left: for inputs that can never succeed. errors.Is and As see
// through it.
func NonRetryable(err error) error {
	if err == nil {
		return nil
	}
	return nonRetryable{err}
}

// IsNonRetryable reports whether err, or an error it wraps, came from NonRetryable.
func IsNonRetryable(err error) bool {
	var n nonRetryable
	return errors.As(err, &n)
}

// Defaults of Job.
const (
	DefaultQueue       = "default"
	DefaultMaxAttempts = 25
	maxIDLen           = 128
	maxQueueLen        = 64
)

// normalize fills in the defaults of j and checks it, with now the enqueue time.
func (j Job) normalize(now time.Time, newID func() string) (Job, error) {
	invalid := func(field string, v any, why string) error {
		return fmt.Errorf("%w: Job.%s %v %s", ErrInvalidJob, field, v, why)
	}
	if j.ID == "" {
		j.ID = newID()
	}
	if j.Queue == "" {
		j.Queue = DefaultQueue
	}
	switch {
	case len(j.ID) > maxIDLen:
		return j, invalid("ID", len(j.ID), "bytes is more than 128")
	case !validName(j.Queue, maxQueueLen):
		return j, invalid("Queue", fmt.Sprintf("%q", j.Queue), "is not letters, digits, '-', '_', '.' and ':' (at most 64)")
	case j.Delay < 0:
		return j, invalid("Delay", j.Delay, "is negative")
	case j.MaxAttempts < 0:
		return j, invalid("MaxAttempts", j.MaxAttempts, "is negative")
	case len(j.UniqueKey) > maxIDLen:
		return j, invalid("UniqueKey", len(j.UniqueKey), "bytes is more than 128")
	case j.UniqueFor < 0:
		return j, invalid("UniqueFor", j.UniqueFor, "is negative")
	case j.UniqueKey != "" && j.UniqueFor < time.Millisecond:
		return j, invalid("UniqueFor", j.UniqueFor, "is less than 1ms with a UniqueKey")
	}
	if j.MaxAttempts == 0 {
		j.MaxAttempts = DefaultMaxAttempts
	}
	if j.RunAt.IsZero() {
		j.RunAt = now.Add(j.Delay)
	}
	return j, nil
}

// validName reports whether s is a queue name: 1 to max bytes of [A-Za-z0-9._:-].
func validName(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}
