package ratelimit

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/outgrow/outgrow/internal/httpjson"
)

// Routes returns a Match function for requests matching any of the [http.ServeMux] patterns,
// such as "POST /login" or "/api/", safe for concurrent use. It uses ServeMux's own matching,
// so it agrees with a ServeMux routing the same requests. Its errors wrap ErrInvalidConfig.
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
			err = fmt.Errorf("%w: Routes pattern %q: %v", ErrInvalidConfig, pattern, p)
		}
	}()
	mux.Handle(pattern, http.NotFoundHandler())
	return nil
}

// Rule applies one Limiter to the requests it matches. Limiter and Key are required.
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
	// OnDenied writes the response to a denied request, whose RateLimit headers are already
	// set. Default: status 429, Retry-After in whole seconds rounded up, and a JSON body such as
	// {"error":"Too many login attempts. Try again in 12 seconds.","policy":"login",
	// "retry_after":12}, whose message is the denying Rule's Message.
	OnDenied func(w http.ResponseWriter, r *http.Request, d Decision)
	// OnError writes the response when the middleware cannot decide: a key cannot be found, or a
	// FailClosed limiter's store is unavailable. Default: a JSON error, 400 when the client
	// address is missing, 429 without Retry-After when a request costs more than a limit ever
	// grants, 503 with Retry-After: 1 when the store is unavailable, 500 otherwise. The error
	// itself is never written: it may name keys or servers.
	OnError func(w http.ResponseWriter, r *http.Request, err error)
	// LegacyHeaders adds X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset for the
	// enforced rule with the fewest units left, for clients that predate the RateLimit fields.
	LegacyHeaders bool
}

// Middleware returns net/http middleware applying rules to every request, all or nothing (see
// [AllowAll]): when one rule denies, the request is refused and no rule is charged. Each
// response carries the IETF RateLimit-Policy field (draft-ietf-httpapi-ratelimit-headers)
// listing the enforced rules that applied, and the RateLimit field with their state: every one
// of them when the request is granted, the ones that refused it when it is denied. The same
// requests get the same fields and bodies on every store. Its errors wrap ErrInvalidConfig.
func Middleware(cfg MiddlewareConfig, rules ...Rule) (func(http.Handler) http.Handler, error) {
	if len(rules) == 0 {
		return nil, fmt.Errorf("%w: Middleware needs at least one Rule", ErrInvalidConfig)
	}
	for i, rule := range rules {
		if rule.Limiter == nil || rule.Key == nil {
			return nil, fmt.Errorf("%w: Rule %d needs a Limiter and a Key", ErrInvalidConfig, i)
		}
	}
	if cfg.OnDenied == nil {
		cfg.OnDenied = writeDenied
	}
	if cfg.OnError == nil {
		cfg.OnError = writeError
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
	setHeaders(h, d)
	if m.cfg.LegacyHeaders {
		setLegacyHeaders(h, d)
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

// reported reports whether the RateLimit field lists r, a Result of d: the state of every
// evaluated policy of a granted request, and of the policies that denied a denied one. The
// others' state is not needed to retry, and a denial by the deny cache does not know it.
func reported(d *Decision, r *Result) bool {
	return r.Remaining >= 0 && (d.Allowed || !r.Allowed)
}

// setHeaders writes RateLimit-Policy and RateLimit, one list member per policy.
func setHeaders(h http.Header, d Decision) {
	var pbuf, sbuf [256]byte
	policy, state := pbuf[:0], sbuf[:0]
	for i := range d.Results {
		res := &d.Results[i]
		if len(policy) > 0 {
			policy = append(policy, ", "...)
		}
		policy = strconv.AppendQuote(policy, res.Policy)
		policy = append(policy, ";q="...)
		policy = strconv.AppendInt(policy, int64(res.Limit.Rate), 10)
		policy = append(policy, ";w="...)
		policy = strconv.AppendInt(policy, seconds(res.Limit.Period), 10)
		if !reported(&d, res) {
			continue
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

// setLegacyHeaders writes X-RateLimit-* for the reported policy with the fewest units left.
func setLegacyHeaders(h http.Header, d Decision) {
	best := -1
	for i := range d.Results {
		if reported(&d, &d.Results[i]) && (best < 0 || d.Results[i].Remaining < d.Results[best].Remaining) {
			best = i
		}
	}
	if best < 0 {
		return
	}
	res := d.Results[best]
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

// deniedBody is the JSON of a 429.
type deniedBody struct {
	Error      string `json:"error"`
	Policy     string `json:"policy,omitempty"`
	RetryAfter int64  `json:"retry_after,omitempty"`
}

// writeDenied is the default OnDenied (see MiddlewareConfig).
func writeDenied(w http.ResponseWriter, r *http.Request, d Decision) {
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

// writeError is the default OnError (see MiddlewareConfig).
func writeError(w http.ResponseWriter, r *http.Request, err error) {
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
