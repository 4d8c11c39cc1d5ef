package health

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Media types the handlers answer with. The IETF format is chosen through Accept; see
// [Checker.ReadinessHandler].
const (
	contentTypeJSON       = "application/json"
	contentTypeHealthJSON = "application/health+json"
)

// Header values shared by every response; each slice has len == cap, so a later Add copies it.
var (
	hdrJSON       = []string{contentTypeJSON}
	hdrHealthJSON = []string{contentTypeHealthJSON}
	hdrNoStore    = []string{"no-store"}
	hdrVary       = []string{"Accept"}
	hdrAllow      = []string{"GET, HEAD"}
	hdrClose      = []string{"close"}
)

// snapshot is the cached verdict that readiness probes read: rendered when a pass completes, a
// flag is set or a Local check changes state, so a probe only picks a body and writes it.
type snapshot struct {
	status   Status
	reason   string
	draining bool
	closed   bool
	passes   uint64
	lastPass time.Time
	checks   []CheckStats
	code     int
	plain    body
	ietf     body
}

type body struct {
	b      []byte
	length []string // Content-Length header value
}

func newBody(v any) body {
	b, _ := json.Marshal(v) // the rendered types hold only strings, numbers and maps of them
	b = append(b, '\n')
	return body{b: b, length: []string{strconv.Itoa(len(b))}}
}

// publish renders and stores the snapshot of the current state; c.mu must be held.
func (c *Checker) publish() *snapshot {
	st, reason := c.status()
	s := &snapshot{
		status:   st,
		reason:   reason,
		draining: c.draining,
		closed:   c.closed,
		passes:   c.passes,
		lastPass: c.lastPass,
		checks:   make([]CheckStats, len(c.checks)),
		code:     http.StatusOK,
	}
	if st == StatusFail {
		s.code = http.StatusServiceUnavailable
	}
	for i, cs := range c.checks {
		s.checks[i] = CheckStats{
			Name:                 cs.Name,
			NonCritical:          cs.NonCritical,
			Local:                cs.Local,
			State:                cs.state,
			LastError:            cs.lastErr,
			LastDuration:         cs.lastDuration,
			LastRun:              cs.lastRun,
			ConsecutiveSuccesses: cs.rf.Successes(),
			ConsecutiveFailures:  cs.rf.Failures(),
			Runs:                 cs.runs,
			Failures:             cs.fails,
		}
	}
	s.plain = newBody(s.plainDoc(s.checks, false))
	s.ietf = newBody(s.ietfDoc(s.checks, false))
	c.snap.Store(s)
	return s
}

// plainWord is the status in the plain format: "ok" as in the liveness body,
// "degraded" for warn, and the reason for fail.
func (s *snapshot) plainWord() string {
	switch s.status {
	case StatusPass:
		return "ok"
	case StatusWarn:
		return "degraded"
	default:
		return s.reason
	}
}

func stateWord(st State) string {
	switch st {
	case StateHealthy:
		return "ok"
	case StateUnhealthy:
		return "fail"
	default:
		return "unknown"
	}
}

type plainDoc struct {
	Status   string                `json:"status"`
	Passes   *uint64               `json:"passes,omitempty"`
	LastPass string                `json:"last_pass,omitempty"`
	Checks   map[string]plainCheck `json:"checks,omitempty"`
}

type plainCheck struct {
	Status               string   `json:"status"`
	Critical             *bool    `json:"critical,omitempty"`
	State                string   `json:"state,omitempty"`
	Error                string   `json:"error,omitempty"`
	DurationMS           *float64 `json:"duration_ms,omitempty"`
	LastRun              string   `json:"last_run,omitempty"`
	ConsecutiveSuccesses *int     `json:"consecutive_successes,omitempty"`
	ConsecutiveFailures  *int     `json:"consecutive_failures,omitempty"`
	Runs                 *uint64  `json:"runs,omitempty"`
	Failures             *uint64  `json:"failures,omitempty"`
}

func (s *snapshot) plainDoc(checks []CheckStats, verbose bool) plainDoc {
	d := plainDoc{Status: s.plainWord()}
	if len(checks) > 0 {
		d.Checks = make(map[string]plainCheck, len(checks))
	}
	if verbose {
		d.Passes = &s.passes
		d.LastPass = timeString(s.lastPass)
	}
	for _, cs := range checks {
		pc := plainCheck{Status: stateWord(cs.State)}
		if verbose {
			critical := !cs.NonCritical
			pc.Critical = &critical
			pc.State = cs.State.String()
			pc.Error = errString(cs.LastError)
			pc.DurationMS = ms(cs.LastDuration)
			pc.LastRun = timeString(cs.LastRun)
			pc.ConsecutiveSuccesses = &cs.ConsecutiveSuccesses
			pc.ConsecutiveFailures = &cs.ConsecutiveFailures
			pc.Runs = &cs.Runs
			pc.Failures = &cs.Failures
		}
		d.Checks[cs.Name] = pc
	}
	return d
}

// ietfDoc follows draft-inadarei-api-health-check: checks are keyed "component:measurement".
type ietfDoc struct {
	Status Status                 `json:"status"`
	Output string                 `json:"output,omitempty"`
	Checks map[string][]ietfCheck `json:"checks,omitempty"`
}

type ietfCheck struct {
	ComponentType string   `json:"componentType,omitempty"`
	ObservedValue *float64 `json:"observedValue,omitempty"`
	ObservedUnit  string   `json:"observedUnit,omitempty"`
	Status        Status   `json:"status"`
	Time          string   `json:"time,omitempty"`
	Output        string   `json:"output,omitempty"`
}

func (s *snapshot) ietfDoc(checks []CheckStats, verbose bool) ietfDoc {
	d := ietfDoc{Status: s.status}
	if s.status == StatusFail && s.reason != "unavailable" {
		d.Output = s.reason // starting, draining or closed: not a dependency's error
	}
	if len(checks) > 0 {
		d.Checks = make(map[string][]ietfCheck, len(checks))
	}
	for _, cs := range checks {
		ic := ietfCheck{Status: StatusFail}
		if cs.State == StateHealthy {
			ic.Status = StatusPass
		}
		// A Local check is read for each response, so the cached body, shared by the responses
		// until its state changes, has no time for it.
		if verbose || !cs.Local {
			ic.Time = timeString(cs.LastRun)
		}
		if verbose {
			ic.ObservedValue, ic.ObservedUnit = ms(cs.LastDuration), "ms"
			ic.Output = errString(cs.LastError)
		}
		d.Checks[cs.Name+":responseTime"] = []ietfCheck{ic}
	}
	return d
}

func ms(d time.Duration) *float64 {
	v := float64(d.Microseconds()) / 1000
	return &v
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

const timeLayout = "2006-01-02T15:04:05.000Z07:00"

func timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeLayout)
}

// LivenessHandler returns the liveness handler: GET or HEAD answers 200 with
// {"status":"ok","uptime":<seconds since New>}, whatever the checks and even while draining, so
// that a dependency outage never makes an orchestrator restart the process. Other methods get 405.
//
// A request whose Accept header prefers application/health+json gets that format instead, with
// the uptime as an IETF "uptime" check.
func (c *Checker) LivenessHandler() http.Handler { return http.HandlerFunc(c.serveLive) }

// ReadinessHandler returns the readiness handler. GET or HEAD answers the cached verdict of the
// last pass, with the Local checks called for the request: 200 while the status is pass or warn,
// 503 while it is fail (starting, draining, closed, or a critical check unhealthy). It never runs
// a background check. Other methods get 405.
//
// The body is plain JSON by default, {"status":"ok","checks":{"redis":{"status":"ok"}}}, with
// status "ok", "degraded", "starting", "unavailable", "draining" or "closed". A request whose
// Accept header prefers application/health+json over application/json gets the IETF format.
// Error strings, durations and counters appear only in verbose responses: requests with the
// "verbose" query parameter that [Config.AllowVerbose] accepts.
func (c *Checker) ReadinessHandler() http.Handler { return http.HandlerFunc(c.serveReady) }

// Middleware serves liveness at [Config.Path] and readiness at [Config.ReadyPath] in front of
// next, which gets every other request. While the Checker is draining, every response it passes
// carries "Connection: close", so that clients holding keep-alive connections to this instance
// reconnect, through the load balancer, to another one before the server shuts down.
func (c *Checker) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.snap.Load().draining {
			w.Header()["Connection"] = hdrClose
		}
		switch r.URL.Path {
		case c.cfg.Path:
			c.serveLive(w, r)
		case c.cfg.ReadyPath:
			c.serveReady(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func (c *Checker) serveReady(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r) {
		return
	}
	s := c.view(r.Context())
	ietf := wantsHealthJSON(accept(r))
	if c.verbose(r) {
		checks := c.checkStats(s)
		var v any = s.plainDoc(checks, true)
		if ietf {
			v = s.ietfDoc(checks, true)
		}
		write(w, r, s.code, ietf, newBody(v))
		return
	}
	b := s.plain
	if ietf {
		b = s.ietf
	}
	write(w, r, s.code, ietf, b)
}

// lengths holds the Content-Length header values of liveness bodies, so serving one allocates nothing.
var lengths = func() (l [256][]string) {
	for i := range l {
		l[i] = []string{strconv.Itoa(i)}
	}
	return l
}()

func contentLength(n int) []string {
	if n < len(lengths) {
		return lengths[n]
	}
	return []string{strconv.Itoa(n)}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

func (c *Checker) serveLive(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r) {
		return
	}
	now := time.Now()
	up := now.Sub(c.start).Seconds()
	bp := bufPool.Get().(*[]byte)
	b := (*bp)[:0]
	ietf := wantsHealthJSON(accept(r))
	if ietf {
		b = append(b, `{"status":"pass","checks":{"uptime":[{"componentType":"system","observedValue":`...)
		b = strconv.AppendFloat(b, up, 'f', 3, 64)
		b = append(b, `,"observedUnit":"s","status":"pass","time":"`...)
		b = now.UTC().AppendFormat(b, timeLayout)
		b = append(b, "\"}]}}\n"...)
	} else {
		b = append(b, `{"status":"ok","uptime":`...)
		b = strconv.AppendFloat(b, up, 'f', 3, 64)
		b = append(b, "}\n"...)
	}
	write(w, r, http.StatusOK, ietf, body{b: b, length: contentLength(len(b))})
	*bp = b
	bufPool.Put(bp)
}

func write(w http.ResponseWriter, r *http.Request, code int, ietf bool, b body) {
	h := w.Header()
	if ietf {
		h["Content-Type"] = hdrHealthJSON
	} else {
		h["Content-Type"] = hdrJSON
	}
	// Keep what outer middleware set: a cache policy of its own, other Vary fields.
	if len(h["Cache-Control"]) == 0 {
		h["Cache-Control"] = hdrNoStore
	}
	if vary := h["Vary"]; len(vary) == 0 {
		h["Vary"] = hdrVary
	} else if !slices.Contains(vary, "Accept") {
		h["Vary"] = append(vary, "Accept")
	}
	h["Content-Length"] = b.length
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b.b)
	}
}

var methodNotAllowed = newBody(map[string]string{"error": "method not allowed"})

func allowMethod(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header()["Allow"] = hdrAllow
	write(w, r, http.StatusMethodNotAllowed, false, methodNotAllowed)
	return false
}

// accept returns r's Accept header, its lines joined if it has several.
func accept(r *http.Request) string {
	switch v := r.Header["Accept"]; len(v) {
	case 0:
		return ""
	case 1:
		return v[0]
	default:
		return strings.Join(v, ",")
	}
}

// verbose reports whether r asks for details and may see them.
func (c *Checker) verbose(r *http.Request) bool {
	return c.cfg.AllowVerbose != nil && queryFlag(r.URL.RawQuery, "verbose") && c.cfg.AllowVerbose(r)
}

// queryFlag reports whether the raw query has the parameter name with a value other than
// "0" or "false" (an empty value counts as set), without allocating.
func queryFlag(rawQuery, name string) bool {
	for rawQuery != "" {
		var kv string
		kv, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k == name {
			return v != "0" && v != "false"
		}
	}
	return false
}

// wantsHealthJSON reports whether an Accept header prefers application/health+json: it must be
// named explicitly (wildcards keep plain JSON, the default) with a quality above zero and no lower
// than the one application/json gets from its most specific matching range.
func wantsHealthJSON(accept string) bool {
	if accept == "" {
		return false
	}
	healthQ := -1
	jsonQ := [3]int{-1, -1, -1} // application/json, application/*, */*
	for accept != "" {
		var part string
		part, accept, _ = strings.Cut(accept, ",")
		mt, params, _ := strings.Cut(part, ";")
		mt = strings.TrimSpace(mt)
		q := 1000
		for params != "" {
			var p string
			p, params, _ = strings.Cut(params, ";")
			k, v, _ := strings.Cut(p, "=")
			if strings.EqualFold(strings.TrimSpace(k), "q") {
				q = parseQ(strings.TrimSpace(v))
			}
		}
		slot := -1
		switch {
		case strings.EqualFold(mt, contentTypeHealthJSON):
			if healthQ < 0 {
				healthQ = q
			}
			continue
		case strings.EqualFold(mt, contentTypeJSON):
			slot = 0
		case strings.EqualFold(mt, "application/*"):
			slot = 1
		case mt == "*/*":
			slot = 2
		default:
			continue
		}
		if jsonQ[slot] < 0 {
			jsonQ[slot] = q
		}
	}
	if healthQ <= 0 {
		return false
	}
	for _, q := range jsonQ {
		if q >= 0 {
			return healthQ >= q
		}
	}
	return true
}

// parseQ parses an RFC 9110 qvalue into thousandths; an invalid one counts as 0 (not acceptable).
func parseQ(s string) int {
	if s == "" || (s[0] != '0' && s[0] != '1') {
		return 0
	}
	q := int(s[0]-'0') * 1000
	rest := s[1:]
	if rest == "" {
		return q
	}
	if rest[0] != '.' || len(rest) > 4 {
		return 0
	}
	scale := 100
	for i := 1; i < len(rest); i++ {
		d := rest[i]
		if d < '0' || d > '9' {
			return 0
		}
		q += int(d-'0') * scale
		scale /= 10
	}
	if q > 1000 {
		return 0
	}
	return q
}
