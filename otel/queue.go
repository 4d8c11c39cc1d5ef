package otel

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/outgrow/outgrow/queue"
)

// The attribute keys of queue's measurements.
const (
	// AttrQueue is a queue's name (Job.Queue).
	AttrQueue = attribute.Key("outgrow.queue.name")
	// AttrRunOutcome is how a run ended: "succeeded", "retried" or "dead".
	AttrRunOutcome = attribute.Key("outgrow.queue.outcome")
	// AttrJobState is a job's state in the store: "due", "scheduled", "running" or "dead".
	AttrJobState = attribute.Key("outgrow.queue.state")
)

// queueSets are the options of one queue's hook measurements, as slices to pass on without
// allocating: the queue alone, and with each run outcome.
type queueSets struct {
	add  []metric.AddOption
	runs [3][]metric.RecordOption
}

var runOutcomes = [3]string{"succeeded", "retried", "dead"}

// queueSets returns the options of queue q, built once (a map lookup, not a key built per
// call).
func (t *Telemetry) queueSets(q string) *queueSets {
	if v, ok := t.queues.Load(q); ok {
		return v.(*queueSets)
	}
	n := AttrQueue.String(q)
	sets := &queueSets{add: []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(n))}}
	for i, o := range runOutcomes {
		sets.runs[i] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(n, AttrRunOutcome.String(o)))}
	}
	return t.cache(&t.queues, q, sets).(*queueSets)
}

type queueInstruments struct {
	enqueued, leaseLost metric.Int64Counter
	runDuration         metric.Float64Histogram
	jobs                metric.Int64ObservableUpDownCounter
	lag                 metric.Float64ObservableGauge
}

func (in *queueInstruments) build(b *builder) {
	in.enqueued = b.events("outgrow.queue.enqueued", "{job}",
		"Jobs stored by Enqueue (duplicates not counted), by queue.")
	in.leaseLost = b.events("outgrow.queue.lease_lost", "{run}",
		"Runs whose lease the worker lost: their outcome was not recorded, and the job runs again.")
	in.runDuration = b.duration("outgrow.queue.run.duration",
		"Duration of the handler runs of a Worker, by queue and outcome (succeeded, retried, dead); its count is the runs.")
	in.jobs = b.upDown("outgrow.queue.jobs", "{job}",
		"Jobs of a queue in the store, by state (due, scheduled, running, dead): all instances' together.")
	in.lag = b.floatGauge("outgrow.queue.lag", "s",
		"How long the oldest due job of a queue has been due: 0 when none is.")
}

// QueueHooks returns the Hooks of a Queue and its Workers, calling next's too: each job
// stored counts in outgrow.queue.enqueued, each run that ended is recorded in
// outgrow.queue.run.duration by queue and outcome, and each lost lease counts in
// outgrow.queue.lease_lost. An enqueue adds the span event outgrow.queue.enqueued (queue; never
// the job's ID or payload) to the caller's span when it records.
func (t *Telemetry) QueueHooks(next queue.Hooks) queue.Hooks {
	in := &t.qu
	h := next
	h.OnEnqueue = func(ctx context.Context, q, id string) {
		in.enqueued.Add(ctx, 1, t.queueSets(q).add...)
		if span := recordingSpan(ctx); span != nil {
			span.AddEvent("outgrow.queue.enqueued", trace.WithAttributes(AttrQueue.String(q)))
		}
		if next.OnEnqueue != nil {
			next.OnEnqueue(ctx, q, id)
		}
	}
	h.OnDone = func(ctx context.Context, d *queue.Delivery, took time.Duration, err error, retryAt time.Time) {
		outcome := 0 // succeeded
		switch {
		case err != nil && !retryAt.IsZero():
			outcome = 1 // retried
		case err != nil:
			outcome = 2 // dead
		}
		in.runDuration.Record(ctx, took.Seconds(), t.queueSets(d.Queue).runs[outcome]...)
		if next.OnDone != nil {
			next.OnDone(ctx, d, took, err, retryAt)
		}
	}
	h.OnLeaseLost = func(ctx context.Context, d *queue.Delivery) {
		in.leaseLost.Add(ctx, 1, t.queueSets(d.Queue).add...)
		if next.OnLeaseLost != nil {
			next.OnLeaseLost(ctx, d)
		}
	}
	return h
}

// ObserveQueues reports, at each collection, the jobs of the named queues of q's store by
// state (outgrow.queue.jobs) and their lag (outgrow.queue.lag). Each collection reads the
// store once per queue (a round trip on Redis); a queue whose read fails is left out of that
// collection. Unregister the result to stop.
func (t *Telemetry) ObserveQueues(q *queue.Queue, queues ...string) (metric.Registration, error) {
	type observed struct {
		name   string
		states [4]metric.ObserveOption
		plain  metric.ObserveOption
	}
	obs := make([]observed, len(queues))
	ids := make([]string, len(queues))
	for i, name := range queues {
		n := AttrQueue.String(name)
		obs[i] = observed{name: name, plain: metric.WithAttributeSet(attribute.NewSet(n))}
		for j, s := range []string{"due", "scheduled", "running", "dead"} {
			obs[i].states[j] = metric.WithAttributeSet(attribute.NewSet(n, AttrJobState.String(s)))
		}
		ids[i] = fmt.Sprintf("queue %q", name)
	}
	in := &t.qu
	return t.observe(ids, func(ctx context.Context, o metric.Observer) error {
		for _, ob := range obs {
			st, err := q.QueueStats(ctx, ob.name)
			if err != nil {
				continue
			}
			for j, v := range []int{st.Due, st.Scheduled, st.Running, st.Dead} {
				o.ObserveInt64(in.jobs, int64(v), ob.states[j])
			}
			o.ObserveFloat64(in.lag, st.Lag.Seconds(), ob.plain)
		}
		return nil
	}, in.jobs, in.lag)
}
