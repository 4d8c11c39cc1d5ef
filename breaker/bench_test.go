package breaker

import (
	"context"
	"errors"
	"testing"
	"time"
)

// BenchmarkClosedSuccess: the hot path, Allow then Done(nil), in parallel.
func BenchmarkClosedSuccess(b *testing.B) {
	br, _ := New(Config{})
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tok, _ := br.Allow(ctx)
			tok.Done(nil)
		}
	})
}

// BenchmarkOpenReject: a refused call.
func BenchmarkOpenReject(b *testing.B) {
	br, _ := New(Config{Failures: 1, OpenDuration: time.Hour})
	ctx := context.Background()
	tok, _ := br.Allow(ctx)
	tok.Done(errors.New("down"))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = br.Allow(ctx)
		}
	})
}
