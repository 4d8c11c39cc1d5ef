package health

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// server runs hc.Middleware(app) on a loopback port; /slow blocks until release is closed.
type server struct {
	srv     *http.Server
	url     string
	client  *http.Client
	served  chan error
	entered chan struct{}
}

func startServer(t *testing.T, hc *Checker, release <-chan struct{}) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &server{
		url:     "http://" + ln.Addr().String(),
		client:  &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second},
		served:  make(chan error, 1),
		entered: make(chan struct{}, 16),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		s.entered <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "done")
	})
	mux.HandleFunc("/fast", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "fast") })
	s.srv = &http.Server{Handler: hc.Middleware(mux)}
	go func() { s.served <- s.srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = s.srv.Close()
		s.client.CloseIdleConnections()
	})
	return s
}

func (s *server) get(path string) (int, string, error) {
	resp, err := s.client.Get(s.url + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

type response struct {
	code int
	body string
	err  error
}

func TestShutdownDrainsThenWaitsForInFlight(t *testing.T) {
	hc, err := New(Config{Logger: quiet, DrainDelay: 2 * time.Second, ShutdownTimeout: 5 * time.Second})
	require.NoError(t, err)
	defer hc.Close()
	_, err = hc.Refresh(context.Background())
	require.NoError(t, err)
	release := make(chan struct{})
	s := startServer(t, hc, release)

	inflight := make(chan response, 1)
	go func() {
		code, body, err := s.get("/slow")
		inflight <- response{code, body, err}
	}()
	<-s.entered

	shutdown := make(chan error, 1)
	start := time.Now()
	go func() { shutdown <- hc.Shutdown(context.Background(), s.srv) }()

	// During the drain delay: readiness fails, liveness and the app still serve.
	require.Eventually(t, func() bool { return !hc.Ready() }, time.Second, time.Millisecond)
	code, body, err := s.get("/api/ready")
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, `"status":"draining"`)
	code, _, err = s.get("/api/health")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, code, "liveness while draining")
	code, body, err = s.get("/fast")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "fast", body, "new requests are still served during the drain delay")
	assert.Less(t, time.Since(start), 2*time.Second, "the checks above ran after the drain delay")

	// After the delay the listener closes; Shutdown waits for the in-flight request.
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", s.url[len("http://"):], 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, 5*time.Second, 10*time.Millisecond, "listener still open after the drain delay")
	assert.GreaterOrEqual(t, time.Since(start), 2*time.Second, "listener closed before the drain delay")
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v while a request was in flight", err)
	default:
	}
	close(release)
	r := <-inflight
	require.NoError(t, r.err)
	assert.Equal(t, "done", r.body, "the in-flight request completed")
	assert.NoError(t, <-shutdown)
	assert.ErrorIs(t, <-s.served, http.ErrServerClosed)
}

func TestShutdownTimeoutClosesConnections(t *testing.T) {
	hc, err := New(Config{Logger: quiet, DrainDelay: time.Millisecond, ShutdownTimeout: 100 * time.Millisecond})
	require.NoError(t, err)
	defer hc.Close()
	release := make(chan struct{})
	defer close(release)
	s := startServer(t, hc, release)
	inflight := make(chan response, 1)
	go func() {
		code, body, err := s.get("/slow")
		inflight <- response{code, body, err}
	}()
	<-s.entered
	err = hc.Shutdown(context.Background(), s.srv)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	r := <-inflight
	assert.Error(t, r.err, "the stuck request's connection was closed")
}

func TestShutdownOnSignal(t *testing.T) {
	// Keep SIGUSR1 from killing the test process before ShutdownOnSignal listens for it.
	keep := make(chan os.Signal, 1)
	signal.Notify(keep, syscall.SIGUSR1)
	defer signal.Stop(keep)

	hc, err := New(Config{Logger: quiet, DrainDelay: time.Millisecond, ShutdownTimeout: time.Second})
	require.NoError(t, err)
	defer hc.Close()
	s := startServer(t, hc, nil)
	done := make(chan error, 1)
	go func() { done <- hc.ShutdownOnSignal(context.Background(), s.srv, syscall.SIGUSR1) }()
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			assert.NoError(t, err)
			assert.False(t, hc.Ready())
			assert.ErrorIs(t, <-s.served, http.ErrServerClosed)
			return
		case <-tick.C:
			require.NoError(t, syscall.Kill(syscall.Getpid(), syscall.SIGUSR1))
		case <-deadline:
			t.Fatal("ShutdownOnSignal did not return after SIGUSR1")
		}
	}
}

func TestShutdownOnSignalContext(t *testing.T) {
	hc, err := New(Config{Logger: quiet, DrainDelay: time.Millisecond})
	require.NoError(t, err)
	defer hc.Close()
	s := startServer(t, hc, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hc.ShutdownOnSignal(ctx, s.srv) }()
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("ShutdownOnSignal did not return after its context ended")
	}
	assert.True(t, errors.Is(<-s.served, http.ErrServerClosed))
}
