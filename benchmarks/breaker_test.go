package benchmarks

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/sony/gobreaker/v2"

	"github.com/outgrow/outgrow/breaker"
)

// Circuit breakers, side by side: the cost a breaker adds to a successful call while closed, the
// cost of refusing a call while open, the cost of a failure-rate window, and the cost of the HTTP
// client wrapper. Unless a benchmark says otherwise, each library trips after 5 consecutive
// failures and stays open for an hour.

var errBench = errors.New("down")

// quiet keeps the breakers' transitions (a benchmark trips them on purpose) out of the output.
var quiet = slog.New(slog.DiscardHandler)

func outgrowBreaker(b *testing.B) *breaker.Breaker {
	br, err := breaker.New(breaker.Config{Name: "bench", OpenDuration: time.Hour, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	return br
}

func goBreaker() *gobreaker.CircuitBreaker[struct{}] {
	return gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:    "bench",
		Timeout: time.Hour,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= 5
		},
	})
}

// failsafeBreaker opens after 5 failures out of the last 5 calls, that is 5 consecutive ones.
func failsafeBreaker[R any]() circuitbreaker.Builder[R] {
	return circuitbreaker.NewBuilder[R]().WithFailureThreshold(5).WithDelay(time.Hour)
}

func ok(context.Context) error { return nil }

// allowDone times outgrow's permit API on every goroutine: Allow, then Done with a success.
func allowDone(b *testing.B, br *breaker.Breaker) {
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tok, err := br.Allow(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			tok.Done(nil)
		}
	})
}

func okFn() error { return nil }

// BenchmarkBreakerClosedSuccess: one successful call through a closed breaker, from every
// goroutine at once (compare -cpu 1 and -cpu 2: a breaker that writes shared memory on success
// slows down as cores are added). outgrow is Allow + Done and, as outgrow-do, Do with a closure;
// gobreaker is Execute; failsafe is Run on an Executor built once (failsafe.With(cb)) and, as
// failsafe-permit, the breaker's own TryAcquirePermit + RecordError.
func BenchmarkBreakerClosedSuccess(b *testing.B) {
	ctx := context.Background()
	b.Run("lib=outgrow", func(b *testing.B) {
		br := outgrowBreaker(b)
		allowDone(b, br)
	})
	b.Run("lib=outgrow-do", func(b *testing.B) {
		br := outgrowBreaker(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := br.Do(ctx, ok); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("lib=gobreaker", func(b *testing.B) {
		cb := goBreaker()
		fn := func() (struct{}, error) { return struct{}{}, nil }
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := cb.Execute(fn); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("lib=failsafe", func(b *testing.B) {
		ex := failsafe.With(failsafeBreaker[any]().Build())
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := ex.Run(okFn); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("lib=failsafe-permit", func(b *testing.B) {
		cb := failsafeBreaker[any]().Build()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !cb.TryAcquirePermit() {
					b.Error("refused while closed")
					return
				}
				cb.RecordError(nil)
			}
		})
	})
}

// BenchmarkBreakerOpenReject: a call refused by an open breaker, tripped beforehand by 5
// consecutive failures.
func BenchmarkBreakerOpenReject(b *testing.B) {
	ctx := context.Background()
	b.Run("lib=outgrow", func(b *testing.B) {
		br := outgrowBreaker(b)
		for range 5 {
			_ = br.Do(ctx, func(context.Context) error { return errBench })
		}
		if br.State() != breaker.StateOpen {
			b.Fatal("not open")
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := br.Allow(ctx); err == nil {
					b.Error("allowed while open")
					return
				}
			}
		})
	})
	b.Run("lib=gobreaker", func(b *testing.B) {
		cb := goBreaker()
		fail := func() (struct{}, error) { return struct{}{}, errBench }
		for range 5 {
			_, _ = cb.Execute(fail)
		}
		if cb.State() != gobreaker.StateOpen {
			b.Fatal("not open")
		}
		fn := func() (struct{}, error) { return struct{}{}, nil }
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := cb.Execute(fn); err == nil {
					b.Error("allowed while open")
					return
				}
			}
		})
	})
	b.Run("lib=failsafe", func(b *testing.B) {
		cb := failsafeBreaker[any]().Build()
		ex := failsafe.With(cb)
		for range 5 {
			_ = ex.Run(func() error { return errBench })
		}
		if !cb.IsOpen() {
			b.Fatal("not open")
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := ex.Run(okFn); err == nil {
					b.Error("allowed while open")
					return
				}
			}
		})
	})
}

// Failure-rate breakers: open when at least half of the calls of the last 10 s (10 buckets of
// 1 s) failed, once the window holds at least 20 calls; never on consecutive failures alone.

func outgrowRateBreaker(b *testing.B) *breaker.Breaker {
	br, err := breaker.New(breaker.Config{
		Name: "bench", FailureRate: 0.5, MinCalls: 20, Window: 10 * time.Second,
		DisableConsecutiveFailures: true, OpenDuration: time.Hour, Logger: quiet,
	})
	if err != nil {
		b.Fatal(err)
	}
	return br
}

// goRateBreaker uses gobreaker's rolling window: Interval split into buckets of BucketPeriod.
// The rate is over completed calls (successes + failures), as in the other two; Counts.Requests
// also counts calls still in flight.
func goRateBreaker() *gobreaker.CircuitBreaker[struct{}] {
	return gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         "bench",
		Interval:     10 * time.Second,
		BucketPeriod: time.Second,
		Timeout:      time.Hour,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			calls := c.TotalSuccesses + c.TotalFailures
			return calls >= 20 && 2*c.TotalFailures >= calls
		},
	})
}

func failsafeRateBreaker() circuitbreaker.CircuitBreaker[any] {
	return circuitbreaker.NewBuilder[any]().
		WithFailureRateThreshold(0.5, 20, 10*time.Second). // 10 buckets, fixed by the library
		WithDelay(time.Hour).
		Build()
}

// checkRateTrip fails the benchmark unless a fresh breaker, fed 10 successes then 9 failures (19
// calls: under the minimum, and more than 5 failures in a row), stays closed, and opens on one more
// failure (10 of 20 calls). call makes one call that fails or succeeds; open reports the state.
func checkRateTrip(b *testing.B, call func(fail bool), open func() bool) {
	b.Helper()
	for range 10 {
		call(false)
	}
	for range 9 {
		call(true)
	}
	if open() {
		b.Fatal("opened below the minimum of calls, or on consecutive failures")
	}
	call(true)
	if !open() {
		b.Fatal("still closed at 10 failures out of 20 calls")
	}
}

func outcome(fail bool) error {
	if fail {
		return errBench
	}
	return nil
}

// BenchmarkBreakerFailureRate: one successful call through a closed breaker that trips on a
// failure rate (50% of at least 20 calls over a 10 s window in 10 buckets), from every goroutine
// at once: each success is recorded in the window, so this is the price of the time buckets on
// the hot path. Before timing, each library is checked to trip exactly as configured.
func BenchmarkBreakerFailureRate(b *testing.B) {
	ctx := context.Background()
	b.Run("lib=outgrow", func(b *testing.B) {
		chk := outgrowRateBreaker(b)
		checkRateTrip(b, func(fail bool) {
			_ = chk.Do(ctx, func(context.Context) error { return outcome(fail) })
		}, func() bool { return chk.State() == breaker.StateOpen })
		br := outgrowRateBreaker(b)
		allowDone(b, br)
	})
	b.Run("lib=gobreaker", func(b *testing.B) {
		chk := goRateBreaker()
		checkRateTrip(b, func(fail bool) {
			_, _ = chk.Execute(func() (struct{}, error) { return struct{}{}, outcome(fail) })
		}, func() bool { return chk.State() == gobreaker.StateOpen })
		cb := goRateBreaker()
		fn := func() (struct{}, error) { return struct{}{}, nil }
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := cb.Execute(fn); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("lib=failsafe", func(b *testing.B) {
		chk := failsafeRateBreaker()
		chkEx := failsafe.With(chk)
		checkRateTrip(b, func(fail bool) {
			_ = chkEx.Run(func() error { return outcome(fail) })
		}, chk.IsOpen)
		ex := failsafe.With(failsafeRateBreaker())
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := ex.Run(okFn); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// cannedTransport answers every request with a fresh 200 and an empty body, without a network:
// the base round trip the wrappers are measured against. The response is new on each call, as
// from a real transport (failsafehttp replaces its Body).
type cannedTransport struct{}

func (cannedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Body: http.NoBody, ContentLength: 0, Request: req,
	}, nil
}

// failingResponse is outgrow's HTTP failure rule (5xx, 408, 429, transport errors), given to
// failsafe so that both breakers judge responses alike; by default failsafe counts only errors.
func failingResponse(resp *http.Response, err error) bool {
	if err != nil {
		return true
	}
	c := resp.StatusCode
	return c >= 500 || c == http.StatusRequestTimeout || c == http.StatusTooManyRequests
}

// BenchmarkBreakerTransport: one GET through an HTTP client wrapper whose base round trip is
// canned (cannedTransport), from every goroutine at once, closing each response body as a client
// must. bare is the base alone; the difference to it is what the breaker's wrapper adds to a
// round trip: ns/op and allocs/op. The request's context is context.Background().
func BenchmarkBreakerTransport(b *testing.B) {
	base := cannedTransport{}
	run := func(b *testing.B, rt http.RoundTripper) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://bench.invalid/", nil)
			if err != nil {
				b.Error(err)
				return
			}
			for pb.Next() {
				resp, err := rt.RoundTrip(req)
				if err != nil {
					b.Error(err)
					return
				}
				if resp.StatusCode != http.StatusOK {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
				if err := resp.Body.Close(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.Run("lib=bare", func(b *testing.B) {
		run(b, base)
	})
	b.Run("lib=outgrow", func(b *testing.B) {
		run(b, outgrowBreaker(b).Transport(base))
	})
	b.Run("lib=failsafe", func(b *testing.B) {
		cb := failsafeBreaker[*http.Response]().HandleIf(failingResponse).Build()
		run(b, failsafehttp.NewRoundTripper(base, cb))
	})
}
