package breaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"
)

// Outcome is how a call counts. The zero value is OutcomeSuccess.
type Outcome uint8

// The outcomes of a call.
const (
	// OutcomeSuccess counts toward closing (half-open) and ends a run of consecutive failures
	// (closed).
	OutcomeSuccess Outcome = iota
	// OutcomeFailure counts toward opening.
	OutcomeFailure
	// OutcomeIgnored does not count: the call says nothing about the dependency (the caller
	// gave up).
	OutcomeIgnored
)

// String returns "success", "failure" or "ignored".
func (o Outcome) String() string {
	switch o {
	case OutcomeSuccess:
		return "success"
	case OutcomeFailure:
		return "failure"
	case OutcomeIgnored:
		return "ignored"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Classifier decides how a call counts from the call's context, its error and its duration.
// It must be safe for concurrent use.
type Classifier func(ctx context.Context, err error, d time.Duration) Outcome

// DefaultClassifier counts a call whose context has ended, or whose error is context.Canceled,
// as OutcomeIgnored (a client that went away says nothing about the dependency), any other
// error as OutcomeFailure, and nil as OutcomeSuccess.
func DefaultClassifier(ctx context.Context, err error, _ time.Duration) Outcome {
	switch {
	case err == nil:
		return OutcomeSuccess
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		return OutcomeIgnored
	}
	return OutcomeFailure
}

// Config configures a Breaker. The zero value is ready to use: open after 5 consecutive
// failures, for 30s, then one probe call decides. A Config is a plain value; New copies it.
type Config struct {
	// Name names the breaker in errors, hooks and logs. Breakers sharing a Store are matched by
	// it, so it is required with a Store. Default: "".
	Name string
	// Failures is how many consecutive failures open the breaker. Default: 5.
	Failures int
	// DisableConsecutiveFailures turns the Failures rule off, for a breaker that opens on
	// FailureRate only. Default: false.
	DisableConsecutiveFailures bool
	// FailureRate, when positive, also opens the breaker when at least this share of the calls
	// of the last Window failed (0.5 is half), once the window holds MinCalls calls. It must be
	// within 0 and 1. Default: 0 (no rate rule).
	FailureRate float64
	// MinCalls is the fewest calls in the window for FailureRate to apply (at most
	// WindowCalls). Default: 20.
	MinCalls int
	// Window is the period FailureRate looks at. Default: 10s.
	Window time.Duration
	// WindowCalls, when positive, makes FailureRate look at the last WindowCalls calls instead
	// of a period. With a Store the shared window is an estimate: each batch's calls are added
	// and the totals scaled back to WindowCalls, as if failures were spread evenly. Default: 0
	// (a period).
	WindowCalls int
	// OpenDuration is how long the breaker stays open before probing. Default: 30s.
	OpenDuration time.Duration
	// MaxOpenDuration, when above OpenDuration, makes each reopening from half-open double the
	// open duration up to this bound, with full jitter so that instances that opened together do
	// not probe together. Default: 0 (OpenDuration every time).
	MaxOpenDuration time.Duration
	// Probes is how many calls half-open lets through at once. Default: 1.
	Probes int
	// Successes is how many successful probes close the breaker. Default: Probes.
	Successes int
	// ProbeTimeout is the lease of a probe: a probe whose outcome is not reported within it
	// (hung, lost, never Done) frees its place for another probe. Default: OpenDuration.
	ProbeTimeout time.Duration
	// SlowCall, when positive, counts successful calls slower than it as failures. Default: 0
	// (off).
	SlowCall time.Duration
	// Classify decides how each call counts. Default: DefaultClassifier.
	Classify Classifier
	// Hooks observe the breaker. Default: none.
	Hooks Hooks
	// Logger receives the breaker's transitions: to open at Warn, to half-open and closed at
	// Info; never a line per call. Default: slog.Default().
	Logger *slog.Logger
	// Store, when set, shares the breaker's state with the breakers of the same Name on other
	// instances (see [Store]); instances sharing a name should use the same policy settings.
	// Default: nil (this process only).
	Store Store
}

// Hooks are optional callbacks, called after the change they report, outside any lock, so they
// may call the breaker back. ctx is the context of the call that caused the change, or
// context.Background() for a change learnt from the Store, reported on the store's goroutine.
// Hooks must be safe for concurrent use, and short. The zero value has no hooks.
type Hooks struct {
	// OnStateChange is called after each transition, with a snapshot taken right after it.
	OnStateChange func(ctx context.Context, name string, from, to State, s Stats)
	// OnOutcome is called for every outcome reported, with the call's duration and whether the
	// outcome counted (false for ignored outcomes, and for outcomes of a previous state, which
	// never change the current one).
	OnOutcome func(ctx context.Context, name string, o Outcome, d time.Duration, counted bool)
	// OnRejected is called for every call refused, with the error the caller receives: the
	// breaker is open (or forced open), or half-open with every probe busy.
	OnRejected func(ctx context.Context, name string, err *OpenError)
}

// withDefaults checks the policy settings of c and fills in their defaults. field names c in
// errors: "Config", or "RegistryConfig.Config" for a Registry's template.
func (c Config) withDefaults(field string) (Config, error) {
	invalid := func(name string, v any, why string) error {
		return fmt.Errorf("%w: %s.%s %v %s", ErrInvalidConfig, field, name, v, why)
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"Failures", int64(c.Failures)}, {"MinCalls", int64(c.MinCalls)}, {"Window", int64(c.Window)},
		{"WindowCalls", int64(c.WindowCalls)}, {"OpenDuration", int64(c.OpenDuration)},
		{"MaxOpenDuration", int64(c.MaxOpenDuration)}, {"Probes", int64(c.Probes)},
		{"Successes", int64(c.Successes)}, {"ProbeTimeout", int64(c.ProbeTimeout)}, {"SlowCall", int64(c.SlowCall)},
	} {
		if f.v < 0 {
			return c, invalid(f.name, f.v, "is negative")
		}
	}
	if !(c.FailureRate >= 0 && c.FailureRate <= 1) {
		return c, invalid("FailureRate", c.FailureRate, "is not within 0 and 1")
	}
	if c.Failures == 0 {
		c.Failures = 5
	}
	if c.DisableConsecutiveFailures {
		c.Failures = math.MaxInt
	}
	if c.MinCalls == 0 {
		c.MinCalls = 20
	}
	if c.WindowCalls > 0 {
		c.MinCalls = min(c.MinCalls, c.WindowCalls)
	}
	if c.Window == 0 {
		c.Window = 10 * time.Second
	}
	if c.OpenDuration == 0 {
		c.OpenDuration = 30 * time.Second
	}
	if c.Probes == 0 {
		c.Probes = 1
	}
	if c.Successes == 0 {
		c.Successes = c.Probes
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = c.OpenDuration
	}
	if c.Store != nil && c.Store.batcher() == nil {
		return c, fmt.Errorf("%w: %s.Store was not made by NewMemoryStore or NewRedisStore", ErrInvalidConfig, field)
	}
	return c, nil
}
