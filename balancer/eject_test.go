package balancer

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pickID picks until id comes up, and returns its pick.
func pickID(t *testing.T, b *Balancer, id string) Pick {
	t.Helper()
	for range 100 {
		p, err := b.Pick(nil)
		require.NoError(t, err)
		if p.ID() == id {
			return p
		}
		p.Done()
	}
	t.Fatalf("%s never picked", id)
	return Pick{}
}

func ejected(b *Balancer, id string) bool {
	for _, s := range b.Stats().Backends {
		if s.ID == id {
			return s.Ejected
		}
	}
	return false
}

// TestEjectConsecutiveFailures: Failures consecutive failures eject a backend for the cooldown;
// a success in between starts the count over.
func TestEjectConsecutiveFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBalancer(t, Config{}, ids("a", "b", "c")...)
		fail := func(n int) {
			for range n {
				p := pickID(t, b, "a")
				p.Observe(false)
				p.Done()
			}
		}
		fail(4)
		p := pickID(t, b, "a")
		p.Observe(true)
		p.Done()
		fail(4)
		assert.False(t, ejected(b, "a"), "4, a success, 4: never 5 in a row")
		fail(1)
		require.True(t, ejected(b, "a"))
		assert.Equal(t, uint64(1), b.Stats().Ejections)
		got := picks(t, b, 30)
		assert.Zero(t, got["a"], "an ejected backend gets no picks: %v", got)

		time.Sleep(29 * time.Second)
		assert.True(t, ejected(b, "a"))
		time.Sleep(2 * time.Second)
		assert.False(t, ejected(b, "a"), "back after the 30s cooldown")
		assert.Equal(t, 10, picks(t, b, 30)["a"])
	})
}

// TestEjectCap: at most MaxEjected of the set is ejected at once.
func TestEjectCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBalancer(t, Config{}, ids("a", "b", "c", "d")...)
		for _, id := range []string{"a", "b", "c"} {
			for range 5 {
				p := pickID(t, b, id)
				p.Observe(false)
				p.Done()
			}
		}
		st := b.Stats()
		assert.Equal(t, uint64(2), st.Ejections)
		assert.Equal(t, uint64(1), st.EjectionsRefused, "half of 4")
		assert.False(t, ejected(b, "c"))

		off := newBalancer(t, Config{Eject: EjectConfig{Disable: true}}, ids("a", "b")...)
		for range 20 {
			p := pickID(t, off, "a")
			p.Observe(false)
			p.Done()
		}
		assert.False(t, ejected(off, "a"), "Disable")
		for name, cfg := range map[string]EjectConfig{
			"Failures": {Failures: -1}, "Cooldown": {Cooldown: -1}, "MaxEjected": {MaxEjected: 1.5},
		} {
			_, err := New(Config{Eject: cfg})
			require.ErrorIs(t, err, ErrInvalidConfig, name)
			assert.Contains(t, err.Error(), name)
		}
	})
}

// statusBackend answers every request with code.
func statusBackend(t *testing.T, code int) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }))
	t.Cleanup(s.Close)
	return s
}

// TestProxyEjectsOnlyBackendFailures: 503s eject a backend; 500s and clients that go away do
// not, so that clients cannot eject backends at will.
func TestProxyEjectsOnlyBackendFailures(t *testing.T) {
	ok := statusBackend(t, http.StatusOK)
	for code, want := range map[int]bool{http.StatusInternalServerError: false, http.StatusServiceUnavailable: true, http.StatusNotFound: false} {
		bad := statusBackend(t, code)
		p, b := newProxy(t, Config{}, ProxyConfig{}, bad.URL, ok.URL)
		for range 20 {
			serve(p, "GET", "http://example.com/", "", nil)
		}
		assert.Equal(t, want, ejected(b, bad.URL), "status %d", code)
	}

	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(hang); slow.Close() })
	p, b := newProxy(t, Config{}, ProxyConfig{}, slow.URL)
	var wg sync.WaitGroup
	for range 10 {
		ctx, cancel := context.WithCancel(context.Background())
		req := httptest.NewRequest("GET", "http://example.com/", nil).WithContext(ctx)
		wg.Go(func() { p.ServeHTTP(httptest.NewRecorder(), req) })
		time.Sleep(5 * time.Millisecond)
		cancel()
	}
	wg.Wait()
	assert.False(t, ejected(b, slow.URL), "clients that went away eject nothing")
}

// TestProxyEjectsDeadBackendFast: under steady load, a backend killed stops getting requests
// within a second through passive health, long before a 30s health check would notice.
func TestProxyEjectsDeadBackendFast(t *testing.T) {
	a, c := newBackend(t, "a"), newBackend(t, "c")
	dying := newBackend(t, "b")
	p, b := newProxy(t, Config{}, ProxyConfig{}, a.URL, dying.URL, c.URL)
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	client := front.Client()
	t.Cleanup(client.CloseIdleConnections)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { // about 100 requests a second
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if resp, err := client.Get(front.URL); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		}
	})
	time.Sleep(200 * time.Millisecond)
	dying.CloseClientConnections()
	dying.Close()
	killed := time.Now()
	for !ejected(b, dying.URL) && time.Since(killed) < 5*time.Second {
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(killed)
	stop()
	wg.Wait()
	assert.Less(t, took, time.Second, "time to eject a dead backend at 100 requests/s")
	t.Logf("ejected %v after the kill", took)
}

// TestStateChangeHook: every change of a backend's state is reported once, from health
// checks, ejections and their cooldowns, and draining.
func TestStateChangeHook(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got []string
		b := newBalancer(t, Config{Hooks: Hooks{OnStateChange: func(_ context.Context, id string, from, to State) {
			got = append(got, id+":"+from.String()+">"+to.String())
		}}}, ids("a", "b")...)
		require.NoError(t, b.SetUp("a", false))
		require.NoError(t, b.SetUp("a", false)) // no change, no call
		require.NoError(t, b.SetUp("a", true))
		for range 5 {
			p := pickID(t, b, "b")
			p.Observe(false)
			p.Done()
		}
		time.Sleep(31 * time.Second)
		require.NoError(t, b.Drain("b", true))
		assert.Equal(t, []string{"a:up>down", "a:down>up", "b:up>ejected", "b:ejected>up", "b:up>draining"}, got)
		assert.Equal(t, "State(9)", State(9).String())
	})
}

// TestEjectCountsBackendsOut: backends down or draining count against the cap, and the last
// backend in rotation is never ejected.
func TestEjectCountsBackendsOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBalancer(t, Config{WhenNoneUp: FailClosed}, ids("a", "b", "c", "d")...)
		require.NoError(t, b.SetUp("a", false))
		require.NoError(t, b.Drain("b", true))
		for range 5 {
			p := pickID(t, b, "c")
			p.Observe(false)
			p.Done()
		}
		assert.False(t, ejected(b, "c"), "2 of 4 out already: the cap")

		one := newBalancer(t, Config{WhenNoneUp: FailClosed}, ids("a")...)
		for range 10 {
			p := pickID(t, one, "a")
			p.Observe(false)
			p.Done()
		}
		_, err := one.Pick(nil)
		assert.NoError(t, err, "the last backend in rotation stays")
	})
}
