package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain runs the program itself when a test starts it as a child process (-role ...), as
// runAll does; otherwise the tests.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-role" {
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

var quiet = slog.New(slog.DiscardHandler)

// start runs cfg until the test ends and returns its address.
func start(t *testing.T, cfg config) (addr string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, quiet, listening) }()
	select {
	case addr = <-listening:
	case err := <-done:
		t.Fatalf("run(%+v): %v", cfg, err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run(%+v): %v", cfg, err)
			}
		})
	}
	t.Cleanup(stop)
	return addr, stop
}

func get(t *testing.T, client *http.Client, url string, v any) int {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("GET %s: %q: %v", url, body, err)
		}
	}
	return resp.StatusCode
}

// TestBalancerInFront: round robin spreads requests over three backends; a backend that shuts
// down leaves the rotation (its readiness fails while it drains) and no request fails.
func TestBalancerInFront(t *testing.T) {
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(client.CloseIdleConnections)
	var urls []string
	var stops []func()
	for _, name := range []string{"b1", "b2", "b3"} {
		addr, stop := start(t, config{Role: "backend", Addr: "127.0.0.1:0", Name: name})
		urls = append(urls, "http://"+addr)
		stops = append(stops, stop)
	}
	var live struct{ Status string }
	if code := get(t, client, urls[0]+"/api/health", &live); code != 200 || live.Status != "ok" {
		t.Fatalf("backend liveness: %d %+v", code, live)
	}
	addr, _ := start(t, config{Role: "balancer", Addr: "127.0.0.1:0", Backends: urls, Algorithm: "round-robin", Interval: 20 * time.Millisecond})
	front := "http://" + addr

	count := map[string]int{}
	for range 6 {
		var got struct{ Backend string }
		if code := get(t, client, front+"/", &got); code != 200 {
			t.Fatalf("GET /: %d", code)
		}
		count[got.Backend]++
	}
	if want := map[string]int{"b1": 2, "b2": 2, "b3": 2}; !mapsEqual(count, want) {
		t.Errorf("round robin over three backends: %v, want %v", count, want)
	}

	// b2 shuts down: while it drains, the balancer's probes of /api/ready take it out.
	go stops[1]()
	failed := 0
	deadline := time.Now().Add(3 * time.Second)
	seen := map[string]int{}
	for time.Now().Before(deadline) {
		var got struct{ Backend string }
		if code := get(t, client, front+"/", &got); code != 200 {
			failed++
		}
		seen[got.Backend]++
		time.Sleep(5 * time.Millisecond)
	}
	if failed != 0 {
		t.Errorf("%d requests failed while b2 shut down", failed)
	}
	var admin struct {
		Balancer struct {
			Backends []struct {
				ID string
				Up bool
			}
		}
	}
	get(t, client, front+"/admin/backends", &admin)
	for _, be := range admin.Balancer.Backends {
		if be.Up != (be.ID != urls[1]) {
			t.Errorf("backend %s up=%v after b2 left", be.ID, be.Up)
		}
	}
	t.Logf("requests while b2 shut down: %v", seen)
}

// TestAll starts three backend processes and the balancer, as `go run ./examples/loadbalancer`
// does.
func TestAll(t *testing.T) {
	// Port 0: each backend picks a free port and tells it.
	addr, _ := start(t, config{Role: "all", Addr: "127.0.0.1:0", Ports: []int{0, 0, 0}, Algorithm: "least-connections", Interval: 50 * time.Millisecond})
	client := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(client.CloseIdleConnections)
	seen := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for len(seen) < 3 && time.Now().Before(deadline) {
		var got struct{ Backend string }
		if code := get(t, client, "http://"+addr+"/", &got); code == 200 {
			seen[got.Backend] = true
		} else {
			time.Sleep(20 * time.Millisecond) // the child processes are starting
		}
	}
	if len(seen) != 3 {
		t.Errorf("backends answering: %v, want b1, b2 and b3", seen)
	}
}

func TestBadConfig(t *testing.T) {
	for _, cfg := range []config{
		{Role: "nope"},
		{Role: "balancer", Addr: "127.0.0.1:0"},
		{Role: "balancer", Addr: "127.0.0.1:0", Backends: []string{"http://a"}, Algorithm: "fastest"},
		{Role: "backend", Addr: "not an address"},
	} {
		if err := run(context.Background(), cfg, quiet, nil); err == nil {
			t.Errorf("run(%+v) started", cfg)
		}
	}
	if _, err := list("1,x", strconv.Atoi); err == nil {
		t.Error("list accepted x")
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
