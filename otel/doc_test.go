package otel_test

import (
	"context"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/outgrow/outgrow/balancer"
	"github.com/outgrow/outgrow/breaker"
	"github.com/outgrow/outgrow/cache"
	"github.com/outgrow/outgrow/health"
	"github.com/outgrow/outgrow/queue"
	"github.com/outgrow/outgrow/ratelimit"
	"github.com/outgrow/outgrow/session"
)

// docRow is a row of doc.go's table of instruments.
type docRow struct {
	name, kind, unit string
	attrs            []string // full keys
}

// docTables reads doc.go's two tables: the instruments, and the values of the attributes that
// are not names.
func docTables(t *testing.T) (rows map[string]docRow, values map[string][]string) {
	t.Helper()
	src, err := os.ReadFile("doc.go")
	require.NoError(t, err)
	rows, values = map[string]docRow{}, map[string][]string{}
	var table, last string
	columns := regexp.MustCompile(`\s{2,}`)
	for line := range strings.Lines(string(src)) {
		line = strings.TrimRight(line, "\n")
		cell, isCell := strings.CutPrefix(line, "//\t")
		switch {
		case !isCell:
			table = ""
		case strings.HasPrefix(cell, "instrument "), strings.HasPrefix(cell, "attribute "):
			table = strings.Fields(cell)[0]
		case table == "instrument":
			f := columns.Split(cell, -1)
			require.Len(t, f, 5, "a row of the instruments: %q", cell)
			component := strings.Split(f[0], ".")[1]
			row := docRow{name: f[0], kind: f[1], unit: f[2]}
			for _, a := range strings.Split(f[3], ", ") {
				if a == "store" {
					row.attrs = append(row.attrs, "outgrow.store")
				} else {
					row.attrs = append(row.attrs, "outgrow."+component+"."+a)
				}
			}
			slices.Sort(row.attrs)
			require.NotContains(t, rows, row.name)
			rows[row.name] = row
		case table == "attribute":
			if !strings.HasPrefix(cell, " ") {
				f := columns.Split(cell, 2)
				require.Len(t, f, 2, "a row of the attributes: %q", cell)
				last, cell = f[0], f[1]
			}
			values[last] = append(values[last], strings.TrimSpace(cell))
		}
	}
	parens := regexp.MustCompile(`\([^)]*\)`)
	for k, v := range values {
		var set []string
		for _, w := range regexp.MustCompile(`[,;]`).Split(parens.ReplaceAllString(strings.Join(v, " "), ""), -1) {
			if w = strings.TrimSpace(w); w != "" && !slices.Contains(set, w) {
				set = append(set, w)
			}
		}
		slices.Sort(set)
		values[k] = set
	}
	require.NotEmpty(t, rows)
	require.NotEmpty(t, values)
	return rows, values
}

// TestDocTable: with every component instrumented and each hook fired, the instruments
// collected are exactly the rows of doc.go's table, each with its kind, unit and attribute
// keys, and every attribute other than a name takes only the values doc.go lists (a state
// gauge all of them).
func TestDocTable(t *testing.T) {
	rows, values := docTables(t)
	h := newHarness(t)
	ctx := context.Background()
	must := func(_ any, err error) { t.Helper(); require.NoError(t, err) }

	rstore, err := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
	require.NoError(t, err)
	l, err := ratelimit.New(rstore, ratelimit.PerMinute(10), ratelimit.Config{Name: "api", Hooks: h.tel.LimiterHooks("api", ratelimit.Hooks{})})
	require.NoError(t, err)
	must(h.tel.ObserveLimiters(l))
	must(l.Allow(ctx, "k"))

	bstore, err := breaker.NewMemoryStore(breaker.MemoryConfig{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = bstore.Close() })
	b, err := breaker.New(breaker.Config{Name: "db", Failures: 1, OpenDuration: time.Hour, Store: bstore, Logger: quiet,
		Hooks: h.tel.BreakerHooks(breaker.Hooks{})})
	require.NoError(t, err)
	must(h.tel.ObserveBreakers(b))
	must(h.tel.ObserveBreakerStore("memory", bstore))
	_ = b.Do(ctx, func(context.Context) error { return errors.New("down") })

	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rdb.Close() })
	cstore, err := cache.NewRedisStore(rdb, cache.RedisConfig{Logger: quiet})
	require.NoError(t, err)
	c, err := cache.New[string](cstore, cache.Config{Logger: quiet, Hooks: h.tel.CacheHooks("products", cache.Hooks{})})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(); _ = cstore.Close() })
	must(h.tel.ObserveCache("products", c))
	must(h.tel.ObserveCacheStore("redis", cstore))
	for _, key := range []string{"ok", "404", "boom"} {
		_, _ = c.GetOrLoad(ctx, key, func(_ context.Context, key string) (string, error) {
			switch key {
			case "404":
				return "", cache.ErrNotFound
			case "boom":
				return "", errors.New("database down")
			}
			return "v", nil
		})
	}

	sstore, err := session.NewMemoryStore(session.MemoryConfig{})
	require.NoError(t, err)
	sm, err := session.New(sstore, session.Config{Hooks: h.tel.SessionHooks(session.Hooks{})})
	require.NoError(t, err)
	must(h.tel.ObserveSessions("web", sm))

	hc, err := health.New(health.Config{Logger: quiet, Hooks: h.tel.HealthHooks(health.Hooks{})},
		health.Check{Name: "db", Func: func(context.Context) error { return nil }})
	require.NoError(t, err)
	t.Cleanup(func() { _ = hc.Close() })
	must(h.tel.ObserveHealth(hc))
	must(hc.Refresh(ctx))

	qstore, err := queue.NewMemoryStore(queue.MemoryConfig{})
	require.NoError(t, err)
	qhooks := h.tel.QueueHooks(queue.Hooks{})
	q, err := queue.New(qstore, queue.Config{Hooks: qhooks})
	require.NoError(t, err)
	must(h.tel.ObserveQueues(q, "emails"))
	w, err := queue.NewWorker(qstore, queue.WorkerConfig{Logger: quiet, Hooks: qhooks, Backoff: func(int) time.Duration { return time.Hour },
		Queues: map[string]queue.QueueConfig{"emails": {Handler: func(_ context.Context, d *queue.Delivery) error {
			switch d.ID {
			case "retried":
				return errors.New("later")
			case "dead":
				return queue.NonRetryable(errors.New("never"))
			}
			return nil
		}}}})
	require.NoError(t, err)
	must(q.EnqueueMany(ctx, []queue.Job{{ID: "ok", Queue: "emails"}, {ID: "retried", Queue: "emails"}, {ID: "dead", Queue: "emails"}}))
	must(w.Work(ctx))
	h.tel.QueueHooks(queue.Hooks{}).OnLeaseLost(ctx, &queue.Delivery{Queue: "emails"}) // as a Worker calls it

	lb, err := balancer.New(balancer.Config{Logger: quiet, Hooks: h.tel.BalancerHooks("web", balancer.Hooks{})},
		balancer.Backend{ID: "http://127.0.0.1:1"})
	require.NoError(t, err)
	proxy, err := balancer.NewProxy(lb, balancer.ProxyConfig{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	must(h.tel.ObserveBalancer("web", lb, proxy))
	require.NoError(t, lb.SetUp("http://127.0.0.1:1", false))

	ms := h.collect(t)
	var collected []string
	for name := range ms {
		collected = append(collected, name)
	}
	var documented []string
	for name := range rows {
		documented = append(documented, name)
	}
	assert.ElementsMatch(t, documented, collected, "instruments collected against doc.go's table")

	for name, m := range ms {
		row, ok := rows[name]
		if !ok {
			continue
		}
		var kind string
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			kind = map[bool]string{true: "counter", false: "up-down"}[d.IsMonotonic]
			assert.Equal(t, metricdata.CumulativeTemporality, d.Temporality, name)
		case metricdata.Gauge[int64], metricdata.Gauge[float64]:
			kind = "gauge"
		case metricdata.Histogram[float64]:
			kind = "histogram"
		}
		assert.Equal(t, row.kind, kind, "%s: kind", name)
		assert.Equal(t, row.unit, m.Unit, "%s: unit", name)
		assert.NotEmpty(t, m.Description, "%s: description", name)
		keys := map[string]bool{}
		seen := map[string][]string{}
		for _, p := range points(t, m) {
			for k, v := range p.attrs {
				keys[k] = true
				if !slices.Contains(seen[k], v) {
					seen[k] = append(seen[k], v)
				}
			}
		}
		var got []string
		for k := range keys {
			got = append(got, k)
		}
		slices.Sort(got)
		assert.Equal(t, row.attrs, got, "%s: attribute keys", name)
		for k, vs := range seen {
			want, enumerated := values[k]
			if !enumerated {
				continue // a name
			}
			assert.Subset(t, want, vs, "%s: values of %s", name, k)
			if row.kind == "gauge" && (strings.HasSuffix(k, ".state") || strings.HasSuffix(k, ".status")) {
				assert.ElementsMatch(t, want, vs, "%s: a series per value of %s", name, k)
			}
		}
	}
	for _, k := range []string{"outgrow.ratelimit.decision", "outgrow.breaker.outcome", "outgrow.cache.result", "outgrow.health.state", "outgrow.queue.outcome", "outgrow.queue.state"} {
		assert.Contains(t, values, k, "doc.go lists the values of %s", k)
	}
}
