package otel

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/outgrow/outgrow/cache"
)

// The attribute keys of cache's measurements.
const (
	// AttrCache is the name given to [Telemetry.ObserveCache] and [Telemetry.CacheHooks].
	AttrCache = attribute.Key("outgrow.cache.name")
	// AttrResult is what a lookup found ("hit", "stale", "negative" or "miss"), or how a load
	// or a read from Redis ended ("ok", "not_found", "error"; "hit", "miss").
	AttrResult = attribute.Key("outgrow.cache.result")
	// AttrLayer is the layer of a hit: "local" (process memory) or "remote" (Redis).
	AttrLayer = attribute.Key("outgrow.cache.layer")
)

type cacheInstruments struct {
	loadDuration                                    metric.Float64Histogram
	lookups, loads, refreshes, lostFills, evictions metric.Int64ObservableCounter
	entries, bytes                                  metric.Int64ObservableUpDownCounter
	storeReads, storeErrors, messages, flushes      metric.Int64ObservableCounter
	storeDown                                       metric.Int64ObservableGauge
}

func (in *cacheInstruments) build(b *builder) {
	in.loadDuration = b.duration("outgrow.cache.load.duration",
		"Duration of a Cache's loader calls, by cache and result (ok, not_found, error).")
	in.lookups = b.counter("outgrow.cache.lookups", "{lookup}",
		"Lookups of a Cache by result (hit, stale, negative, miss) and, for hits, layer (local, remote).")
	in.loads = b.counter("outgrow.cache.loads", "{load}",
		"Loader calls of a Cache, by result (ok, error; a not-found answer is ok).")
	in.refreshes = b.counter("outgrow.cache.refreshes", "{load}",
		"Background refreshes a Cache started (stale-while-revalidate and early refresh).")
	in.lostFills = b.counter("outgrow.cache.lost_fills", "{load}",
		"Loaded values a Cache did not store because the key changed during the load.")
	in.evictions = b.counter("outgrow.cache.local.evictions", "{entry}",
		"Entries removed from a local layer, by reason (size, expired).")
	in.entries = b.upDown("outgrow.cache.local.entries", "{entry}",
		"Entries a local layer holds, tombstones and expired entries not yet reclaimed included.")
	in.bytes = b.upDown("outgrow.cache.local.size", "By",
		"Bytes a local layer holds, as its cost function counts them.")
	in.storeReads = b.counter("outgrow.cache.store.reads", "{key}",
		"Keys a cache RedisStore read from Redis, by result (hit, miss).")
	in.storeErrors = b.counter("outgrow.cache.store.errors", "{error}",
		"Round trips of a cache RedisStore that failed or timed out, or were refused during an outage.")
	in.messages = b.counter("outgrow.cache.coherence.messages", "{message}",
		"Announcements of changed keys a cache RedisStore sent and received (outgrow.cache.direction).")
	in.flushes = b.counter("outgrow.cache.coherence.flushes", "{flush}",
		"Times a cache RedisStore emptied its local layers because announcements may have been lost.")
	in.storeDown = b.gauge("outgrow.cache.store.down", "{state}",
		"1 while a cache RedisStore fails fast after repeated failures, else 0.")
}

// CacheStats is a Cache as [Telemetry.ObserveCache] reads it: any *cache.Cache[V].
type CacheStats interface {
	Stats() cache.Stats
}

// ObserveCache reports the Stats of a Cache, at each collection, with the attribute
// outgrow.cache.name: outgrow.cache.lookups, .loads, .refreshes, .lost_fills, and its local
// layer's .local.evictions, .local.entries and .local.size. Caches over one MemoryStore share
// its layer, so each reports the layer's figures. Unregister the result to stop; until then,
// name cannot be observed again ([ErrObserved]).
func (t *Telemetry) ObserveCache(name string, c CacheStats) (metric.Registration, error) {
	n := AttrCache.String(name)
	with := attributesWith(n)
	var (
		local, remote = with(AttrResult.String("hit"), AttrLayer.String("local")), with(AttrResult.String("hit"), AttrLayer.String("remote"))
		stale, neg    = with(AttrResult.String("stale")), with(AttrResult.String("negative"))
		miss          = with(AttrResult.String("miss"))
		ok, failed    = with(AttrResult.String("ok")), with(AttrResult.String("error"))
		size, expired = with(attribute.String("outgrow.cache.reason", "size")), with(attribute.String("outgrow.cache.reason", "expired"))
		plain         = with()
	)
	in := &t.ca
	return t.observe([]string{fmt.Sprintf("cache %q", name)}, func(_ context.Context, o metric.Observer) error {
		s := c.Stats()
		o.ObserveInt64(in.lookups, int64(s.LocalHits), local)
		o.ObserveInt64(in.lookups, int64(s.RemoteHits), remote)
		o.ObserveInt64(in.lookups, int64(s.Stale), stale)
		o.ObserveInt64(in.lookups, int64(s.NegativeHits), neg)
		o.ObserveInt64(in.lookups, int64(s.Misses), miss)
		o.ObserveInt64(in.loads, int64(s.Loads-s.LoadErrors), ok)
		o.ObserveInt64(in.loads, int64(s.LoadErrors), failed)
		o.ObserveInt64(in.refreshes, int64(s.Refreshes), plain)
		o.ObserveInt64(in.lostFills, int64(s.LostFills), plain)
		o.ObserveInt64(in.evictions, int64(s.Local.Evictions), size)
		o.ObserveInt64(in.evictions, int64(s.Local.Expired), expired)
		o.ObserveInt64(in.entries, int64(s.Local.Entries), plain)
		o.ObserveInt64(in.bytes, s.Local.Bytes, plain)
		return nil
	}, in.lookups, in.loads, in.refreshes, in.lostFills, in.evictions, in.entries, in.bytes)
}

// CacheStore is a cache RedisStore as [Telemetry.ObserveCacheStore] reads it.
type CacheStore interface {
	Stats() cache.RedisStats
}

// ObserveCacheStore reports the Stats of a cache RedisStore, at each collection, with the
// attribute outgrow.store: outgrow.cache.store.reads, .store.errors, .store.down,
// .coherence.messages (outgrow.cache.direction "sent" or "received") and .coherence.flushes.
// Unregister the result to stop; until then, name cannot be observed again ([ErrObserved]).
func (t *Telemetry) ObserveCacheStore(name string, s CacheStore) (metric.Registration, error) {
	n := AttrStore.String(name)
	with := attributesWith(n)
	var (
		hit, miss      = with(AttrResult.String("hit")), with(AttrResult.String("miss"))
		sent, received = with(attribute.String("outgrow.cache.direction", "sent")), with(attribute.String("outgrow.cache.direction", "received"))
		plain          = with()
	)
	in := &t.ca
	return t.observe([]string{fmt.Sprintf("cache store %q", name)}, func(_ context.Context, o metric.Observer) error {
		st := s.Stats()
		o.ObserveInt64(in.storeReads, int64(st.Hits), hit)
		o.ObserveInt64(in.storeReads, int64(st.Misses), miss)
		o.ObserveInt64(in.storeErrors, int64(st.Errors), plain)
		o.ObserveInt64(in.messages, int64(st.Sent), sent)
		o.ObserveInt64(in.messages, int64(st.Received), received)
		o.ObserveInt64(in.flushes, int64(st.Flushes), plain)
		o.ObserveInt64(in.storeDown, one(st.Down), plain)
		return nil
	}, in.storeReads, in.storeErrors, in.messages, in.flushes, in.storeDown)
}

// CacheHooks returns the Hooks of the Cache named name, calling next's too. Each loader call
// is recorded in outgrow.cache.load.duration (result ok, not_found or error) and, under a
// span that records, becomes the span outgrow.cache.load, a child of the load's context
// that lasts as long as the loader ran and ends as the hook starts, microseconds after the
// loader returned (the loader's own spans are its siblings: the hook runs after the load). A stale value served adds the span event outgrow.cache.stale, and a
// failed call to Redis outgrow.cache.store_error (error.type: timeout, canceled or
// unavailable; never the message, which may name a key).
func (t *Telemetry) CacheHooks(name string, next cache.Hooks) cache.Hooks {
	in := &t.ca
	n := AttrCache.String(name)
	var results [3][]metric.RecordOption
	for i, r := range []string{"ok", "not_found", "error"} {
		results[i] = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(n, AttrResult.String(r)))}
	}
	h := next
	h.OnLoad = func(ctx context.Context, key string, took time.Duration, err error) {
		end := time.Now() // the loader returned just before the hook: read before recording
		r := 0
		switch {
		case errors.Is(err, cache.ErrNotFound):
			r = 1
		case err != nil:
			r = 2
		}
		in.loadDuration.Record(ctx, took.Seconds(), results[r]...)
		if recordingSpan(ctx) != nil {
			_, span := t.tracer.Start(ctx, "outgrow.cache.load", trace.WithTimestamp(end.Add(-took)),
				trace.WithAttributes(n, AttrResult.String([]string{"ok", "not_found", "error"}[r])))
			if r == 2 {
				span.SetStatus(codes.Error, "loader failed")
			}
			span.End(trace.WithTimestamp(end))
		}
		if next.OnLoad != nil {
			next.OnLoad(ctx, key, took, err)
		}
	}
	h.OnStale = func(ctx context.Context, key string, err error) {
		if span := recordingSpan(ctx); span != nil {
			span.AddEvent("outgrow.cache.stale", trace.WithAttributes(n, attribute.Bool("outgrow.cache.refresh_failed", err != nil)))
		}
		if next.OnStale != nil {
			next.OnStale(ctx, key, err)
		}
	}
	h.OnStoreError = func(ctx context.Context, err error) {
		if span := recordingSpan(ctx); span != nil {
			span.AddEvent("outgrow.cache.store_error", trace.WithAttributes(n, attribute.String("error.type", errorType(err))))
		}
		if next.OnStoreError != nil {
			next.OnStoreError(ctx, err)
		}
	}
	return h
}
