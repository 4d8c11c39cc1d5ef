package session

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/outgrow/outgrow/internal/failfast"
)

// Middleware loads the session of each request (from its cookie) into the request's context
// for [FromContext], and saves its changes when the response starts: at the first Write,
// WriteHeader or Flush, or when next returns. A request that only reads its session writes
// nothing to the store (loading already slid its idle deadline).
//
// An unknown, malformed or expired session ID starts a new, empty session: never an error. When
// the store fails (or does not answer within its timeout), the request is answered by
// Config.OnError (503 by default), or served without a saved session with Config.FailOpen.
// Responses that set or clear the cookie get Cache-Control: no-store, and every response of a
// request with a session cookie gets Vary: Cookie, so that no shared cache serves one user's
// page to another.
func (m *Manager) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs := &requestState{s: Session{m: m}} // one allocation for both
		s := &rs.s
		hadCookie, err := m.load(r, s)
		if err != nil && r.Context().Err() != nil {
			return // the client has gone: nobody to answer, and nothing wrong with the store
		}
		if err != nil {
			m.storeFailed(r.Context(), err)
			if !m.cfg.FailOpen {
				m.cfg.OnError(w, r, err)
				return
			}
			s.detached = true
		}
		if hadCookie {
			w.Header().Add("Vary", "Cookie")
		}
		sw := &rs.w
		*sw = writer{ResponseWriter: w, m: m, s: s, r: r, hadCookie: hadCookie}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), ctxKey{}, s)))
		sw.start()
	})
}

// requestState is what the middleware keeps for one request.
type requestState struct {
	s Session
	w writer
}

// load finds the request's session and loads it into s, which stays empty when there is none.
func (m *Manager) load(r *http.Request, s *Session) (hadCookie bool, err error) {
	id := ""
	for _, c := range r.CookiesNamed(m.cookie) {
		hadCookie = true
		if validID(c.Value) {
			id = c.Value
			break
		}
	}
	if id == "" {
		if hadCookie {
			m.misses.Add(1)
		}
		return hadCookie, nil
	}
	rec, err := m.store.Load(r.Context(), id)
	switch {
	case errors.Is(err, ErrNotFound):
		m.storeAnswered()
		m.misses.Add(1)
		return true, nil
	case err != nil:
		return true, err
	}
	m.storeAnswered()
	m.loads.Add(1)
	s.id, s.rec, s.user, s.values = id, rec, rec.User, rec.Values
	for k, v := range rec.Values {
		s.size += len(k) + len(v)
	}
	return true, nil
}

// storeFailed counts a failed load or save, tells the hook, and logs when failures start.
func (m *Manager) storeFailed(ctx context.Context, err error) {
	m.storeErrors.Add(1)
	if h := m.cfg.Hooks.OnStoreError; h != nil {
		h(ctx, err)
	}
	if m.failing != nil && m.failing.Record(failfast.Failed) {
		policy := "answered by Config.OnError"
		if m.cfg.FailOpen {
			policy = "served without a saved session (Config.FailOpen)"
		}
		m.cfg.Logger.Warn("session: store failing; requests are "+policy, "err", err)
	}
}

// storeAnswered ends a run of store failures, logging the end of one that was logged. While the
// store answers it costs two atomic loads (none over a RedisStore).
func (m *Manager) storeAnswered() {
	if m.failing != nil && m.failing.Up() {
		m.cfg.Logger.Info("session: store answers again")
	}
}

// saved is what saving a session did, for the response: the cookie to set or to clear.
type saved struct {
	cookie   string    // the ID to set in the cookie; "" to leave the cookie alone
	deadline time.Time // the session's absolute deadline, with cookie
	clear    bool      // remove the cookie: the session is gone and no other replaces it
}

// change is what the request did to its stored session, for the store; nil when there is
// nothing to write. s.mu is held.
func (s *Session) change(cfg *Config) *Change {
	changed := len(s.set) > 0 || len(s.del) > 0
	var c *Change
	switch {
	case s.login:
		// Logging in creates a new session for the user, with everything the old one held; the
		// old one is then deleted. An ID anyone saw before the login opens nothing after it.
		c = &Change{ID: newID(), Create: true, Set: s.values, User: s.user}
	case s.id == "":
		if !changed {
			return nil // nothing to keep: no session, no cookie
		}
		c = &Change{ID: newID(), Create: true, Set: s.set}
	case s.renew:
		c = &Change{ID: s.id, NewID: newID(), Set: s.set, User: s.user}
	case !changed:
		return nil // only read: nothing to write
	default:
		c = &Change{ID: s.id, Set: s.set, User: s.user}
	}
	c.Idle, c.Lifetime = cfg.IdleTimeout, cfg.Lifetime
	if !c.Create {
		for k := range s.del {
			c.Del = append(c.Del, k)
		}
	}
	return c
}

// commit saves the session's changes, once, and says what the response must do with the cookie.
func (m *Manager) commit(ctx context.Context, s *Session) (saved, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.committed || s.detached {
		s.committed = true
		return saved{}, nil
	}
	s.committed = true
	c := s.change(&m.cfg)
	if c == nil && s.destroyID == "" {
		return saved{}, nil // a request that only read allocates nothing here
	}
	// A request outlives its client's interest: save what the handler did even if the client
	// has gone, within the store's own timeout.
	ctx = context.WithoutCancel(ctx)
	var out saved
	if s.destroyID != "" {
		if err := m.destroy(ctx, s.destroyID, s.destroyUser); err != nil {
			return saved{}, err
		}
		m.commits.Add(1)
		m.destroyed.Add(1)
		out.clear = true
	}
	if c == nil {
		return out, nil
	}
	rec, err := m.store.Commit(ctx, c)
	if err == nil || errors.Is(err, ErrNotFound) {
		m.storeAnswered()
	}
	switch {
	case errors.Is(err, ErrNotFound):
		// The session expired, or a concurrent request renewed or destroyed it: its changes are
		// dropped rather than written to a session that must be over. The cookie is left alone:
		// the browser may already hold a newer one.
		m.lost.Add(1)
		return out, nil
	case err != nil:
		return saved{}, err
	}
	m.commits.Add(1)
	if s.login && s.id != "" {
		if err := m.destroy(ctx, s.id, s.rec.User); err != nil {
			return saved{}, err
		}
		m.renewed.Add(1)
	}
	switch {
	case c.Create:
		m.created.Add(1)
	case c.NewID != "":
		m.renewed.Add(1)
	}
	if c.Create || c.NewID != "" {
		s.id = rec.ID
		out = saved{cookie: rec.ID, deadline: rec.Deadline}
	}
	s.rec = rec
	return out, nil
}

// destroy deletes a stored session; one already gone is no error.
func (m *Manager) destroy(ctx context.Context, id, user string) error {
	_, err := m.store.Commit(ctx, &Change{ID: id, Destroy: true, User: user})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	m.storeAnswered()
	return nil
}

func (m *Manager) setCookie(h http.Header, id string, deadline time.Time) {
	c := &http.Cookie{
		Name: m.cookie, Value: id, Path: m.cfg.Path, Domain: m.cfg.Domain,
		HttpOnly: true, Secure: !m.cfg.Insecure, SameSite: m.cfg.SameSite,
	}
	switch {
	case id == "":
		c.MaxAge = -1
		c.Expires = time.Unix(1, 0)
	case m.cfg.Persist && !deadline.IsZero():
		c.MaxAge = max(1, int((time.Until(deadline)+time.Second/2)/time.Second))
	}
	h.Add("Set-Cookie", c.String())
	h.Set("Cache-Control", "no-store")
	if !hasVaryCookie(h) {
		h.Add("Vary", "Cookie")
	}
}

func hasVaryCookie(h http.Header) bool {
	for _, v := range h.Values("Vary") {
		if v == "Cookie" {
			return true
		}
	}
	return false
}

// writer saves the session before the response's first byte.
type writer struct {
	http.ResponseWriter
	m         *Manager
	s         *Session
	r         *http.Request
	hadCookie bool
	started   bool
	failed    bool // the session could not be saved: OnError answered instead
}

// start commits the session once, before anything reaches the client.
func (w *writer) start() {
	if w.started {
		return
	}
	w.started = true
	out, err := w.m.commit(w.r.Context(), w.s)
	if err != nil {
		w.m.storeFailed(w.r.Context(), err)
		if !w.m.cfg.FailOpen {
			w.failed = true
			// The handler's headers (Location, Content-Encoding, cookies...) describe a response
			// that will not be sent.
			clear(w.Header())
			w.m.cfg.OnError(w.ResponseWriter, w.r, err)
			return
		}
	}
	switch {
	case out.cookie != "":
		w.m.setCookie(w.Header(), out.cookie, out.deadline)
	case out.clear && w.hadCookie:
		w.m.setCookie(w.Header(), "", time.Time{})
	}
}

func (w *writer) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// Informational (103 Early Hints): the response has not started; nothing is saved yet.
		if !w.started {
			w.ResponseWriter.WriteHeader(code)
		}
		return
	}
	w.start()
	if !w.failed {
		w.ResponseWriter.WriteHeader(code)
	}
}

func (w *writer) Write(b []byte) (int, error) {
	w.start()
	if w.failed {
		return len(b), nil // the handler's response is replaced by OnError's
	}
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher.
func (w *writer) Flush() { _ = w.FlushError() }

// FlushError flushes for http.ResponseController, saving the session first.
func (w *writer) FlushError() error {
	w.start()
	if w.failed {
		return nil
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// ReadFrom saves the session, then lets the underlying writer copy r (sendfile for files).
func (w *writer) ReadFrom(r io.Reader) (int64, error) {
	w.start()
	if w.failed {
		return io.Copy(io.Discard, r)
	}
	return io.Copy(w.ResponseWriter, r)
}

// Hijack implements http.Hijacker for protocols that take over the connection; the session is
// saved first, but a new cookie cannot reach the client unless the handler writes it.
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.start()
	if w.failed {
		return nil, nil, errors.New("session: the session could not be saved; the response was sent")
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
