package breaker

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/outgrow/outgrow/internal/httpjson"
)

// StatusError is the outcome the HTTP integrations report for a response that counts as a
// failure, so that a custom Classifier can look at the status. It is a plain value.
type StatusError struct {
	Code int // the response's status code
}

// Error returns "breaker: HTTP status 503".
func (e *StatusError) Error() string { return "breaker: HTTP status " + strconv.Itoa(e.Code) }

// failingStatus reports whether a response says the dependency is in trouble: 5xx, 408 and 429.
// Other 4xx are the caller's fault: counting them would let any client open the breaker for
// everyone.
func failingStatus(code int) bool {
	return code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests
}

// Transport returns an http.RoundTripper that sends requests through base (http.DefaultTransport
// when nil) while the breaker allows them. Transport errors, 5xx, 408 and 429 count as failures,
// other responses as successes, and requests whose context ended are ignored. A 429 or 503 with
// a Retry-After opens the breaker for that long, bounded by the larger of OpenDuration and
// MaxOpenDuration. While the breaker is open, RoundTrip returns its *OpenError without sending.
func (b *Breaker) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{b: b, base: base}
}

type transport struct {
	b    *Breaker
	base http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return roundTrip(t.b, t.base, req)
}

func roundTrip(b *Breaker, base http.RoundTripper, req *http.Request) (*http.Response, error) {
	tok, err := b.Allow(req.Context())
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // RoundTrip must close the body, even on errors
		}
		return nil, err
	}
	done := false
	defer func() {
		if !done {
			tok.Done(errPanic)
		}
	}()
	resp, err := base.RoundTrip(req)
	done = true
	if err != nil {
		tok.Done(err)
		return nil, err
	}
	if !failingStatus(resp.StatusCode) {
		tok.Done(nil)
		return resp, nil
	}
	tok.Done(&StatusError{Code: resp.StatusCode})
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			b.openFor(req.Context(), tok.word, d)
		}
	}
	return resp, nil
}

// parseRetryAfter reads delta-seconds or an HTTP-date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0, false
		}
		return time.Duration(min(s, int64(365*24*3600))) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now), true
	}
	return 0, false
}

// openFor opens the breaker for d, bounded, unless it already moved on from generation w or is
// open for longer.
func (b *Breaker) openFor(ctx context.Context, w uint64, d time.Duration) {
	bound := max(b.cfg.OpenDuration, b.cfg.MaxOpenDuration)
	d = min(d, bound)
	b.mu.Lock()
	cur := b.word.Load()
	until := b.now() + int64(d)
	if stateOf(cur) == StateOpen && int64(cur&valueMask) >= until || cur != w && stateOf(cur) != StateOpen {
		b.mu.Unlock()
		return
	}
	b.openErr.Store(&OpenError{Name: b.cfg.Name, until: until, b: b})
	ok := b.word.CompareAndSwap(cur, pack(StateOpen, uint64(until)))
	b.mu.Unlock()
	if ok && b.link != nil && Mode(b.mode.Load()) == ModeAuto {
		b.link.holdFor(b, d) // the pause applies to every instance
	}
	if ok && stateOf(cur) != StateOpen {
		b.failures.Store(0)
		b.opens.Add(1)
		b.changed(ctx, stateOf(cur), StateOpen)
	}
}

// Middleware returns net/http middleware that sends requests to next while the breaker allows
// them, counting 5xx responses and panics as failures. While the breaker is open it answers 503
// with Retry-After (whole seconds, rounded up) and {"error":"Service temporarily unavailable."},
// in the style of the ratelimit package's 429s.
func (b *Breaker) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, err := b.Allow(r.Context())
		if err != nil {
			writeOpen(w, err)
			return
		}
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		done := false
		defer func() {
			if !done {
				tok.Done(errPanic)
			}
		}()
		next.ServeHTTP(sw, r)
		done = true
		if sw.code >= 500 {
			tok.Done(&StatusError{Code: sw.code})
		} else {
			tok.Done(nil)
		}
	})
}

func writeOpen(w http.ResponseWriter, err error) {
	wait := int64(1)
	if oe, ok := err.(*OpenError); ok {
		wait = int64((oe.RetryAfter() + time.Second - 1) / time.Second)
	}
	httpjson.Unavailable(w, wait)
}

// statusWriter records the status a handler writes.
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the underlying writer (Flush, deadlines, ...).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
