package balancer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outgrow/outgrow/internal/httpjson"
)

// ProxyConfig configures a [Proxy]. The zero value is ready to use.
type ProxyConfig struct {
	// Transport sends the requests to the backends. Default: a clone of
	// http.DefaultTransport that waits at most 60s for a response's headers (NGINX's
	// proxy_read_timeout), so that a backend that accepts connections but never answers
	// fails its requests (and, five in a row, is ejected) rather than holding them.
	Transport http.RoundTripper
	// MaxAttempts bounds the backends one request tries: the first, then different ones for
	// the retries. Default: 3.
	MaxAttempts int
	// DisableRetries sends each request to one backend only. Default: false.
	DisableRetries bool
	// RetryBudget caps the retries in flight of requests that may have reached a backend at
	// this share of the requests in flight (but always allows 3), so that a failing backend
	// cannot turn every request into several: a retry storm would take down the backends
	// left. Requests that reached no backend (the connection was refused) are retried outside
	// the budget: they add no load. Default: 0.2.
	RetryBudget float64
	// MaxReplayBody is the largest request body kept to be sent again on a retry, when the
	// request has no GetBody; a request with a larger body goes to one backend only. Default:
	// 64 KiB.
	MaxReplayBody int64
	// PreserveHost sends the client's Host header to the backends, rather than the backend's
	// host. Default: false.
	PreserveHost bool
	// FlushInterval is httputil.ReverseProxy's: how often to flush the response to the client
	// while copying it; -1 flushes after each write. Streamed responses (text/event-stream, or
	// no Content-Length) are flushed at once whatever it says. Default: 0.
	FlushInterval time.Duration
	// Rewrite, when set, adjusts each outbound request after the proxy set X-Forwarded-For,
	// -Host and -Proto (httputil.ProxyRequest.SetXForwarded); the backend's URL is set for each
	// attempt afterwards. Default: none.
	Rewrite func(*httputil.ProxyRequest)
	// Logger receives backend errors (one line per failed attempt, at Debug) and the proxy's
	// own failures. Default: the Balancer's logger.
	Logger *slog.Logger
	// Hooks observe the proxy. Default: none.
	Hooks ProxyHooks
}

// ProxyHooks are optional functions called by a [Proxy], with the request's context, so that
// a span or a request-scoped logger can be attached. They are called synchronously and must be
// quick and safe for concurrent use. The zero value calls nothing.
type ProxyHooks struct {
	// OnAttemptFailed follows each attempt that got no response from backend id; retried says
	// whether another backend is tried.
	OnAttemptFailed func(ctx context.Context, id string, err error, retried bool)
}

// Proxy is an http.Handler that sends each request to a backend picked by a [Balancer], on
// httputil.ReverseProxy (with Rewrite and SetXForwarded, never the deprecated Director).
//
// A backend's ID is its base URL ("http://10.0.0.5:8080", or "http://10.0.0.5:8080/api" to
// prefix paths). A request that reached no backend (the connection was refused or could not be
// made) is tried on a different backend, up to MaxAttempts; an idempotent request (GET, HEAD,
// OPTIONS, TRACE, PUT, DELETE, or any request with an Idempotency-Key header) is also tried
// again when the connection failed before a response came, within the RetryBudget. Nothing is retried once a response came, so nothing is retried after a byte went to
// the client; a POST without an Idempotency-Key whose body may have reached a backend is never
// sent again. Bodies are replayed from GetBody or from a copy of at most MaxReplayBody bytes;
// a request with a larger body goes to one backend only.
//
// The client's address reaches the backends in X-Forwarded-For, after the chain of the
// trusted proxies in front (Config.TrustedProxies; an untrusted client's chain, and its
// Forwarded header, are dropped), and IPHash hashes that client. Requests count as in flight
// (Stats) from the pick until their response body is closed, whatever the algorithm. A
// backend that accepts connections but never answers fails a request after the Transport's
// ResponseHeaderTimeout (60s by default): set a shorter one to fail over sooner.
//
// Each attempt's outcome feeds passive health (Config.Eject): connection errors, timeouts and
// 502-504 answers count against the backend; a client's cancellation and other statuses do
// not.
//
// Errors are JSON: 503 {"error":"Service temporarily unavailable."} when no backend may be
// picked, 502 {"error":"Bad gateway."} when no backend answered; the backends' errors are
// never shown to the client.
//
// The zero value is not usable; create a Proxy with [NewProxy]. It is safe for concurrent use.
type Proxy struct {
	b      *Balancer
	cfg    ProxyConfig
	rp     *httputil.ReverseProxy
	logger *slog.Logger
	owned  *http.Transport // the default Transport, closed by Close

	inflight, retrying                             atomic.Int64
	requests, retries, refused, badGateway, noneUp atomic.Uint64
}

// NewProxy returns a Proxy over b. Its error wraps ErrInvalidConfig and names the field at
// fault.
func NewProxy(b *Balancer, cfg ProxyConfig) (*Proxy, error) {
	switch {
	case b == nil:
		return nil, fmt.Errorf("%w: the Balancer is nil", ErrInvalidConfig)
	case cfg.MaxAttempts < 0:
		return nil, fmt.Errorf("%w: ProxyConfig.MaxAttempts %d is negative", ErrInvalidConfig, cfg.MaxAttempts)
	case cfg.RetryBudget < 0 || cfg.RetryBudget > 1:
		return nil, fmt.Errorf("%w: ProxyConfig.RetryBudget %v is not in [0, 1]", ErrInvalidConfig, cfg.RetryBudget)
	case cfg.MaxReplayBody < 0:
		return nil, fmt.Errorf("%w: ProxyConfig.MaxReplayBody %d is negative", ErrInvalidConfig, cfg.MaxReplayBody)
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 3
	}
	if cfg.DisableRetries {
		cfg.MaxAttempts = 1
	}
	if cfg.RetryBudget == 0 {
		cfg.RetryBudget = 0.2
	}
	if cfg.MaxReplayBody == 0 {
		cfg.MaxReplayBody = 64 << 10
	}
	var owned *http.Transport
	if cfg.Transport == nil {
		owned = http.DefaultTransport.(*http.Transport).Clone()
		owned.ResponseHeaderTimeout = 60 * time.Second
		cfg.Transport = owned
	}
	logger := cfg.Logger
	if logger == nil {
		logger = b.logger
	}
	p := &Proxy{b: b, cfg: cfg, logger: logger, owned: owned}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// A trusted proxy's chain goes on, with the peer appended; anyone else's is
			// dropped (ReverseProxy removed X-Forwarded-For; Forwarded it passes as is).
			hdr := b.ip.Header()
			if b.ip.TrustsPeer(pr.In) {
				if v := pr.In.Header[hdr]; len(v) > 0 && hdr == "X-Forwarded-For" {
					pr.Out.Header[hdr] = append([]string(nil), v...)
				}
			} else {
				pr.Out.Header.Del("Forwarded")
			}
			pr.SetXForwarded()
			if cfg.Rewrite != nil {
				cfg.Rewrite(pr)
			}
			p.first(pr)
		},
		Transport:     (*attempts)(p),
		FlushInterval: cfg.FlushInterval,
		ErrorHandler:  p.fail,
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	return p, nil
}

// exchange is one request's state across the proxy's steps, in its context.
type exchange struct {
	in      *http.Request // the inbound request: the client's address, its Host
	host    string        // the outbound Host that Rewrite set, if it changed it
	url     url.URL       // the outbound URL before routing, for the retries
	pick    Pick          // the first attempt's backend, picked in Rewrite
	pickErr error         // why no backend could be picked
	replay  *replay       // how to send the body again, when it can be
	body    *doneBody     // the response body of the attempt that answered
	bodyErr error         // reading the client's body failed: the client's fault
}

type exchangeKey struct{}

func exchangeOf(ctx context.Context) *exchange {
	x, _ := ctx.Value(exchangeKey{}).(*exchange)
	return x
}

// ServeHTTP sends r to a backend and copies its response to w.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	p.inflight.Add(1)
	defer p.inflight.Add(-1)
	x := &exchange{in: r}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), exchangeKey{}, x)))
	if x.body != nil {
		// httputil.ReverseProxy leaves some upgrade failures' bodies open: end the pick.
		_ = x.body.Close()
	}
}

// Close closes the idle connections of the Proxy's own Transport (none when ProxyConfig set
// one). It does not stop requests in progress.
func (p *Proxy) Close() error {
	if p.owned != nil {
		p.owned.CloseIdleConnections()
	}
	return nil
}

// errNoneUp marks the failure of a request for which no backend could be picked.
var errNoneUp = errors.New("balancer: no backend to send the request to")

// fail answers a request that got no response: 503 when no backend could be picked, 502
// otherwise. A client that went away gets nothing.
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, err error) {
	x := exchangeOf(r.Context())
	switch {
	case r.Context().Err() != nil:
		w.WriteHeader(499) // nginx's "client closed request": nobody reads it
	case x != nil && x.bodyErr != nil:
		httpjson.WriteBytes(w, http.StatusBadRequest, badBody)
	case errors.Is(err, errNoneUp):
		p.noneUp.Add(1)
		httpjson.Unavailable(w, 1)
	default:
		p.badGateway.Add(1)
		// Debug: one line per failed request would flood the log in an outage (Stats and
		// the backends' state changes tell it).
		p.logger.Debug("balancer: no backend answered", "method", r.Method, "path", r.URL.Path, "err", err)
		httpjson.WriteBytes(w, http.StatusBadGateway, badGateway)
	}
}

var (
	badGateway = []byte(`{"error":"Bad gateway."}`)
	badBody    = []byte(`{"error":"The request body could not be read."}`)
)

// ProxyStats counts what a Proxy did: a snapshot, a plain value.
type ProxyStats struct {
	Requests       uint64 // requests served
	Retries        uint64 // attempts on another backend after a failed one
	RetriesRefused uint64 // retries the RetryBudget (or a body too large to replay) refused
	BadGateway     uint64 // requests answered 502: no backend answered
	NoBackend      uint64 // requests answered 503: no backend could be picked
}

// Stats returns the Proxy's counters.
func (p *Proxy) Stats() ProxyStats {
	return ProxyStats{Requests: p.requests.Load(), Retries: p.retries.Load(), RetriesRefused: p.refused.Load(),
		BadGateway: p.badGateway.Load(), NoBackend: p.noneUp.Load()}
}

// first picks the backend of the first attempt and routes the outbound request to it, in
// Rewrite: on the common path, where it answers, the request is not copied again.
func (p *Proxy) first(pr *httputil.ProxyRequest) {
	x := exchangeOf(pr.In.Context())
	if x == nil {
		return
	}
	if pr.Out.Host != pr.In.Host {
		x.host = pr.Out.Host // Rewrite set it
	}
	replay, err := p.replayable(pr.Out)
	if err != nil {
		x.bodyErr = err
		return
	}
	x.replay = replay
	x.url = *pr.Out.URL
	pick, err := p.b.pick(pr.In, true)
	if err != nil {
		x.pickErr = err
		return
	}
	x.pick = pick
	if err := p.route(pr.Out, x, pick, replay, 0); err != nil {
		x.pickErr = err
	}
}

// attempts is the Proxy's RoundTripper: it picks a backend per attempt.
type attempts Proxy

func (t *attempts) RoundTrip(req *http.Request) (*http.Response, error) {
	p := (*Proxy)(t)
	x := exchangeOf(req.Context()) // set by ServeHTTP, the only caller
	switch {
	case x.bodyErr != nil:
		return nil, x.bodyErr
	case x.pick.n == nil && x.pickErr != nil:
		return nil, fmt.Errorf("%w: %w", errNoneUp, x.pickErr)
	case x.pickErr != nil: // picked, but not routable (its ID is not a URL)
		x.pick.Done()
		return nil, x.pickErr
	}
	replay := x.replay
	tried := make([]string, 0, 4) // the backends tried, to skip on a retry
	var lastErr error
	for attempt := 0; attempt < p.cfg.MaxAttempts; attempt++ {
		pick, out := x.pick, req // the first attempt's, routed in Rewrite
		if attempt > 0 {
			var err error
			if pick, err = p.b.pickOther(x.in, tried, true); err != nil {
				return nil, lastErr // every backend left was tried
			}
			out = req.Clone(req.Context())
			u := x.url
			out.URL = &u // the path before the first backend's base path joined it
			if err := p.route(out, x, pick, replay, attempt); err != nil {
				pick.Done()
				return nil, err
			}
		}
		tried = append(tried, pick.ID())
		resp, err := p.cfg.Transport.RoundTrip(out)
		if err == nil {
			// 502-504 from a backend is its failure (or its own upstream's); other statuses
			// are the application's answer, which a client can provoke at will.
			pick.Observe(resp.StatusCode < 502 || resp.StatusCode > 504)
			x.body = &doneBody{ReadCloser: resp.Body, pick: pick}
			resp.Body = x.body
			return resp, nil
		}
		pick.Done()
		if req.Context().Err() != nil || x.bodyErr != nil {
			return nil, err // the client went away, or sent a broken body: not the backend's fault
		}
		pick.Observe(false)
		lastErr = err
		unsent := neverSent(err)
		retry := attempt+1 < p.cfg.MaxAttempts && (unsent || retryable(req, err))
		if retry && replay == nil && req.Body != nil && req.Body != http.NoBody {
			retry = false // the body cannot be sent again
			p.refused.Add(1)
		}
		// A request that reached no backend adds no load by going to another: only the
		// others spend the budget.
		budgeted := retry && !unsent
		retry = retry && (unsent || p.budget())
		if h := p.cfg.Hooks.OnAttemptFailed; h != nil {
			h(req.Context(), pick.ID(), err, retry)
		}
		p.logger.Debug("balancer: attempt failed", "backend", pick.ID(), "err", err, "retried", retry)
		if !retry {
			return nil, err
		}
		p.retries.Add(1)
		if budgeted {
			p.retrying.Add(1)
			defer p.retrying.Add(-1)
		}
	}
	return nil, lastErr
}

// budget reports whether one more retry fits in the RetryBudget.
func (p *Proxy) budget() bool {
	allowed := max(3, int64(p.cfg.RetryBudget*float64(p.inflight.Load())))
	if p.retrying.Load() >= allowed {
		p.refused.Add(1)
		return false
	}
	return true
}

// replay keeps a request's body to send it again: GetBody, or a copy of the body.
type replay struct {
	getBody func() (io.ReadCloser, error)
	copy    []byte
}

func (r *replay) body() (io.ReadCloser, error) {
	if r.getBody != nil {
		return r.getBody()
	}
	return io.NopCloser(bytes.NewReader(r.copy)), nil
}

// replayable returns how to send req's body again on a retry; nil when there is no body, when
// retries are off, or when the body is larger than MaxReplayBody (then req.Body is left
// whole: read its first part, it is put back in front of the rest).
func (p *Proxy) replayable(req *http.Request) (*replay, error) {
	if req.Body == nil || req.Body == http.NoBody || p.cfg.MaxAttempts == 1 {
		return nil, nil
	}
	if req.GetBody != nil {
		return &replay{getBody: req.GetBody}, nil
	}
	if req.ContentLength > p.cfg.MaxReplayBody {
		return nil, nil
	}
	buf, err := io.ReadAll(io.LimitReader(req.Body, p.cfg.MaxReplayBody+1))
	if err != nil {
		return nil, err
	}
	if int64(len(buf)) > p.cfg.MaxReplayBody {
		req.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), req.Body), req.Body}
		return nil, nil
	}
	_ = req.Body.Close()
	req.Body = http.NoBody // every attempt gets its own copy
	return &replay{copy: buf}, nil
}

// route sends out, an attempt's request (a copy of the outbound request, or the outbound
// request itself for the first), to the picked backend, with its body.
func (p *Proxy) route(out *http.Request, x *exchange, pick Pick, replay *replay, attempt int) error {
	target, err := pick.n.baseURL()
	if err != nil {
		return err
	}
	switch {
	case replay != nil:
		if out.Body, err = replay.body(); err != nil {
			return err
		}
		out.GetBody = replay.body
	case attempt > 0:
		out.Body = http.NoBody // never reached: retries need a replayable body or none
	case out.Body != nil && out.Body != http.NoBody:
		out.Body = &clientBody{ReadCloser: out.Body, x: x} // streamed: tell its errors apart
	}
	pr := httputil.ProxyRequest{In: x.in, Out: out}
	pr.SetURL(target)
	switch {
	case p.cfg.PreserveHost:
		out.Host = x.in.Host
	case x.host != "":
		out.Host = x.host // Rewrite set it
	}
	return nil
}

// clientBody is the client's request body streamed to a backend: a read error is the
// client's (a broken chunked encoding, a connection cut), not the backend's.
type clientBody struct {
	io.ReadCloser
	x *exchange
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.x.bodyErr == nil {
		b.x.bodyErr = err
	}
	return n, err
}

// neverSent reports whether err means that the connection was never made: nothing reached
// the backend.
func neverSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// retryable reports whether req may be sent again after err although it may have reached the
// backend: an idempotent request that failed before a response came.
func retryable(req *http.Request, err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false // the client's context: it does not want an answer any more
	}
	return idempotent(req)
}

func idempotent(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return req.Header.Get("Idempotency-Key") != ""
}

// doneBody ends its pick when the response body is closed (httputil.ReverseProxy closes it once
// copied, an upgraded connection once it ends), once.
type doneBody struct {
	io.ReadCloser
	pick Pick
	once sync.Once
}

func (b *doneBody) Close() error {
	var err error
	b.once.Do(func() {
		err = b.ReadCloser.Close()
		b.pick.Done()
	})
	return err
}

// Write lets an upgraded connection (101 Switching Protocols, whose body is an
// io.ReadWriteCloser) be written through.
func (b *doneBody) Write(p []byte) (int, error) {
	if w, ok := b.ReadCloser.(io.Writer); ok {
		return w.Write(p)
	}
	return 0, errors.New("balancer: response body is not writable")
}
