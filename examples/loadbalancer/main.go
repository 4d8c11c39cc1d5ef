// Command loadbalancer is the article's load balancer: a reverse proxy that spreads requests
// over three backend processes with round robin, least connections, IP hash or weighted round
// robin, checks their health the way an ALB does, and takes a dead backend out of rotation
// from its failed requests within a second.
//
//	go run ./examples/loadbalancer                                 # :8080 in front of 3 backends on :9001-9003
//	go run ./examples/loadbalancer -algorithm least-connections
//	curl -s localhost:8080/                                        # {"backend":"b1"}, then b2, b3, ...
//	curl -s localhost:8080/admin/backends                          # the set: up, down, ejected, in flight
//	kill <pid of a backend>                                        # its requests go to the others
//
// The default role, all, starts the three backends as child processes of its own binary
// (-role backend) and runs the balancer (-role balancer) in front of them; each role also runs
// alone:
//
//	go run ./examples/loadbalancer -role backend -addr :9001 -name b1
//	go run ./examples/loadbalancer -role balancer -backends http://127.0.0.1:9001,http://127.0.0.1:9002
//
// Each backend serves /api/health (liveness) and /api/ready (readiness) with package health;
// the balancer probes /api/ready, so that a backend shutting down (readiness 503 while it
// drains) leaves the rotation before it stops. Weights for weighted-round-robin follow the
// backends' order: -weights 3,1,1.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/outgrow/outgrow/balancer"
	"github.com/outgrow/outgrow/health"
)

// config is the program's flags.
type config struct {
	Role      string // all, balancer or backend
	Addr      string
	Name      string        // backend: its name in answers
	Backends  []string      // balancer: base URLs
	Weights   []int         // balancer: for weighted-round-robin, in the order of Backends
	Algorithm string        // balancer
	Interval  time.Duration // balancer: health check interval
	Ports     []int         // all: the backends' ports
	Announce  bool          // backend: write the address to stdout once listening
}

func main() {
	var cfg config
	var backends, weights, ports string
	flag.StringVar(&cfg.Role, "role", "all", "all (3 backend processes and the balancer), balancer, or backend")
	flag.StringVar(&cfg.Addr, "addr", ":8080", "address to listen on")
	flag.StringVar(&cfg.Name, "name", "b1", "backend: its name")
	flag.StringVar(&backends, "backends", "", "balancer: comma-separated backend base URLs")
	flag.StringVar(&weights, "weights", "", "balancer: comma-separated weights, for weighted-round-robin")
	flag.StringVar(&cfg.Algorithm, "algorithm", "round-robin", "round-robin, weighted-round-robin, least-connections, ip-hash, power-of-two or random")
	flag.DurationVar(&cfg.Interval, "interval", 5*time.Second, "balancer: health check interval (the article's ALB: 30s)")
	flag.StringVar(&ports, "ports", "9001,9002,9003", "all: the backends' ports")
	flag.BoolVar(&cfg.Announce, "announce", false, "backend: write the address listened on to stdout (for -role all)")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("role", cfg.Role)
	var err error
	if cfg.Backends, err = list(backends, func(s string) (string, error) { return s, nil }); err == nil {
		if cfg.Weights, err = list(weights, strconv.Atoi); err == nil {
			cfg.Ports, err = list(ports, strconv.Atoi)
		}
	}
	if err != nil {
		logger.Error("bad flag", "err", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, logger, nil); err != nil {
		logger.Error("stopped", "err", err)
		os.Exit(1)
	}
}

// list parses a comma-separated flag.
func list[T any](s string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := parse(f)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", f, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// run runs cfg.Role until ctx ends. It reports the address it listens on to listening, if
// not nil.
func run(ctx context.Context, cfg config, logger *slog.Logger, listening chan<- string) error {
	switch cfg.Role {
	case "backend":
		return runBackend(ctx, cfg, logger, listening)
	case "balancer":
		return runBalancer(ctx, cfg, logger, listening)
	case "all":
		return runAll(ctx, cfg, logger, listening)
	}
	return fmt.Errorf("-role %q: want all, balancer or backend", cfg.Role)
}

// runBackend serves a backend: GET / answers {"backend": name}, with health endpoints.
func runBackend(ctx context.Context, cfg config, logger *slog.Logger, listening chan<- string) error {
	// Readiness turns 503 on SIGTERM and stays so for DrainDelay while the backend still
	// serves, so that the balancer's probes take it out of rotation before it stops.
	hc, err := health.New(health.Config{Logger: logger, DrainDelay: 2 * time.Second})
	if err != nil {
		return err
	}
	defer hc.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]string{"backend": cfg.Name})
	})
	if cfg.Announce {
		announced, forward := make(chan string, 1), listening
		listening = announced
		go func() {
			if addr, ok := <-announced; ok {
				fmt.Println(addr)
				if forward != nil {
					forward <- addr
				}
			}
		}()
		defer close(announced)
	}
	return serve(ctx, cfg.Addr, hc.Middleware(mux), logger, listening, hc)
}

// runBalancer serves the reverse proxy in front of cfg.Backends.
func runBalancer(ctx context.Context, cfg config, logger *slog.Logger, listening chan<- string) error {
	alg, err := balancer.ParseAlgorithm(cfg.Algorithm)
	if err != nil {
		return err
	}
	if len(cfg.Backends) == 0 {
		return errors.New("-backends: no backend")
	}
	set := make([]balancer.Backend, len(cfg.Backends))
	for i, u := range cfg.Backends {
		set[i] = balancer.Backend{ID: u}
		if i < len(cfg.Weights) {
			set[i].Weight = cfg.Weights[i]
		}
	}
	b, err := balancer.New(balancer.Config{Algorithm: alg, Logger: logger}, set...)
	if err != nil {
		return err
	}
	checker, err := balancer.NewChecker(b, balancer.CheckConfig{Path: "/api/ready", Interval: cfg.Interval, Timeout: min(cfg.Interval, 5*time.Second)})
	if err != nil {
		return err
	}
	proxy, err := balancer.NewProxy(b, balancer.ProxyConfig{})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", proxy)
	// The set as the balancer sees it. A real service puts this behind authentication.
	mux.HandleFunc("GET /admin/backends", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"algorithm": alg.String(), "balancer": b.Stats(), "proxy": proxy.Stats()})
	})
	var wg sync.WaitGroup
	defer wg.Wait()
	checks, stopChecks := context.WithCancel(ctx)
	defer stopChecks()
	wg.Go(func() { _ = checker.Run(checks) })
	logger.Info("balancing", "algorithm", alg.String(), "backends", cfg.Backends)
	return serve(ctx, cfg.Addr, mux, logger, listening, nil)
}

// runAll starts one backend process per port, then the balancer in front of them, and stops
// the backends when it stops.
func runAll(ctx context.Context, cfg config, logger *slog.Logger, listening chan<- string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var children []*exec.Cmd
	defer func() {
		for _, c := range children {
			_ = c.Process.Signal(syscall.SIGTERM)
		}
		for _, c := range children {
			_ = c.Wait()
		}
	}()
	cfg.Backends = nil
	for i, port := range cfg.Ports {
		// -announce: the child writes the address it listens on as its first line (port 0
		// picks a free one).
		c := exec.Command(self, "-role", "backend", "-announce", "-addr", fmt.Sprintf("127.0.0.1:%d", port), "-name", fmt.Sprintf("b%d", i+1))
		c.Stderr = os.Stderr
		out, err := c.StdoutPipe()
		if err != nil {
			return err
		}
		if err := c.Start(); err != nil {
			return err
		}
		children = append(children, c)
		addr, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			return fmt.Errorf("backend b%d did not start: %w", i+1, err)
		}
		addr = strings.TrimSpace(addr)
		cfg.Backends = append(cfg.Backends, "http://"+addr)
		logger.Info("backend started", "pid", c.Process.Pid, "addr", addr)
	}
	return runBalancer(ctx, cfg, logger, listening)
}

// serve serves h on addr until ctx ends, then drains (hc, when not nil) and shuts down.
func serve(ctx context.Context, addr string, h http.Handler, logger *slog.Logger, listening chan<- string, hc *health.Checker) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	logger.Info("listening", "addr", ln.Addr().String())
	if listening != nil {
		listening <- ln.Addr().String()
	}
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	if hc != nil {
		// Readiness 503 for DrainDelay while still serving, then a graceful shutdown.
		err = hc.Shutdown(context.WithoutCancel(ctx), srv)
	} else {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		err = srv.Shutdown(sctx)
	}
	<-served
	return err
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
