package otel_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	outgrowotel "github.com/outgrow/outgrow/otel"
	"github.com/outgrow/outgrow/ratelimit"
)

// Serve the instruments to Prometheus on /metrics, through OpenTelemetry's Prometheus
// exporter: a login limit, instrumented, and a scrape after six attempts.
func Example_prometheus() {
	registry := prometheus.NewRegistry()
	exporter, _ := otelprom.New(otelprom.WithRegisterer(registry), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	tel, _ := outgrowotel.New(outgrowotel.Config{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))})

	store, _ := ratelimit.NewMemoryStore(ratelimit.MemoryConfig{})
	login, _ := ratelimit.New(store, ratelimit.Limit{Rate: 5, Period: time.Minute, Strict: true},
		ratelimit.Config{Name: "login", Hooks: tel.LimiterHooks("login", ratelimit.Hooks{})})
	_, _ = tel.ObserveLimiters(login) // keep the Registration to Unregister a limiter you drop

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for range 6 {
		_, _ = login.Allow(context.Background(), "203.0.113.7")
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		if strings.HasPrefix(lines.Text(), "outgrow_ratelimit_decisions_total") {
			fmt.Println(lines.Text())
		}
	}
	// Output:
	// outgrow_ratelimit_decisions_total{outgrow_ratelimit_decision="allowed",outgrow_ratelimit_policy="login"} 5
	// outgrow_ratelimit_decisions_total{outgrow_ratelimit_decision="limited",outgrow_ratelimit_policy="login"} 1
}
