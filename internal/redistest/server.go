package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a private redis-server on a loopback port, for tests that stop and restart a real
// server. Its zero value is not usable; create one with [StartServer].
type Server struct {
	t    testing.TB
	port int
	cmd  *exec.Cmd
}

// StartServer starts redis-server on port (a free port when 0) and waits until it answers. The
// test is skipped when redis-server is not installed (.ci/run installs it); the server is killed
// when the test ends.
func StartServer(t testing.TB, port int) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redistest: redis-server is not installed; .ci/run installs it")
	}
	if port == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
	}
	s := &Server{t: t, port: port}
	s.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("redistest: start redis-server: %v", err)
	}
	t.Cleanup(s.Stop)
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("redistest: redis-server on %d does not answer", port)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// Port is the server's port, to start it again on the same one.
func (s *Server) Port() int { return s.port }

// Freeze stops the server's process (SIGSTOP): connections stay open and nothing answers, as
// with a Redis stalled by the machine. Thaw resumes it.
func (s *Server) Freeze() { s.signal(syscall.SIGSTOP) }

// Thaw resumes a frozen server (SIGCONT).
func (s *Server) Thaw() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) {
	if s.cmd.Process != nil && s.cmd.ProcessState == nil {
		if err := s.cmd.Process.Signal(sig); err != nil {
			s.t.Errorf("redistest: signal %v to redis-server: %v", sig, err)
		}
	}
}

// Stop kills the server and waits for it to exit. It is idempotent.
func (s *Server) Stop() {
	if s.cmd.Process != nil && s.cmd.ProcessState == nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}
