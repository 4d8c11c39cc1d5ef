package queue

import (
	"context"
	"encoding/json"
	"fmt"
)

// EnqueueJSON enqueues job with v, encoded as JSON, as its payload. Its error wraps
// ErrInvalidJob when v cannot be encoded.
func EnqueueJSON[T any](ctx context.Context, q *Queue, job Job, v T) (Enqueued, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Enqueued{}, fmt.Errorf("%w: payload: %w", ErrInvalidJob, err)
	}
	job.Payload = b
	return q.Enqueue(ctx, job)
}

// JSONHandler returns a Handler that decodes each payload as JSON into a T for fn. A payload
// that does not decode can never succeed: the job is dead at once (NonRetryable), with the
// decoding error.
func JSONHandler[T any](fn func(ctx context.Context, d *Delivery, v T) error) Handler {
	return func(ctx context.Context, d *Delivery) error {
		var v T
		if err := json.Unmarshal(d.Payload, &v); err != nil {
			return NonRetryable(fmt.Errorf("queue: decoding the payload of job %s: %w", d.ID, err))
		}
		return fn(ctx, d, v)
	}
}
