package otel_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/outgrow/outgrow/breaker"
	"github.com/outgrow/outgrow/cache"
	"github.com/outgrow/outgrow/health"
	outgrowotel "github.com/outgrow/outgrow/otel"
	"github.com/outgrow/outgrow/ratelimit"
	"github.com/outgrow/outgrow/session"
)

// TestPrometheusScrape drives every component, scrapes /metrics served by OpenTelemetry's
// Prometheus exporter, and parses it with Prometheus's own text parser: names (with their unit
// suffixes), types, help texts and labels are what a Prometheus user queries.
func TestPrometheusScrape(t *testing.T) {
	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	require.NoError(t, err)
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	tel, err := outgrowotel.New(outgrowotel.Config{MeterProvider: mp})
	require.NoError(t, err)
	observe := func(_ any, err error) { require.NoError(t, err) }
	ctx := context.Background()

	rstore, err := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
	require.NoError(t, err)
	login, err := ratelimit.New(rstore, ratelimit.Limit{Rate: 1, Period: time.Minute},
		ratelimit.Config{Name: "login", Hooks: tel.LimiterHooks("login", ratelimit.Hooks{})})
	require.NoError(t, err)
	observe(tel.ObserveLimiters(login))
	for range 2 {
		_, _ = login.Allow(ctx, "203.0.113.7")
	}

	b, err := breaker.New(breaker.Config{Name: "payments", Logger: quiet, Hooks: tel.BreakerHooks(breaker.Hooks{})})
	require.NoError(t, err)
	observe(tel.ObserveBreakers(b))
	_ = b.Do(ctx, func(context.Context) error { return nil })

	cstore, err := cache.NewMemoryStore(cache.MemoryConfig{})
	require.NoError(t, err)
	c, err := cache.New[string](cstore, cache.Config{Hooks: tel.CacheHooks("flags", cache.Hooks{})})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	observe(tel.ObserveCache("flags", c))
	_, _ = c.GetOrLoad(ctx, "dark-mode", func(context.Context, string) (string, error) { return "on", nil })

	sstore, err := session.NewMemoryStore(session.MemoryConfig{})
	require.NoError(t, err)
	sm, err := session.New(sstore, session.Config{})
	require.NoError(t, err)
	observe(tel.ObserveSessions("web", sm))

	hc, err := health.New(health.Config{Logger: quiet, Hooks: tel.HealthHooks(health.Hooks{})},
		health.Check{Name: "db", Func: func(context.Context) error { return errors.New("down") }})
	require.NoError(t, err)
	t.Cleanup(func() { _ = hc.Close() })
	observe(tel.ObserveHealth(hc))
	_, err = hc.Refresh(ctx)
	require.NoError(t, err)

	srv := httptest.NewServer(promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)

	for name, typ := range map[string]dto.MetricType{
		"outgrow_ratelimit_decisions_total":     dto.MetricType_COUNTER,
		"outgrow_ratelimit_degraded":            dto.MetricType_GAUGE,
		"outgrow_ratelimit_store_errors_total":  dto.MetricType_COUNTER,
		"outgrow_breaker_call_duration_seconds": dto.MetricType_HISTOGRAM,
		"outgrow_breaker_state":                 dto.MetricType_GAUGE,
		"outgrow_breaker_rejections_total":      dto.MetricType_COUNTER,
		"outgrow_cache_lookups_total":           dto.MetricType_COUNTER,
		"outgrow_cache_load_duration_seconds":   dto.MetricType_HISTOGRAM,
		"outgrow_cache_local_size_bytes":        dto.MetricType_GAUGE,
		"outgrow_session_loads_total":           dto.MetricType_COUNTER,
		"outgrow_health_check_duration_seconds": dto.MetricType_HISTOGRAM,
		"outgrow_health_status":                 dto.MetricType_GAUGE,
		"outgrow_health_check_state":            dto.MetricType_GAUGE,
	} {
		f, ok := families[name]
		if !assert.True(t, ok, "%s not served", name) {
			continue
		}
		assert.Equal(t, typ, f.GetType(), name)
		assert.NotEmpty(t, f.GetHelp(), name)
	}

	decisions := map[string]float64{}
	for _, m := range families["outgrow_ratelimit_decisions_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
			assert.NotContains(t, l.GetValue(), "203.0.113", "never a key in a label")
		}
		assert.Equal(t, "login", labels["outgrow_ratelimit_policy"])
		decisions[labels["outgrow_ratelimit_decision"]] = m.GetCounter().GetValue()
	}
	assert.Equal(t, map[string]float64{"allowed": 1, "limited": 1}, decisions)
	for _, m := range families["outgrow_breaker_call_duration_seconds"].GetMetric() {
		assert.Equal(t, uint64(1), m.GetHistogram().GetSampleCount())
	}
	for _, m := range families["outgrow_health_status"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "outgrow_health_status" {
				assert.Equal(t, map[string]float64{"fail": 1}[l.GetValue()], m.GetGauge().GetValue(), l.GetValue())
			}
		}
	}
	for name := range families {
		if strings.HasPrefix(name, "outgrow_") {
			assert.False(t, strings.HasSuffix(name, "_ratio"), "%s: state gauges have no unit suffix", name)
		}
	}
}
