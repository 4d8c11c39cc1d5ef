package ratelimit

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/outgrow/outgrow/internal/clientip"
	"github.com/outgrow/outgrow/internal/httpjson"
)

// KeyFunc returns the key a Rule limits a request by. Returning ErrNoKey means the rule does not
// apply to the request (for example no API key header); any other error refuses the request
// (see MiddlewareConfig.OnError), so that a request can never slip past a limit because its key
// could not be found.
type KeyFunc func(r *http.Request) (string, error)

var (
	// ErrNoKey, returned by a KeyFunc, means its Rule does not apply to the request.
	ErrNoKey = errors.New("ratelimit: rule does not apply to the request")
	// ErrNoClientIP is returned by the KeyFunc of KeyByIP when the request has no usable client
	// address (an empty or unparsable RemoteAddr, such as on a Unix socket).
	ErrNoClientIP = clientip.ErrNoClientIP
)

// IPConfig says how [KeyByIP] finds the client's address. The zero value trusts no proxy: the
// key is the TCP peer's address, and forwarding headers are ignored, so a client cannot choose
// its own key.
type IPConfig struct {
	// TrustedProxies are the networks of the proxies in front of the service (load balancers,
	// CDNs). Only when the TCP peer is one of them is the forwarding header read, from the right:
	// the client is the rightmost address that is not a trusted proxy.
	TrustedProxies []netip.Prefix
	// Header is the forwarding header set by those proxies: "X-Forwarded-For" when empty, or
	// "Forwarded" (RFC 7239). Only one is read: a proxy that sets one passes the other through
	// from the client untouched.
	Header string
	// IPv6Prefix is how many leading bits of an IPv6 address make the key; 56 when zero. One
	// subscriber usually holds a whole /56 or /64 and can rotate addresses inside it at will.
	IPv6Prefix int
	// IPv4Prefix is how many leading bits of an IPv4 address make the key; 32 when zero.
	IPv4Prefix int
}

// KeyByIP returns a KeyFunc keying requests by client address, as cfg says. IPv4-mapped IPv6
// addresses count as IPv4. A request without a usable address gets ErrNoClientIP, which the
// middleware answers with 400 by default.
func KeyByIP(cfg IPConfig) (KeyFunc, error) {
	res, err := clientip.New(clientip.Config{
		TrustedProxies: cfg.TrustedProxies, Header: cfg.Header,
		IPv4Prefix: cfg.IPv4Prefix, IPv6Prefix: cfg.IPv6Prefix,
	})
	if err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	return func(r *http.Request) (string, error) {
		var buf [64]byte
		b, err := res.AppendKey(buf[:0], r)
		if err != nil {
			return "", err
		}
		return string(b), nil
	}, nil
}

// KeyByHeader returns a KeyFunc keying requests by the value of header, such as an API key. A
// request without the header is not limited by the rule (ErrNoKey). A client chooses its own
// header values, so key abuse-sensitive limits (login) by IP, not by header, and check API keys
// before or right after limiting by them.
func KeyByHeader(header string) KeyFunc {
	return func(r *http.Request) (string, error) {
		if v := r.Header.Get(header); v != "" {
			return v, nil
		}
		return "", ErrNoKey
	}
}

// KeyJoin returns a KeyFunc whose key joins the keys of fns with "|", for limits such as
// "per endpoint and IP". '|' and '\' inside a key are escaped with '\', so different key
// tuples never join to the same key. If one of fns fails, so does the joined one.
func KeyJoin(fns ...KeyFunc) KeyFunc {
	return func(r *http.Request) (string, error) {
		var sb strings.Builder
		for i, fn := range fns {
			k, err := fn(r)
			if err != nil {
				return "", err
			}
			if i > 0 {
				sb.WriteByte('|')
			}
			for j := 0; j < len(k); j++ {
				if k[j] == '|' || k[j] == '\\' {
					sb.WriteByte('\\')
				}
				sb.WriteByte(k[j])
			}
		}
		return sb.String(), nil
	}
}

// KeyByEndpoint keys requests by method and path ("POST /login"). Paths are chosen by clients:
// use it joined with a client key and on rules whose Match bounds the paths.
func KeyByEndpoint(r *http.Request) (string, error) {
	return r.Method + " " + r.URL.Path, nil
}

// Routes returns a Match function for requests matching any of the [http.ServeMux] patterns,
// such as "POST /login" or "/api/". It uses ServeMux's own matching, so it agrees with a
// ServeMux routing the same requests.
func Routes(patterns ...string) (func(*http.Request) bool, error) {
	mux := http.NewServeMux()
	for _, p := range patterns {
		if err := register(mux, p); err != nil {
			return nil, err
		}
	}
	return func(r *http.Request) bool {
		_, pattern := mux.Handler(r)
		return pattern != ""
	}, nil
}

func register(mux *http.ServeMux, pattern string) (err error) {
	defer func() {
		if p := recover(); p != nil { // ServeMux panics on bad patterns
			err = fmt.Errorf("ratelimit: pattern %q: %v", pattern, p)
		}
	}()
	mux.Handle(pattern, http.NotFoundHandler())
	return nil
}

// Rule applies one Limiter to the requests it matches.
type Rule struct {
	// Limiter decides; its name is the policy name in headers and bodies. Required.
	Limiter *Limiter
	// Key gives the key of a request. Required.
	Key KeyFunc
	// Match selects the requests the rule applies to; nil means all. See [Routes].
	Match func(*http.Request) bool
	// Cost is the units a request takes; nil means 1, and values below 1 count as 1. A cost
	// above the Limiter's burst can never be granted: the request gets 429 with no Retry-After.
	Cost func(*http.Request) int
	// Message is the "error" text of the 429 body when this rule denies. "{retry}" in it is
	// replaced by the wait in words ("12 seconds", "1 minute"), so "Too many login attempts.
	// Try again in {retry}." stays true whatever the limit. Empty means "Too many requests.
	// Try again in {retry}."
	Message string
	// DryRun evaluates the rule (hooks, stats) without ever refusing a request because of it,
	// to try a limit out in production. Dry-run rules are charged on their own, apart from the
	// enforced rules, stay out of the response headers, and are skipped when their key cannot
	// be found.
	DryRun bool
}

// MiddlewareConfig configures [Middleware]. The zero value is ready to use.
type MiddlewareConfig struct {
	// Skip exempts requests from every rule (health checks, allow-listed clients); nil skips none.
	Skip func(*http.Request) bool
	// OnDenied writes the response to a denied request; nil means [WriteDenied]: 429, a JSON body
	// and Retry-After. The RateLimit headers are already set.
	OnDenied func(w http.ResponseWriter, r *http.Request, d Decision)
	// OnError writes the response when a key cannot be found or a FailClosed limiter's store is
	// unavailable; nil means [WriteError]: 400 for a missing client address, 503 for an
	// unavailable store, 500 otherwise, with a JSON body that never shows the error.
	OnError func(w http.ResponseWriter, r *http.Request, err error)
	// LegacyHeaders adds X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset for the
	// enforced rule with the fewest units left, for clients that predate the RateLimit fields.
	LegacyHeaders bool
}

// Middleware returns net/http middleware applying rules to every request, all or nothing: when
// one rule denies, the request is refused and no rule is charged. Each response carries the
// IETF RateLimit-Policy and RateLimit fields (draft-ietf-httpapi-ratelimit-headers) listing
// every rule that applied.
func Middleware(cfg MiddlewareConfig, rules ...Rule) (func(http.Handler) http.Handler, error) {
	if len(rules) == 0 {
		return nil, errors.New("ratelimit: Middleware needs at least one rule")
	}
	for i, rule := range rules {
		if rule.Limiter == nil || rule.Key == nil {
			return nil, fmt.Errorf("ratelimit: rule %d needs a Limiter and a Key", i)
		}
	}
	if cfg.OnDenied == nil {
		cfg.OnDenied = WriteDenied
	}
	if cfg.OnError == nil {
		cfg.OnError = WriteError
	}
	mw := &middleware{cfg: cfg, rules: rules}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mw.serve(w, r, next)
		})
	}, nil
}

type middleware struct {
	cfg   MiddlewareConfig
	rules []Rule
}

func (m *middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	if m.cfg.Skip != nil && m.cfg.Skip(r) {
		next.ServeHTTP(w, r)
		return
	}
	var enforced, dry []Layer
	var rules []*Rule
	for i := range m.rules {
		rule := &m.rules[i]
		if rule.Match != nil && !rule.Match(r) {
			continue
		}
		key, err := rule.Key(r)
		if errors.Is(err, ErrNoKey) || (err != nil && rule.DryRun) {
			continue // a dry-run rule never refuses a request, even when it has no key
		}
		if err != nil {
			m.cfg.OnError(w, r, err)
			return
		}
		n := 1
		if rule.Cost != nil {
			n = max(1, rule.Cost(r))
		}
		ly := Layer{Limiter: rule.Limiter, Key: key, N: n}
		if rule.DryRun {
			dry = append(dry, ly)
		} else {
			enforced = append(enforced, ly)
			rules = append(rules, rule)
		}
	}
	if len(dry) > 0 {
		_, _ = AllowAll(r.Context(), dry...) // counted and hooked, never enforced
	}
	var d Decision
	var err error
	if len(enforced) > 0 {
		d, err = AllowAll(r.Context(), enforced...)
	}
	h := w.Header()
	setHeaders(h, d.Results)
	if m.cfg.LegacyHeaders {
		setLegacyHeaders(h, d.Results)
	}
	if err != nil {
		m.cfg.OnError(w, r, err)
		return
	}
	if len(enforced) > 0 && !d.Allowed {
		d.Message = denyMessage(rules, d)
		m.cfg.OnDenied(w, r, d)
		return
	}
	next.ServeHTTP(w, r)
}

// setHeaders writes RateLimit-Policy and RateLimit, one list member per policy.
func setHeaders(h http.Header, results []Result) {
	var pbuf, sbuf [256]byte
	policy, state := pbuf[:0], sbuf[:0]
	for _, res := range results {
		if len(policy) > 0 {
			policy = append(policy, ", "...)
		}
		policy = strconv.AppendQuote(policy, res.Policy)
		policy = append(policy, ";q="...)
		policy = strconv.AppendInt(policy, int64(res.Limit.Rate), 10)
		policy = append(policy, ";w="...)
		policy = strconv.AppendInt(policy, seconds(res.Limit.Period), 10)
		if res.Remaining < 0 {
			continue // not evaluated
		}
		if len(state) > 0 {
			state = append(state, ", "...)
		}
		state = strconv.AppendQuote(state, res.Policy)
		state = append(state, ";r="...)
		state = strconv.AppendInt(state, int64(res.Remaining), 10)
		state = append(state, ";t="...)
		state = strconv.AppendInt(state, seconds(res.ResetAfter), 10)
	}
	// Canonical keys assigned directly: http.Header.Set would canonicalise them per request.
	if len(policy) > 0 {
		h["Ratelimit-Policy"] = []string{string(policy)}
	}
	if len(state) > 0 {
		h["Ratelimit"] = []string{string(state)}
	}
}

func setLegacyHeaders(h http.Header, results []Result) {
	best := -1
	for i, res := range results {
		if res.Remaining >= 0 && (best < 0 || res.Remaining < results[best].Remaining) {
			best = i
		}
	}
	if best < 0 {
		return
	}
	res := results[best]
	h.Set("X-RateLimit-Limit", strconv.Itoa(res.Limit.Rate))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(res.Remaining))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(seconds(res.ResetAfter), 10))
}

// seconds rounds d up to whole seconds: a client that waits that long is never early.
func seconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// RetryAfter returns how long a denied request must wait: the longest RetryAfter of the
// policies that denied.
func (d Decision) RetryAfter() time.Duration {
	var wait time.Duration
	for _, r := range d.Results {
		if !r.Allowed {
			wait = max(wait, r.RetryAfter)
		}
	}
	return wait
}

// deniedBody is the JSON of a 429.
type deniedBody struct {
	Error      string `json:"error"`
	Policy     string `json:"policy,omitempty"`
	RetryAfter int64  `json:"retry_after,omitempty"`
}

// WriteDenied is the default response to a denied request: status 429, Retry-After in whole
// seconds rounded up, and a JSON body such as
//
//	{"error":"Too many login attempts. Try again in 12 seconds.","policy":"login","retry_after":12}
//
// The message is the denying Rule's Message, or a generic one naming the wait.
func WriteDenied(w http.ResponseWriter, r *http.Request, d Decision) {
	wait := seconds(d.RetryAfter())
	body := deniedBody{Error: d.Message, RetryAfter: wait}
	if len(d.Denied) > 0 {
		body.Policy = d.Denied[0]
	}
	if body.Error == "" {
		body.Error = "Too many requests. Try again in {retry}."
	}
	body.Error = strings.ReplaceAll(body.Error, "{retry}", humanSeconds(wait))
	if wait > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(wait, 10))
	}
	writeJSON(w, http.StatusTooManyRequests, body)
}

// WriteError is the default response when the middleware cannot decide: 400 "Could not
// identify the client" when the client address is missing, 429 without Retry-After when a
// request costs more than a burst, 503 "Service temporarily
// unavailable" (with Retry-After: 1) when a FailClosed limiter's store is down, and 500
// otherwise. The error itself is never written: it may name keys or servers.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrExceedsBurst):
		writeJSON(w, http.StatusTooManyRequests, deniedBody{Error: "Request exceeds the rate limit."})
	case errors.Is(err, ErrNoClientIP):
		writeJSON(w, http.StatusBadRequest, deniedBody{Error: "Could not identify the client."})
	case errors.Is(err, ErrUnavailable):
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, deniedBody{Error: "Service temporarily unavailable. Try again in 1 second."})
	default:
		writeJSON(w, http.StatusInternalServerError, deniedBody{Error: "Internal server error."})
	}
}

func writeJSON(w http.ResponseWriter, status int, body deniedBody) {
	httpjson.Write(w, status, body)
}

// humanSeconds words a wait: "1 second", "12 seconds", "1 minute", "2 minutes", "90 seconds".
func humanSeconds(s int64) string {
	switch {
	case s <= 1:
		return "1 second"
	case s == 60:
		return "1 minute"
	case s%60 == 0 && s < 3600:
		return strconv.FormatInt(s/60, 10) + " minutes"
	case s == 3600:
		return "1 hour"
	case s%3600 == 0:
		return strconv.FormatInt(s/3600, 10) + " hours"
	}
	return strconv.FormatInt(s, 10) + " seconds"
}

// denyMessage returns the Message of the first denying rule that has one.
func denyMessage(rules []*Rule, d Decision) string {
	for i, res := range d.Results {
		if !res.Allowed && rules[i].Message != "" {
			return rules[i].Message
		}
	}
	return ""
}
