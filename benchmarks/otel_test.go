package benchmarks

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/outgrow/outgrow/breaker"
	"github.com/outgrow/outgrow/cache"
	outgrowotel "github.com/outgrow/outgrow/otel"
	"github.com/outgrow/outgrow/ratelimit"
)

// instrumentation is what a benchmark of BenchmarkOtel runs under: mode=bare has no
// Telemetry; mode=otel has one over the OpenTelemetry SDK (a meter provider with a reader, a
// tracer provider sampling everything) with requests carrying no span; mode=otel-traced has the
// same with every call made under a recording span, so span events are built; mode=otel-stats
// (breaker only) observes the Stats without setting the Hooks.
type instrumentation struct {
	tel *outgrowotel.Telemetry
	ctx context.Context
}

var otelModes = []string{"bare", "otel", "otel-traced"}

func newInstrumentation(b *testing.B, mode string) instrumentation {
	b.Helper()
	in := instrumentation{ctx: context.Background()}
	if mode == "bare" {
		return in
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	tel, err := outgrowotel.New(outgrowotel.Config{MeterProvider: mp, TracerProvider: tp})
	if err != nil {
		b.Fatal(err)
	}
	in.tel = tel
	if mode == "otel-traced" {
		in.ctx, _ = tp.Tracer("bench").Start(in.ctx, "request") // ended by tp.Shutdown
	}
	return in
}

// BenchmarkOtel: the cost of the instrumentation on the hot paths, mode=bare against mode=otel
// (and otel-traced) side by side: a successful call through a closed breaker (Allow + Done), a
// memory limiter decision, and a local cache hit. Compare with
// benchstat -col /mode.
func BenchmarkOtel(b *testing.B) {
	for _, mode := range append(otelModes, "otel-stats") {
		b.Run("op=breaker-closed/mode="+mode, func(b *testing.B) {
			in := newInstrumentation(b, mode)
			cfg := breaker.Config{Name: "bench", OpenDuration: time.Hour, Logger: quiet}
			if in.tel != nil && mode != "otel-stats" {
				cfg.Hooks = in.tel.BreakerHooks(breaker.Hooks{})
			}
			br, err := breaker.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			if in.tel != nil {
				reg, err := in.tel.ObserveBreakers(br)
				if err != nil {
					b.Fatal(err)
				}
				defer reg.Unregister()
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					tok, err := br.Allow(in.ctx)
					if err != nil {
						b.Error(err)
						return
					}
					tok.Done(nil)
				}
			})
		})
	}
	for _, mode := range otelModes {
		b.Run("op=ratelimit-memory/mode="+mode, func(b *testing.B) {
			in := newInstrumentation(b, mode)
			store, err := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
			if err != nil {
				b.Fatal(err)
			}
			cfg := ratelimit.Config{Name: "bench"}
			if in.tel != nil {
				cfg.Hooks = in.tel.LimiterHooks("bench", ratelimit.Hooks{})
			}
			l, err := ratelimit.New(store, ratelimit.PerSecond(generous), cfg)
			if err != nil {
				b.Fatal(err)
			}
			if in.tel != nil {
				reg, err := in.tel.ObserveLimiters(l)
				if err != nil {
					b.Fatal(err)
				}
				defer reg.Unregister()
			}
			keys := ipKeys(memKeys)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if r, err := l.Allow(in.ctx, keys[i%len(keys)]); err != nil || !r.Allowed {
						b.Error("denied", err)
						return
					}
					i++
				}
			})
		})
	}
	tr := newZipfTrace(cacheKeys, 1<<16, 1)
	for _, mode := range otelModes[:2] { // a hit calls no hook: nothing to trace
		b.Run("op=cache-local-hit/mode="+mode, func(b *testing.B) {
			in := newInstrumentation(b, mode)
			st, err := cache.NewMemoryStore(cache.MemoryConfig{MaxEntries: 2 * cacheKeys})
			if err != nil {
				b.Fatal(err)
			}
			cfg := cache.Config{Policy: cache.Policy{TTL: cacheTTL}}
			if in.tel != nil {
				cfg.Hooks = in.tel.CacheHooks("bench", cache.Hooks{})
			}
			c, err := cache.New[*cacheItem](st, cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			if in.tel != nil {
				reg, err := in.tel.ObserveCache("bench", c)
				if err != nil {
					b.Fatal(err)
				}
				defer reg.Unregister()
			}
			for i, k := range tr.keys {
				if err := c.Set(in.ctx, k, newCacheItem(i)); err != nil {
					b.Fatal(err)
				}
			}
			tr.parallel(b, func(key string) bool {
				v, err := c.Get(in.ctx, key)
				return err == nil && v != nil
			})
		})
	}
}
