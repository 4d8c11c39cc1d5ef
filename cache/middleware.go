package cache

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/outgrow/outgrow/internal/cachecontrol"
)

// defaultMaxBody is the largest body buffered to compute an ETag when MiddlewareConfig.MaxBody
// is zero.
const defaultMaxBody = 1 << 20

// MiddlewareConfig says how [Middleware] marks responses for browsers and CDNs. The zero value
// is ready to use: "private, max-age=300" and a strong ETag on every 200 response to GET and
// HEAD. A MiddlewareConfig is a plain value; Middleware copies what it needs.
type MiddlewareConfig struct {
	// Policy gives max-age (TTL), stale-while-revalidate and stale-if-error (RFC 5861; omitted
	// when zero). It can be the Policy of the Cache the responses are built from. Durations
	// are written in whole seconds, rounded down. Default: max-age=300 and no stale windows.
	Policy
	// SharedTTL is s-maxage: how long shared caches (CDNs, proxies) keep the response, in place
	// of max-age. It needs Public, and is dropped whenever a response is made private.
	// Default: 0 (omitted).
	SharedTTL time.Duration
	// Public marks responses "public", so that shared caches may store them; otherwise they are
	// "private" (the browser only). A response is still made private when the request carries
	// credentials (see AllowCredentialed) or the response sets a cookie. Default: false.
	Public bool
	// Immutable adds "immutable" (RFC 8246): the response never changes while fresh, so browsers
	// do not revalidate it on reload. For URLs that change with their content (hashed assets).
	// Default: false.
	Immutable bool
	// NoStore sends "no-store" and nothing else, for responses that no cache may keep (account
	// pages, tokens). It cannot be combined with Public, Immutable or SharedTTL; Policy is then
	// ignored. Default: false.
	NoStore bool
	// Vary lists request headers the response depends on besides the URL, such as
	// "Accept-Language"; they are merged into the response's Vary. Default: none.
	Vary []string
	// AllowCredentialed keeps Public responses public even when the request carried an
	// Authorization header or a session cookie; such responses then also get
	// "Vary: Authorization, Cookie", so that shared caches keep one copy per credential. Leave it
	// off unless the response is the same for every user or the CDN keys on those headers.
	// Default: false.
	AllowCredentialed bool
	// SessionCookies names the cookies that identify a user. Pass the name the session
	// manager really sends (outgrow's session.Manager.CookieName reports it). A name matches
	// with or without the "__Host-" and "__Secure-" prefixes (RFC 6265bis), either way round:
	// "sid" matches a cookie sent as "__Host-sid", and "__Host-sid" one sent as "sid".
	// Default: none, and then any Cookie header marks the request as credentialed.
	SessionCookies []string
	// MaxBody is the largest body, in bytes, buffered to compute an ETag. Larger bodies are
	// streamed as they are written, without an ETag. Default: 1 MiB.
	MaxBody int
	// DisableETag turns off the computed ETag: bodies are never buffered. An ETag set by the
	// handler is still used to answer If-None-Match. Default: false.
	DisableETag bool
}

func (c *MiddlewareConfig) check() error {
	if err := c.Policy.check("MiddlewareConfig"); err != nil {
		return err
	}
	switch {
	case c.SharedTTL < 0:
		return fmt.Errorf("%w: MiddlewareConfig.SharedTTL %v is negative", ErrInvalidConfig, c.SharedTTL)
	case c.MaxBody < 0:
		return fmt.Errorf("%w: MiddlewareConfig.MaxBody %d is negative", ErrInvalidConfig, c.MaxBody)
	case c.NoStore && (c.Public || c.Immutable || c.SharedTTL > 0):
		return fmt.Errorf("%w: MiddlewareConfig.NoStore cannot be combined with Public, Immutable or SharedTTL", ErrInvalidConfig)
	case c.SharedTTL > 0 && !c.Public:
		// s-maxage on a private response would be a promise no shared cache may act on.
		return fmt.Errorf("%w: MiddlewareConfig.SharedTTL needs Public", ErrInvalidConfig)
	}
	for _, v := range c.Vary {
		if v != "*" && !isToken(v) {
			return fmt.Errorf("%w: MiddlewareConfig.Vary: %q is not a header name", ErrInvalidConfig, v)
		}
	}
	for _, name := range c.SessionCookies {
		if !isToken(name) || unprefixed(name) == "" {
			return fmt.Errorf("%w: MiddlewareConfig.SessionCookies: %q is not a cookie name", ErrInvalidConfig, name)
		}
	}
	return nil
}

// Middleware returns net/http middleware that makes GET and HEAD responses cacheable by
// browsers and CDNs, and answers conditional requests with 304 Not Modified. It returns an
// error matching ErrInvalidConfig when cfg cannot work.
//
// Only responses with status 200 are marked; other methods and statuses pass through untouched
// (a 304 written by the handler itself, as http.ServeContent does, gets the Cache-Control and
// Vary of the 200 it stands for, as RFC 9110 §15.4.5 asks). For a 200:
//
//   - Cache-Control is set from cfg, for example "public, max-age=300, s-maxage=3600,
//     stale-while-revalidate=60", unless the handler set one, which wins. The response is
//     "private" (and has no s-maxage) when cfg.Public is false, when the request carries
//     Authorization or a session cookie (RFC 9111 §3.5; Varnish does not cache those either)
//     unless cfg.AllowCredentialed, and when the response sets a cookie.
//   - Vary gets cfg.Vary, and Accept-Encoding when the response has a Content-Encoding, merged
//     with the handler's without duplicates; "*" replaces everything.
//   - ETag, unless the handler set one or cfg.DisableETag: a strong tag hashed (SHA-256) from the
//     body and its Content-Encoding, so that each encoding has its own tag. The body is held
//     back to compute it, up to cfg.MaxBody. A larger body, a call to Flush (directly or through
//     http.ResponseController) or a declared Trailer sends the response at once, without a
//     computed ETag: streaming responses stream.
//   - If-None-Match (weak comparison, lists, "*") is answered with 304 when it matches the
//     ETag; without If-None-Match, If-Modified-Since is answered with 304 when the handler set
//     a Last-Modified no later than it (in whole seconds). A 304 has no body and keeps ETag,
//     Cache-Control, Vary, Expires, Date and Content-Location, but not Content-Length,
//     Content-Type or Content-Encoding.
//   - A HEAD whose handler writes no body gets its headers only: no ETag is made up from the
//     empty body.
//
// Compression middleware belongs inside (between this middleware and the handler), so that the
// ETag and Vary describe the bytes actually sent. Handlers may use http.ResponseController:
// the writer they get unwraps to the server's. While the body is held back, header fields the
// handler sets after WriteHeader or its first Write still reach the client.
//
// Shared caches must either bypass requests with credentials (Varnish's builtin does) or be
// told to key on them (AllowCredentialed): a public response to an anonymous request carries
// no Vary: Cookie, so a CDN that caches regardless would serve it to logged-in users too.
func Middleware(cfg MiddlewareConfig) (func(http.Handler) http.Handler, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	m := newMiddleware(cfg)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				next.ServeHTTP(w, r)
				return
			}
			cw := &writer{ResponseWriter: w, m: m, r: r}
			next.ServeHTTP(cw, r)
			// Not deferred: after a panic, a half-built response must not be sent as if whole.
			cw.finish()
		})
	}, nil
}

type middleware struct {
	// Cache-Control values, built once. They are equal unless the config is public.
	public, private string
	canBePublic     bool
	checkCreds      bool // public unless the request is credentialed
	varyCreds       bool // public responses vary on credentials (AllowCredentialed)
	varyValue       string
	varyNames       []string
	sessionCookies  []string
	maxBody         int
	disableETag     bool
}

func newMiddleware(cfg MiddlewareConfig) *middleware {
	m := &middleware{
		canBePublic:    cfg.Public,
		checkCreds:     cfg.Public && !cfg.AllowCredentialed,
		varyCreds:      cfg.Public && cfg.AllowCredentialed,
		sessionCookies: make([]string, len(cfg.SessionCookies)),
		maxBody:        cfg.MaxBody,
		disableETag:    cfg.DisableETag,
	}
	for i, name := range cfg.SessionCookies {
		m.sessionCookies[i] = unprefixed(name)
	}
	if m.maxBody == 0 {
		m.maxBody = defaultMaxBody
	}
	var star bool
	for _, v := range cfg.Vary {
		m.varyNames, star = addVary(m.varyNames, star, v)
	}
	m.varyValue = joinVary(m.varyNames, star)

	if cfg.NoStore {
		m.public = cachecontrol.Directives{NoStore: true}.String()
		m.private = m.public
		m.canBePublic = false
		return m
	}
	d := cachecontrol.Directives{MaxAge: cachecontrol.SecondsOf(cfg.ttl()), Immutable: cfg.Immutable}
	if s := cachecontrol.SecondsOf(cfg.StaleWhileRevalidate); s.N > 0 {
		d.StaleWhileRevalidate = s
	}
	if s := cachecontrol.SecondsOf(cfg.StaleIfError); s.N > 0 {
		d.StaleIfError = s
	}
	priv := d
	priv.Private = true
	m.private = priv.String()
	m.public = m.private
	if cfg.Public {
		pub := d
		pub.Public = true
		if cfg.SharedTTL > 0 {
			pub.SMaxAge = cachecontrol.SecondsOf(cfg.SharedTTL)
		}
		m.public = pub.String()
	}
	return m
}

// decorate sets Cache-Control and Vary on the header of a 200 (or of the 304 standing for it).
func (w *writer) decorate() {
	h, m := w.Header(), w.m
	credVary := false
	if len(h["Cache-Control"]) == 0 {
		v := m.private
		if m.canBePublic && len(h["Set-Cookie"]) == 0 && !(m.checkCreds && m.credentialed(w.r)) {
			v, credVary = m.public, m.varyCreds
		}
		h["Cache-Control"] = w.value(hvCacheControl, v)
	}
	if v, ok := m.vary(h, credVary); ok {
		h["Vary"] = w.value(hvVary, v)
	}
}

// value returns a one-element header value held in the writer, which saves an allocation per
// header. It is the response's own, so a later middleware that edits it in place changes
// nothing else; a shared slice would change every response.
func (w *writer) value(i int, v string) []string {
	w.hv[i] = v
	return w.hv[i : i+1 : i+1]
}

// Indexes into writer.hv.
const (
	hvCacheControl = iota
	hvVary
	hvETag
	hvContentLength
	hvCount
)

// credentialed reports a request carrying Authorization or a session cookie.
func (m *middleware) credentialed(r *http.Request) bool {
	if len(r.Header["Authorization"]) > 0 {
		return true
	}
	for _, line := range r.Header["Cookie"] {
		if len(m.sessionCookies) == 0 {
			if strings.TrimSpace(line) != "" {
				return true
			}
			continue
		}
		for part := range strings.SplitSeq(line, ";") {
			name, _, _ := strings.Cut(part, "=")
			name = unprefixed(strings.TrimSpace(name))
			for _, s := range m.sessionCookies {
				if name == s { // cookie names are case-sensitive
					return true
				}
			}
		}
	}
	return false
}

// unprefixed returns a cookie name without its "__Host-" or "__Secure-" prefix. Browsers
// compare the prefixes in any case; the rest of the name is case-sensitive.
func unprefixed(name string) string {
	for _, p := range [...]string{"__Host-", "__Secure-"} {
		if len(name) >= len(p) && strings.EqualFold(name[:len(p)], p) {
			return name[len(p):]
		}
	}
	return name
}

// vary returns the Vary value the response needs, and false when its Vary is right already.
func (m *middleware) vary(h http.Header, credVary bool) (string, bool) {
	old := h["Vary"]
	encoded := false
	for _, v := range h["Content-Encoding"] {
		if v = strings.TrimSpace(v); v != "" && !strings.EqualFold(v, "identity") {
			encoded = true
		}
	}
	if len(old) == 0 && !encoded && !credVary {
		return m.varyValue, m.varyValue != ""
	}
	var arr [16]string
	names, star := arr[:0], false
	for _, line := range old {
		for name := range strings.SplitSeq(line, ",") {
			names, star = addVary(names, star, name)
		}
	}
	for _, name := range m.varyNames {
		names, star = addVary(names, star, name)
	}
	if encoded {
		names, star = addVary(names, star, "Accept-Encoding")
	}
	if credVary {
		names, star = addVary(names, star, "Authorization")
		names, star = addVary(names, star, "Cookie")
	}
	v := joinVary(names, star)
	return v, v != "" && (len(old) != 1 || old[0] != v)
}

// addVary adds one Vary member to names unless it is there already, in any case. "*" is kept
// apart: it makes the others pointless.
func addVary(names []string, star bool, name string) ([]string, bool) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return names, star
	case name == "*":
		return names, true
	}
	for _, n := range names {
		if strings.EqualFold(n, name) {
			return names, star
		}
	}
	return append(names, name), star
}

func joinVary(names []string, star bool) string {
	if star {
		return "*"
	}
	return strings.Join(names, ", ")
}

// isToken reports a non-empty RFC 9110 token, such as a header or cookie name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if strings.IndexByte("!#$%&'*+-.^_`|~", c) < 0 {
			return false
		}
	}
	return true
}
