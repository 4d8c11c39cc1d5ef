// Readiness probes side by side: outgrow/health against alexliesenfeld/health and
// hellofresh/health-go, each with the same 10 checks that only count their calls. The
// "depcalls/op" metric is how many dependency checks one probe causes: a probe that reaches
// dependencies multiplies their load by the number of probers.
package benchmarks

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	alex "github.com/alexliesenfeld/health"
	hellofresh "github.com/hellofresh/health-go/v5"

	"github.com/outgrow/outgrow/health"
)

const numChecks = 10

type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

func benchProbe(b *testing.B, h http.Handler, calls *atomic.Int64) {
	// Warm up: the first probe may start lazy checks.
	h.ServeHTTP(&discard{h: http.Header{}}, httptest.NewRequest(http.MethodGet, "/ready", nil))
	before := calls.Load()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest(http.MethodGet, "/ready", nil)
		w := &discard{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			h.ServeHTTP(w, r)
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(calls.Load()-before)/float64(b.N), "depcalls/op")
}

func counting(calls *atomic.Int64) func(context.Context) error {
	return func(context.Context) error {
		calls.Add(1)
		return nil
	}
}

func BenchmarkReadiness(b *testing.B) {
	b.Run("lib=outgrow", func(b *testing.B) {
		var calls atomic.Int64
		checks := make([]health.Check, numChecks)
		for i := range checks {
			checks[i] = health.Check{Name: fmt.Sprintf("dep%d", i), Func: counting(&calls)}
		}
		// The same period as the periodic library below, so that both do the same work.
		hc, err := health.New(health.Config{Interval: 30 * time.Second, Timeout: 5 * time.Second,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, checks...)
		if err != nil {
			b.Fatal(err)
		}
		defer hc.Close()
		if _, err := hc.Refresh(context.Background()); err != nil {
			b.Fatal(err)
		}
		benchProbe(b, hc.ReadinessHandler(), &calls)
	})

	// alexliesenfeld/health with periodic checks: the mode comparable to ours (cached results).
	b.Run("lib=alexliesenfeld-periodic", func(b *testing.B) {
		var calls atomic.Int64
		opts := []alex.CheckerOption{alex.WithTimeout(5 * time.Second)}
		for i := range numChecks {
			opts = append(opts, alex.WithPeriodicCheck(30*time.Second, 0,
				alex.Check{Name: fmt.Sprintf("dep%d", i), Check: counting(&calls)}))
		}
		checker := alex.NewChecker(opts...)
		defer checker.Stop()
		time.Sleep(50 * time.Millisecond) // let the first periodic run finish
		benchProbe(b, alex.NewHandler(checker), &calls)
	})

	// alexliesenfeld/health with its default synchronous checks, cached for 1 s.
	b.Run("lib=alexliesenfeld-sync", func(b *testing.B) {
		var calls atomic.Int64
		opts := []alex.CheckerOption{alex.WithTimeout(5 * time.Second)}
		for i := range numChecks {
			opts = append(opts, alex.WithCheck(alex.Check{Name: fmt.Sprintf("dep%d", i), Check: counting(&calls)}))
		}
		checker := alex.NewChecker(opts...)
		defer checker.Stop()
		benchProbe(b, alex.NewHandler(checker), &calls)
	})

	// hellofresh/health-go runs every check on every probe.
	b.Run("lib=hellofresh", func(b *testing.B) {
		var calls atomic.Int64
		var cfgs []hellofresh.Config
		for i := range numChecks {
			cfgs = append(cfgs, hellofresh.Config{Name: fmt.Sprintf("dep%d", i), Timeout: 5 * time.Second,
				Check: counting(&calls)})
		}
		h, err := hellofresh.New(hellofresh.WithChecks(cfgs...))
		if err != nil {
			b.Fatal(err)
		}
		benchProbe(b, h.Handler(), &calls)
	})
}
