package main

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/outgrow/outgrow/examples/api/app"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestMetricsEndpoint runs the instrumented service with -metrics, logs in, and scrapes
// /metrics: outgrow's instruments and otelhttp's are there, in Prometheus's format.
func TestMetricsEndpoint(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, app.Config{Addr: "127.0.0.1:0", CookieInsecure: true}, true, listening)
	}()
	var addr string
	select {
	case addr = <-listening:
	case err := <-done:
		t.Fatalf("run: %v", err)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second, Jar: jar, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.PostForm("http://"+addr+"/api/login", url.Values{"user": {"ada"}})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d", resp.StatusCode)
	}

	resp, err = client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"outgrow_ratelimit_decisions_total", "outgrow_breaker_state", "outgrow_session_changes_total",
		"outgrow_health_status", "http_server_request_duration_seconds",
	} {
		if _, ok := families[name]; !ok {
			var names []string
			for n := range families {
				names = append(names, n)
			}
			t.Errorf("%s not served; served: %s", name, strings.Join(names, " "))
		}
	}
	var login float64
	for _, m := range families["outgrow_ratelimit_decisions_total"].GetMetric() {
		var policy, decision string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "outgrow_ratelimit_policy":
				policy = l.GetValue()
			case "outgrow_ratelimit_decision":
				decision = l.GetValue()
			}
		}
		if policy == "login" && decision == "allowed" {
			login = m.GetCounter().GetValue()
		}
	}
	if login != 1 {
		t.Errorf("login decisions allowed = %v, want 1", login)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}
