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
// server. Its zero value is not usable; create one with [StartServer] or [StartServerWith].
type Server struct {
	t    testing.TB
	port int
	bin  string
	args []string
	cmd  *exec.Cmd
}

// ServerConfig says how [StartServerWith] starts a redis-server. The zero value is a server on
// a free port that keeps nothing on disk.
type ServerConfig struct {
	// Port is the port to listen on. Default: a free one.
	Port int
	// AOF turns on the append-only file, in a directory of the test's (t.TempDir), fsynced
	// before each reply (appendfsync always): a server killed and started again by
	// [Server.Restart] still has every write it acknowledged. Default: false (no persistence).
	AOF bool
}

// StartServer starts redis-server on port (a free port when 0), without persistence, and
// waits until it answers. The test is skipped when redis-server is not installed (.ci/run
// installs it); the server is killed when the test ends.
func StartServer(t testing.TB, port int) *Server {
	t.Helper()
	return StartServerWith(t, ServerConfig{Port: port})
}

// StartServerWith starts redis-server as cfg says and waits until it answers. The test is
// skipped when redis-server is not installed (.ci/run installs it); the server is killed when
// the test ends.
func StartServerWith(t testing.TB, cfg ServerConfig) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redistest: redis-server is not installed; .ci/run installs it")
	}
	port := cfg.Port
	if port == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
	}
	args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", ""}
	if cfg.AOF {
		// The directory is removed after the server is killed: cleanups run last in, first out.
		args = append(args, "--dir", t.TempDir(), "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	s := &Server{t: t, port: port, bin: bin, args: args}
	t.Cleanup(s.Stop)
	s.start()
	return s
}

// start runs the server and waits until it answers, its data loaded.
func (s *Server) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.bin, s.args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("redistest: start redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for c.Ping(context.Background()).Err() != nil { // LOADING while it reads its AOF
		if time.Now().After(deadline) {
			s.t.Fatalf("redistest: redis-server on %d does not answer", s.port)
		}
		time.Sleep(10 * time.Millisecond)
	}
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

// Stop kills the server (SIGKILL: a crash, not a shutdown) and waits for it to exit. It is
// idempotent.
func (s *Server) Stop() {
	if s.cmd.Process != nil && s.cmd.ProcessState == nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

// Restart kills the server if it runs (as Stop does: a crash), starts it again on the same
// port with the same options and data directory, and waits until it answers, its data loaded:
// with [ServerConfig.AOF], every write it acknowledged before the crash. Call it from the
// test's goroutine.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}
