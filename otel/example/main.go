// Command example serves the service of examples/api instrumented with OpenTelemetry: every
// component through outgrow's otel package, HTTP server spans and metrics through otelhttp,
// and Redis round trips through redisotel. It is a module of its own, so that the exporters'
// dependencies reach neither outgrow's users nor those of its otel package.
//
//	cd otel/example
//	go run . -metrics                                     # Prometheus text on GET /metrics
//	curl localhost:8080/metrics
//	OTEL_TRACES_EXPORTER=console OTEL_METRICS_EXPORTER=console go run .   # both on stdout
//	OTEL_TRACES_EXPORTER=otlp OTEL_METRICS_EXPORTER=otlp \
//	  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 go run .        # to a collector
//	REDIS_URL=redis://127.0.0.1:6379/0 go run . -metrics  # shared state in Redis
//
// The exporters follow OpenTelemetry's environment variables (OTEL_TRACES_EXPORTER,
// OTEL_METRICS_EXPORTER: otlp, console, prometheus or none; OTEL_EXPORTER_OTLP_*,
// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, ...); an exporter left unset
// is off, rather than OTLP to a collector that may not exist. The other variables are those
// of examples/api (ADDR, REDIS_URL, KEY_PREFIX, COOKIE_INSECURE, DOWNSTREAM_URL).
package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	global "go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"

	"github.com/outgrow/outgrow/examples/api/app"
	outgrowotel "github.com/outgrow/outgrow/otel"
)

func main() {
	metrics := flag.Bool("metrics", false, "serve Prometheus metrics on GET /metrics")
	flag.Parse()
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = ":8080"
	}
	cfg := app.Config{
		Addr:           addr,
		RedisURL:       os.Getenv("REDIS_URL"),
		KeyPrefix:      os.Getenv("KEY_PREFIX"),
		CookieInsecure: os.Getenv("COOKIE_INSECURE") == "1",
		DownstreamURL:  os.Getenv("DOWNSTREAM_URL"),
	}
	if err := run(context.Background(), cfg, *metrics, nil); err != nil {
		slog.Error("example stopped", "error", err)
		os.Exit(1)
	}
}

// run serves cfg's service with telemetry until ctx ends or a signal arrives.
func run(ctx context.Context, cfg app.Config, metrics bool, listening chan<- string) (err error) {
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(serviceName())))
	if err != nil {
		return err
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res)}
	if os.Getenv("OTEL_METRICS_EXPORTER") != "" {
		reader, err := autoexport.NewMetricReader(ctx)
		if err != nil {
			return err
		}
		mopts = append(mopts, sdkmetric.WithReader(reader))
	}
	var registry *prometheus.Registry
	if metrics {
		registry = prometheus.NewRegistry()
		exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
		if err != nil {
			return err
		}
		mopts = append(mopts, sdkmetric.WithReader(exporter))
	}
	mp := sdkmetric.NewMeterProvider(mopts...)
	defer func() { err = errors.Join(err, mp.Shutdown(context.WithoutCancel(ctx))) }()

	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if os.Getenv("OTEL_TRACES_EXPORTER") != "" {
		exporter, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			return err
		}
		topts = append(topts, sdktrace.WithBatcher(exporter))
	}
	tp := sdktrace.NewTracerProvider(topts...)
	defer func() { err = errors.Join(err, tp.Shutdown(context.WithoutCancel(ctx))) }()
	global.SetTracerProvider(tp)
	global.SetMeterProvider(mp)
	global.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))

	tel, err := outgrowotel.New(outgrowotel.Config{MeterProvider: mp, TracerProvider: tp})
	if err != nil {
		return err
	}
	cfg.Hooks = app.Hooks{
		Redis: func(rdb *redis.Client) error {
			return errors.Join(redisotel.InstrumentTracing(rdb, redisotel.WithTracerProvider(tp)),
				redisotel.InstrumentMetrics(rdb, redisotel.WithMeterProvider(mp)))
		},
		Limiter: tel.LimiterHooks,
		Breaker: tel.BreakerHooks,
		Session: tel.SessionHooks,
		Health:  tel.HealthHooks,
	}
	cfg.Observe = func(c app.Components) error {
		// The registrations live as long as the meter provider: nothing to unregister.
		_, err1 := tel.ObserveLimiters(c.Limiters...)
		_, err2 := tel.ObserveBreakers(c.Breaker)
		_, err3 := tel.ObserveSessions("web", c.Sessions)
		_, err4 := tel.ObserveHealth(c.Health)
		err := errors.Join(err1, err2, err3, err4)
		if c.BreakerStore != nil {
			_, err5 := tel.ObserveBreakerStore("redis", c.BreakerStore)
			err = errors.Join(err, err5)
		}
		return err
	}
	cfg.Wrap = func(h http.Handler) http.Handler {
		return otelhttp.NewHandler(h, "api", otelhttp.WithTracerProvider(tp), otelhttp.WithMeterProvider(mp))
	}
	if registry != nil {
		cfg.Routes = func(mux *http.ServeMux) {
			mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
		}
	}
	return app.Run(ctx, cfg, listening)
}

// serviceName is OTEL_SERVICE_NAME's, else the example's; resource.Default reads the
// environment too, and the later resource wins, so the variable is read here as well.
func serviceName() string {
	if s := os.Getenv("OTEL_SERVICE_NAME"); s != "" {
		return s
	}
	return "outgrow-example"
}
