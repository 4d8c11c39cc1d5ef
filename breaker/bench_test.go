package breaker

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/outgrow/outgrow/internal/redistest"
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
	br, _ := New(Config{Failures: 1, OpenDuration: time.Hour, Logger: slog.New(slog.DiscardHandler)})
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

// BenchmarkSharedClosedSuccess: the hot path of a breaker shared through a store. Admission and
// outcomes stay local; the store's goroutine sends the counts in batches.
func BenchmarkSharedClosedSuccess(b *testing.B) {
	for _, kind := range []string{"memory", "redis"} {
		b.Run("store="+kind, func(b *testing.B) {
			var st Store
			if kind == "memory" {
				m, err := NewMemoryStore(MemoryConfig{})
				if err != nil {
					b.Fatal(err)
				}
				st = m
				defer m.Close()
			} else {
				rdb := redistest.New(b)
				r, err := NewRedisStore(rdb, RedisConfig{Prefix: redistest.Prefix(b, rdb)})
				if err != nil {
					b.Fatal(err)
				}
				st = r
				defer r.Close()
			}
			br, err := New(Config{Name: "bench", Store: st})
			if err != nil {
				b.Fatal(err)
			}
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
		})
	}
}
