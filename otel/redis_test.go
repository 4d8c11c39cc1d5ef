package otel_test

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/ratelimit"
)

// TestRedisCallSpans: every store calls Redis through the client it was given, with the
// caller's context, so go-redis's own OpenTelemetry hooks (redisotel) make each round trip a
// span, a child of the request's, in both timeout modes of the client.
func TestRedisCallSpans(t *testing.T) {
	for _, ctxTimeout := range []bool{true, false} {
		t.Run(map[bool]string{true: "ContextTimeoutEnabled", false: "default"}[ctxTimeout], func(t *testing.T) {
			h := newHarness(t)
			mr := miniredis.RunT(t)
			rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: ctxTimeout})
			t.Cleanup(func() { _ = rdb.Close() })
			require.NoError(t, redisotel.InstrumentTracing(rdb, redisotel.WithTracerProvider(h.tp)))
			store, err := ratelimit.NewRedisStore(rdb, ratelimit.RedisConfig{Logger: quiet})
			require.NoError(t, err)
			l, err := ratelimit.New(store, ratelimit.Limit{Rate: 10, Period: time.Second}, ratelimit.Config{Name: "api", Logger: quiet})
			require.NoError(t, err)

			ctx, span := h.request(context.Background())
			_, err = l.Allow(ctx, "client")
			require.NoError(t, err)
			span.End()

			var children []string
			for _, s := range h.spans.Ended() {
				if s.Parent().SpanID() == span.SpanContext().SpanID() {
					children = append(children, s.Name())
				}
			}
			assert.Contains(t, children, "evalsha", "the decision's script call, under the request")
		})
	}
}
