package health

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// discard is a ResponseWriter that keeps nothing, so the benchmarks measure the handler.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

func benchChecker(b *testing.B, n int, extra ...Check) (*Checker, *atomic.Int64) {
	var calls atomic.Int64
	checks := make([]Check, n)
	for i := range checks {
		checks[i] = Check{Name: fmt.Sprintf("dep%d", i), Func: func(context.Context) error {
			calls.Add(1)
			return nil
		}}
	}
	c, err := New(Config{Logger: quiet, Interval: time.Hour}, append(checks, extra...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	if _, err := c.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	return c, &calls
}

// probeParallel serves GET target with the Accept header accept through h from parallel
// goroutines.
func probeParallel(b *testing.B, h http.Handler, target, accept string) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		if accept != "" {
			r.Header.Set("Accept", accept)
		}
		w := &discard{h: http.Header{}}
		for pb.Next() {
			h.ServeHTTP(w, r)
		}
	})
}

// BenchmarkReadiness serves readiness with 10 cached checks and reports the dependency calls
// made per probe (the target is 0).
func BenchmarkReadiness(b *testing.B) {
	for _, accept := range []string{"", contentTypeHealthJSON} {
		name := "json"
		if accept != "" {
			name = "health+json"
		}
		b.Run(name, func(b *testing.B) {
			c, calls := benchChecker(b, 10)
			before := calls.Load()
			probeParallel(b, c.ReadinessHandler(), "/api/ready", accept)
			b.ReportMetric(float64(calls.Load()-before)/float64(b.N), "depcalls/op")
		})
	}
}

// BenchmarkReadinessLocal serves readiness with 10 cached checks and one Local check (an atomic
// read, like a breaker's state) called by every probe.
func BenchmarkReadinessLocal(b *testing.B) {
	var open atomic.Bool
	c, _ := benchChecker(b, 10, Check{Name: "breaker", Local: true, Func: func(context.Context) error {
		if open.Load() {
			return errDown
		}
		return nil
	}})
	probeParallel(b, c.ReadinessHandler(), "/api/ready", "")
}

// BenchmarkReadinessLatency measures each probe and reports the 99th percentile.
func BenchmarkReadinessLatency(b *testing.B) {
	c, _ := benchChecker(b, 10)
	h := c.ReadinessHandler()
	r := httptest.NewRequest(http.MethodGet, "/api/ready", nil)
	w := &discard{h: http.Header{}}
	lat := make([]time.Duration, 0, 1<<16)
	for b.Loop() {
		start := time.Now()
		h.ServeHTTP(w, r)
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(start))
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

func BenchmarkLiveness(b *testing.B) {
	c, _ := benchChecker(b, 0)
	probeParallel(b, c.LivenessHandler(), "/api/health", "")
}
