package breaker

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func respond(code int, header ...string) roundTripFunc {
	return func(r *http.Request) (*http.Response, error) {
		h := http.Header{}
		for i := 0; i+1 < len(header); i += 2 {
			h.Set(header[i], header[i+1])
		}
		return &http.Response{StatusCode: code, Header: h, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
	}
}

func get(t *testing.T, rt http.RoundTripper) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://downstream.test/items", nil)
	require.NoError(t, err)
	return rt.RoundTrip(req)
}

func TestTransportClassifies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, Config{Name: "downstream", Failures: 3})
		code := http.StatusNotFound
		sent := 0
		rt := b.Transport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
			sent++
			return respond(code)(r)
		}))
		for range 10 {
			resp, err := get(t, rt)
			require.NoError(t, err)
			assert.Equal(t, http.StatusNotFound, resp.StatusCode)
		}
		assert.Equal(t, StateClosed, b.State(), "4xx are the caller's fault")

		code = http.StatusBadGateway
		for range 3 {
			_, err := get(t, rt)
			require.NoError(t, err, "the response is returned as is")
		}
		assert.Equal(t, StateOpen, b.State())
		before := sent
		_, err := get(t, rt)
		require.ErrorIs(t, err, ErrOpen)
		assert.Equal(t, before, sent, "nothing is sent while open")
	})
}

func TestTransportErrorsAndCancellation(t *testing.T) {
	b := newBreaker(t, Config{Failures: 2})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rt := b.Transport(roundTripFunc(func(r *http.Request) (*http.Response, error) { return nil, r.Context().Err() }))
	for range 5 {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://x.test/", nil)
		_, err := rt.RoundTrip(req)
		require.Error(t, err)
	}
	assert.Equal(t, StateClosed, b.State(), "cancelled requests never trip")
	rt = b.Transport(roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("connection refused") }))
	for range 2 {
		_, _ = get(t, rt)
	}
	assert.Equal(t, StateOpen, b.State(), "transport errors fail")
}

func TestTransportHonoursRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, Config{Failures: 100, OpenDuration: 10 * time.Second, MaxOpenDuration: time.Minute})
		_, err := get(t, b.Transport(respond(http.StatusServiceUnavailable, "Retry-After", "7")))
		require.NoError(t, err)
		assert.Equal(t, StateOpen, b.State(), "a 503 with Retry-After opens at once")
		var oe *OpenError
		_, err = get(t, b.Transport(respond(http.StatusOK)))
		require.True(t, errors.As(err, &oe))
		assert.Equal(t, 7*time.Second, oe.RetryAfter())

		time.Sleep(7 * time.Second)
		_, err = get(t, b.Transport(respond(http.StatusTooManyRequests, "Retry-After", "86400")))
		require.NoError(t, err)
		_, err = get(t, b.Transport(respond(http.StatusOK)))
		require.True(t, errors.As(err, &oe))
		assert.Equal(t, time.Minute, oe.RetryAfter(), "bounded by MaxOpenDuration")
	})
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"3": 3 * time.Second, "0": 0, "-1": 0, "x": 0, "": 0,
		"Fri, 27 Nov 2026 00:00:10 GMT": 10 * time.Second, "Thu, 26 Nov 2026 00:00:10 GMT": 0,
	} {
		d, ok := parseRetryAfter(v, now)
		assert.Equal(t, want, d, v)
		assert.Equal(t, want > 0, ok, v)
	}
}

func TestMiddleware(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBreaker(t, Config{Failures: 2, OpenDuration: 1500 * time.Millisecond})
		code := http.StatusInternalServerError
		h := b.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if code != http.StatusOK {
				w.WriteHeader(code)
			}
			_, _ = w.Write([]byte("body"))
		}))
		serve := func() *httptest.ResponseRecorder {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
			return w
		}
		assert.Equal(t, 500, serve().Code)
		assert.Equal(t, 500, serve().Code)
		w := serve()
		assert.Equal(t, http.StatusServiceUnavailable, w.Code)
		assert.Equal(t, "2", w.Header().Get("Retry-After"), "1.5 s rounds up")
		assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
		assert.JSONEq(t, `{"error":"Service temporarily unavailable."}`, w.Body.String())

		time.Sleep(1500 * time.Millisecond)
		code = http.StatusOK
		assert.Equal(t, http.StatusOK, serve().Code, "the probe succeeds")
		assert.Equal(t, StateClosed, b.State())
		code = http.StatusNotFound
		for range 5 {
			serve()
		}
		assert.Equal(t, StateClosed, b.State(), "4xx from the handler are not failures")
	})
}

// FuzzParseRetryAfter: any header value parses to a positive wait of at most a year, or to none.
func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"", "0", "1", "120", "-5", "99999999999999999999", "Wed, 21 Oct 2015 07:28:00 GMT", "soon", " 5"} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := parseRetryAfter(v, now)
		if !ok {
			if d != 0 {
				t.Fatalf("%q: not ok but %v", v, d)
			}
			return
		}
		if d <= 0 {
			t.Fatalf("%q: wait %v", v, d)
		}
		if _, err := http.ParseTime(v); err != nil && d > 365*24*time.Hour {
			t.Fatalf("%q: seconds beyond a year: %v", v, d)
		}
	})
}
