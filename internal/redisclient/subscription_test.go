package redisclient

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outgrow/outgrow/internal/redistest"
)

// events records what a subscription reports, for tests.
type events struct {
	mu       sync.Mutex
	messages []string
	subs     []bool
	lost     int
	changed  chan struct{}
}

func newEvents() *events { return &events{changed: make(chan struct{}, 100)} }

func (e *events) config(channel string) SubscribeConfig {
	note := func(f func()) {
		e.mu.Lock()
		f()
		e.mu.Unlock()
		e.changed <- struct{}{}
	}
	return SubscribeConfig{
		Channel:      channel,
		PingInterval: 100 * time.Millisecond,
		OnMessage:    func(p string) { note(func() { e.messages = append(e.messages, p) }) },
		OnSubscribed: func(first bool) { note(func() { e.subs = append(e.subs, first) }) },
		OnLost:       func(error) { note(func() { e.lost++ }) },
	}
}

// until waits up to 10s for cond.
func (e *events) until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		e.mu.Lock()
		ok := cond()
		e.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-e.changed:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestSubscriptionHearsAndResubscribesAfterAKilledConnection(t *testing.T) {
	for _, k := range redistest.Kinds()[1:] {
		if k == redistest.Miniredis {
			continue // no CLIENT KILL
		}
		t.Run(string(k), func(t *testing.T) {
			b := redistest.Open(t, k)
			name := "redisclient-test-" + rand.Text()[:8]
			rdb := namedClient(t, k, name)
			c := newClient(t, rdb, Config{})
			ev := newEvents()
			ch := b.Prefix + "ch"
			s := c.Subscribe(ev.config(ch))
			defer s.Close()
			if !s.WaitReady(5 * time.Second) {
				t.Fatal("not confirmed")
			}
			ctx := context.Background()
			b.Client.Publish(ctx, ch, "one")
			ev.until(t, "message one", func() bool { return len(ev.messages) == 1 && ev.messages[0] == "one" })
			if killed := redistest.KillSubscriptions(t, b.Client, name); killed != 1 {
				t.Fatalf("killed %d connections, want the subscription's one", killed)
			}
			ev.until(t, "lost and subscribed again", func() bool {
				return ev.lost >= 1 && len(ev.subs) >= 2 && ev.subs[0] && !ev.subs[len(ev.subs)-1]
			})
			b.Client.Publish(ctx, ch, "two")
			ev.until(t, "message two", func() bool { return len(ev.messages) == 2 })
		})
	}
}

// namedClient returns a client of backend kind k whose connections carry name.
func namedClient(t *testing.T, k redistest.Kind, name string) redis.UniversalClient {
	t.Helper()
	var rdb redis.UniversalClient
	switch k {
	case redistest.Cluster:
		rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(os.Getenv(redistest.EnvCluster), ","), ClientName: name})
	case redistest.Sentinel:
		rdb = redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: os.Getenv(redistest.EnvSentinelMaster), SentinelAddrs: strings.Split(os.Getenv(redistest.EnvSentinel), ","),
			ClientName: name,
		})
	default:
		opt, err := redis.ParseURL(os.Getenv(redistest.EnvURL))
		if err != nil {
			t.Fatal(err)
		}
		opt.ClientName = name
		rdb = redis.NewClient(opt)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// TestSubscriptionDetectsSilence: a blackholed connection is noticed by the PING, dropped and
// made again once traffic flows.
func TestSubscriptionDetectsSilence(t *testing.T) {
	b := redistest.Open(t, redistest.Miniredis)
	p := redistest.StartProxy(t, b.Mini.Addr())
	rc := redis.NewClient(&redis.Options{Addr: p.Addr(), ReadTimeout: 5 * time.Second})
	defer rc.Close()
	c := newClient(t, rc, Config{})
	ev := newEvents()
	s := c.Subscribe(ev.config("ch"))
	defer s.Close()
	if !s.WaitReady(5 * time.Second) {
		t.Fatal("not confirmed")
	}
	p.Blackhole(true)
	ev.until(t, "the silent subscription is lost", func() bool { return ev.lost == 1 })
	if s.Hearing() {
		t.Fatal("Hearing after loss")
	}
	p.Blackhole(false)
	p.Cut()
	ev.until(t, "subscribed again", func() bool { return len(ev.subs) >= 2 && !ev.subs[len(ev.subs)-1] })
	if !s.Hearing() {
		t.Fatal("not Hearing after the new confirmation")
	}
}

// TestIdleClientSeesOutageAndRecovery: with no call at all, the subscription tells the client
// that Redis went away and that it came back.
func TestIdleClientSeesOutageAndRecovery(t *testing.T) {
	srv := redistest.StartServer(t, 0)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	defer rc.Close()
	c := newClient(t, rc, Config{RetryInterval: 100 * time.Millisecond})
	ev := newEvents()
	s := c.Subscribe(ev.config("ch"))
	defer s.Close()
	if !s.WaitReady(5 * time.Second) {
		t.Fatal("not confirmed")
	}
	srv.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for !c.Down() {
		if time.Now().After(deadline) {
			t.Fatal("an idle client never saw the outage")
		}
		time.Sleep(10 * time.Millisecond)
	}
	redistest.StartServer(t, srv.Port())
	for c.Down() {
		if time.Now().After(deadline) {
			t.Fatal("an idle client never saw Redis come back")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := c.Stats(); st.Calls != 0 {
		t.Fatalf("stats %+v: no call was made", st)
	}
}

// TestCloseWhileResubscribing: Close lands while the subscription is between a loss and its next
// attempt (here, all the time: Redis refuses every connection). It returns, and nothing panics.
func TestCloseWhileResubscribing(t *testing.T) {
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer rc.Close()
	c := newClient(t, rc, Config{RetryInterval: time.Nanosecond}) // resubscribe at once
	for i := range 500 {
		s := c.Subscribe(SubscribeConfig{Channel: "ch"})
		time.Sleep(time.Duration(i%50) * time.Microsecond)
		s.Close()
	}
}

// TestCloseWhileRedisFrozen: Redis is frozen (SIGSTOP), the subscription is lost and tries to
// subscribe again against a server that accepts connections and answers nothing: Close
// returns within its documented bound, the client's ReadTimeout, in both modes, and leaks
// nothing (goleak).
func TestCloseWhileRedisFrozen(t *testing.T) {
	for _, ctxTimeouts := range []bool{true, false} {
		t.Run(fmt.Sprintf("ContextTimeoutEnabled=%v", ctxTimeouts), func(t *testing.T) {
			srv := redistest.StartServer(t, 0)
			t.Cleanup(srv.Thaw)
			const readTimeout = 500 * time.Millisecond
			rc := redis.NewClient(&redis.Options{Addr: srv.Addr(), ReadTimeout: readTimeout, ContextTimeoutEnabled: ctxTimeouts})
			defer rc.Close()
			c := newClient(t, rc, Config{RetryInterval: 50 * time.Millisecond})
			ev := newEvents()
			s := c.Subscribe(ev.config("ch"))
			if !s.WaitReady(5 * time.Second) {
				t.Fatal("not confirmed")
			}
			srv.Freeze()
			ev.until(t, "the frozen subscription is lost", func() bool { return ev.lost == 1 })
			time.Sleep(100 * time.Millisecond) // now it is subscribing again, and waits
			start := time.Now()
			s.Close()
			bound := readTimeout + 300*time.Millisecond
			if d := time.Since(start); d > bound {
				t.Fatalf("Close took %v, want at most %v", d, bound)
			}
		})
	}
}
