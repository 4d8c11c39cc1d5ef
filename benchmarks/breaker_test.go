package benchmarks

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/outgrow/outgrow/breaker"
)

// Circuit breakers, side by side: the cost a breaker adds to a successful call while closed, and
// the cost of refusing a call while open. Each library trips after 5 consecutive failures.

var errBench = errors.New("down")

func outgrowBreaker(b *testing.B) *breaker.Breaker {
	br, err := breaker.New(breaker.Config{Name: "bench", OpenDuration: time.Hour})
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

func ok(context.Context) error { return nil }

// BenchmarkBreakerClosedSuccess: one successful call through a closed breaker, from every
// goroutine at once (compare -cpu 1 and -cpu 2: a breaker that writes shared memory on success
// slows down as cores are added).
func BenchmarkBreakerClosedSuccess(b *testing.B) {
	ctx := context.Background()
	b.Run("lib=outgrow", func(b *testing.B) {
		br := outgrowBreaker(b)
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
}

// BenchmarkBreakerOpenReject: a call refused by an open breaker.
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
}
