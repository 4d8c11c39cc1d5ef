package session

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outgrow/outgrow/internal/failfast"
	"github.com/outgrow/outgrow/internal/httpjson"
)

// Codec turns values that are not strings, integers, booleans or times into bytes and back; JSON
// by default (Config.Codec). Implementations must be safe for concurrent use.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// Config configures a Manager. The zero value is the secure default: a cookie named "session",
// HttpOnly, Secure, SameSite=Lax, Path=/, ending with the browser session; sessions end after 30
// minutes unused or 24 hours in all; store failures answer 503. A Config is a plain value; New
// copies it.
type Config struct {
	// CookieName names the cookie; with HostPrefix, "__Host-" goes in front of it
	// ([Manager.CookieName] tells the name sent). Default: "session".
	CookieName string
	// HostPrefix names the cookie "__Host-"+CookieName, which browsers accept only from a
	// secure origin, for Path=/ and no Domain: no subdomain can set or shadow it. Default: false.
	HostPrefix bool
	// Domain is the cookie's Domain attribute. Default: "" (the host that set it, without its
	// subdomains).
	Domain string
	// Path is the cookie's Path attribute. Default: "/".
	Path string
	// Insecure drops the cookie's Secure attribute, for local development over plain HTTP only.
	// Default: false.
	Insecure bool
	// SameSite is the cookie's SameSite attribute. Default: http.SameSiteLaxMode.
	SameSite http.SameSite
	// Persist gives the cookie a Max-Age up to the session's absolute deadline, so it survives a
	// browser restart. Default: false (the cookie ends with the browser session).
	Persist bool
	// IdleTimeout ends a session unused for that long. Default: 30m.
	IdleTimeout time.Duration
	// Lifetime ends a session that long after it was created, used or not. Default: 24h.
	Lifetime time.Duration
	// MaxSize bounds a session's keys and encoded values, in bytes; a Put that would pass it
	// fails with ErrTooLarge. Default: 16384 (16 KiB).
	MaxSize int
	// Codec encodes values other than strings, integers, booleans and times. Default: JSON
	// (encoding/json).
	Codec Codec
	// FailOpen serves requests without a session when the store fails (the session starts empty
	// and is not saved). Default: false (OnError answers them).
	FailOpen bool
	// OnError answers a request whose session could not be loaded or saved. It never receives
	// ErrNotFound. When a save fails, the handler's headers are removed first: they described
	// another response. Default: 503 with {"error":"Service temporarily unavailable."}.
	OnError func(w http.ResponseWriter, r *http.Request, err error)
	// Logger receives the Manager's state changes: the store failing (3 loads or saves in a
	// row failed) and answering again; never a line per request. A RedisStore logs its own
	// outages (RedisConfig.Logger), so a Manager over one logs nothing of them here.
	// Default: slog.Default().
	Logger *slog.Logger
	// Hooks observe the Manager. Default: none.
	Hooks Hooks
}

// Hooks are optional callbacks, called on the request's goroutine with its context; they must
// be safe for concurrent use and must not block. The zero value has no hooks.
type Hooks struct {
	// OnStoreError is called when the store fails to load or save a request's session.
	OnStoreError func(ctx context.Context, err error)
}

// Stats counts what a Manager did: a snapshot, from [Manager.Stats], and a plain value. The zero
// value counts nothing.
type Stats struct {
	Loads       uint64 // sessions found
	Misses      uint64 // cookies naming no live session (unknown, malformed, expired)
	Created     uint64 // sessions stored for the first time
	Renewed     uint64 // sessions given a new ID (Renew, Login)
	Destroyed   uint64 // sessions deleted (Destroy, Revoke, DestroyAll)
	Commits     uint64 // writes to the store (created, changed, renewed or destroyed sessions)
	Lost        uint64 // changes to sessions that expired or vanished during their request
	StoreErrors uint64 // loads and saves that failed (Hooks.OnStoreError saw each)
}

// Manager loads sessions for requests and saves their changes.
//
// The zero value is not usable; create a Manager with [New]. It is safe for concurrent use and
// has no goroutine.
type Manager struct {
	store  Store
	cfg    Config
	cookie string
	// failing counts store failures in a row, for Config.Logger, when the store does not log
	// its own outages (see selfLogging); nil otherwise. The Manager never refuses a call
	// because of it.
	failing *failfast.Window

	loads, misses, created, renewed, destroyed, commits, lost, storeErrors atomic.Uint64
}

// failingAfter is how many store failures in a row the Manager logs as the store failing.
const failingAfter = 3

// New returns a Manager over store. Its error wraps ErrInvalidConfig and names the field at
// fault.
func New(store Store, cfg Config) (*Manager, error) {
	if store == nil {
		return nil, fmt.Errorf("%w: nil Store", ErrInvalidConfig)
	}
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	name, err := cfg.cookieName()
	if err != nil {
		return nil, err
	}
	m := &Manager{store: store, cfg: cfg, cookie: name}
	if _, ok := store.(selfLogging); !ok {
		m.failing = failfast.New(0, failingAfter)
	}
	return m, nil
}

// selfLogging is implemented by stores that log their own outages: the RedisStore, whose Redis
// client logs when Redis starts failing and when it answers again (RedisConfig.Logger). The
// Manager logs store failures for other stores only, so that an outage is logged once, by the
// one that counts it. A store that embeds a *RedisStore implements it too.
type selfLogging interface{ logsOutages() }

// fill checks cfg and fills in its defaults.
func (cfg *Config) fill() error {
	switch {
	case cfg.IdleTimeout < 0:
		return fmt.Errorf("%w: Config.IdleTimeout %v is negative", ErrInvalidConfig, cfg.IdleTimeout)
	case cfg.Lifetime < 0:
		return fmt.Errorf("%w: Config.Lifetime %v is negative", ErrInvalidConfig, cfg.Lifetime)
	case cfg.MaxSize < 0:
		return fmt.Errorf("%w: Config.MaxSize %d is negative", ErrInvalidConfig, cfg.MaxSize)
	case cfg.SameSite == http.SameSiteNoneMode && cfg.Insecure:
		return fmt.Errorf("%w: Config.SameSite None needs a Secure cookie, and Config.Insecure is set", ErrInvalidConfig)
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 30 * time.Minute
	}
	if cfg.Lifetime == 0 {
		cfg.Lifetime = 24 * time.Hour
	}
	if cfg.MaxSize == 0 {
		cfg.MaxSize = 16 << 10
	}
	if cfg.Path == "" {
		cfg.Path = "/"
	}
	if cfg.SameSite == 0 {
		cfg.SameSite = http.SameSiteLaxMode
	}
	if cfg.Codec == nil {
		cfg.Codec = jsonCodec{}
	}
	if cfg.OnError == nil {
		cfg.OnError = unavailable
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return nil
}

// cookieName checks the cookie's attributes and returns its name, "__Host-" included.
func (cfg *Config) cookieName() (string, error) {
	name := cfg.CookieName
	if name == "" {
		name = "session"
	}
	if !validCookieName(name) {
		return "", fmt.Errorf("%w: Config.CookieName %q is not a cookie name", ErrInvalidConfig, name)
	}
	if cfg.HostPrefix {
		if cfg.Insecure || cfg.Domain != "" || cfg.Path != "/" {
			return "", fmt.Errorf("%w: Config.HostPrefix needs a Secure cookie (no Config.Insecure) with Path=/ and no Domain", ErrInvalidConfig)
		}
		name = "__Host-" + name
	}
	probe := &http.Cookie{Name: name, Value: newID(), Domain: cfg.Domain, Path: cfg.Path}
	if err := probe.Valid(); err != nil {
		return "", fmt.Errorf("%w: Config.Domain %q or Config.Path %q: %w", ErrInvalidConfig, cfg.Domain, cfg.Path, err)
	}
	return name, nil
}

// CookieName returns the name of the session cookie the Manager sends: Config.CookieName, with
// "__Host-" in front when Config.HostPrefix is set. Give it to what must recognize logged-in
// requests by their cookie, such as the cache package's MiddlewareConfig.SessionCookies, so
// that a personal page is never cached as public.
func (m *Manager) CookieName() string { return m.cookie }

func validCookieName(s string) bool {
	return (&http.Cookie{Name: s, Value: "x"}).Valid() == nil
}

func unavailable(w http.ResponseWriter, _ *http.Request, _ error) { httpjson.Unavailable(w, 1) }

// Stats returns a snapshot of the counters.
func (m *Manager) Stats() Stats {
	return Stats{
		Loads: m.loads.Load(), Misses: m.misses.Load(), Created: m.created.Load(), Renewed: m.renewed.Load(),
		Destroyed: m.destroyed.Load(), Commits: m.commits.Load(), Lost: m.lost.Load(), StoreErrors: m.storeErrors.Load(),
	}
}

// List returns the live sessions of user (sessions gain a user with [Session.Login]), oldest
// first. [Session.Handle] tells which one is the current request's.
func (m *Manager) List(ctx context.Context, user string) ([]Info, error) {
	return m.store.User(ctx, UserQuery{User: user})
}

// Revoke ends one session of user, named by its Info.Handle ("sign out that device"). It
// reports whether there was such a live session.
func (m *Manager) Revoke(ctx context.Context, user, handle string) (bool, error) {
	if handle == "" {
		return false, nil
	}
	infos, err := m.store.User(ctx, UserQuery{User: user, Destroy: true, Handles: []string{handle}})
	m.destroyed.Add(uint64(len(infos)))
	return len(infos) > 0, err
}

// DestroyAll ends every session of user ("sign out everywhere") and returns how many there were.
// Requests already running on one of them may still save it: call DestroyAll after the change
// that motivates it (a new password) is stored.
func (m *Manager) DestroyAll(ctx context.Context, user string) (int, error) {
	infos, err := m.store.User(ctx, UserQuery{User: user, Destroy: true})
	m.destroyed.Add(uint64(len(infos)))
	return len(infos), err
}

type ctxKey struct{}

// FromContext returns the session of the request whose context is ctx, or nil outside the
// Manager's middleware. Every method of a nil *Session returns zero values or ErrNoSession.
func FromContext(ctx context.Context) *Session {
	s, _ := ctx.Value(ctxKey{}).(*Session)
	return s
}

// Session is the session of one request, from [FromContext]. Its changes are saved when the
// response starts (the first Write or WriteHeader, or the handler's return); a change after that
// fails with ErrCommitted. A Session is safe for concurrent use by the request's goroutines. There
// is no useful zero value: a nil *Session (outside the middleware) answers zero values and
// ErrNoSession.
type Session struct {
	m      *Manager
	mu     sync.Mutex
	id     string // "" for a session not stored yet
	values map[string][]byte
	set    map[string][]byte
	del    map[string]struct{}
	size   int
	rec    Record

	user        string
	login       bool // Login: a new session for user replaces this one at commit
	renew       bool
	destroyID   string // a stored session to delete at commit (Destroy, then maybe a new one)
	destroyUser string // its user, whose index lists it
	committed   bool
	detached    bool // FailOpen after a store failure: never saved
}

// The kinds of encoded values: the first byte of what a store keeps.
const (
	kindString = 's'
	kindInt    = 'i'
	kindBool   = 'b'
	kindTime   = 't'
	kindCodec  = 'c'
)

func (s *Session) raw(key string) ([]byte, bool) {
	if s == nil {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.values[key]
	return v, ok
}

// String returns the string stored at key, or "" (also when the value is of another kind).
func (s *Session) String(key string) string {
	v, ok := s.raw(key)
	if !ok || len(v) == 0 || v[0] != kindString {
		return ""
	}
	return string(v[1:])
}

// Int returns the integer stored at key, or 0.
func (s *Session) Int(key string) int {
	v, ok := s.raw(key)
	if !ok || len(v) == 0 || v[0] != kindInt {
		return 0
	}
	n, _ := strconv.ParseInt(string(v[1:]), 10, 64)
	return int(n)
}

// Bool returns the boolean stored at key, or false.
func (s *Session) Bool(key string) bool {
	v, ok := s.raw(key)
	return ok && len(v) == 2 && v[0] == kindBool && v[1] == '1'
}

// Time returns the time stored at key, or the zero time.
func (s *Session) Time(key string) time.Time {
	v, ok := s.raw(key)
	if !ok || len(v) == 0 || v[0] != kindTime {
		return time.Time{}
	}
	t, _ := time.Parse(time.RFC3339Nano, string(v[1:]))
	return t
}

// Get decodes the value stored at key into dst (a pointer) and reports whether there was one.
// Strings, integers, booleans and times decode into *string, *int, *int64, *bool and
// *time.Time; other values through the Codec.
func (s *Session) Get(key string, dst any) (bool, error) {
	v, ok := s.raw(key)
	if !ok || len(v) == 0 {
		return false, nil
	}
	switch d := dst.(type) {
	case *string:
		if v[0] == kindString {
			*d = string(v[1:])
			return true, nil
		}
	case *int:
		if v[0] == kindInt {
			n, err := strconv.Atoi(string(v[1:]))
			*d = n
			return true, err
		}
	case *int64:
		if v[0] == kindInt {
			n, err := strconv.ParseInt(string(v[1:]), 10, 64)
			*d = n
			return true, err
		}
	case *bool:
		if v[0] == kindBool && len(v) == 2 {
			*d = v[1] == '1'
			return true, nil
		}
	case *time.Time:
		if v[0] == kindTime {
			t, err := time.Parse(time.RFC3339Nano, string(v[1:]))
			*d = t
			return true, err
		}
	}
	if v[0] != kindCodec {
		return true, fmt.Errorf("%w: %q", ErrKind, key)
	}
	return true, s.m.cfg.Codec.Unmarshal(v[1:], dst)
}

// Has reports whether a value is stored at key.
func (s *Session) Has(key string) bool {
	_, ok := s.raw(key)
	return ok
}

// Keys returns the keys of the session's values, sorted.
func (s *Session) Keys() []string {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.values))
	for k := range s.values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// appendInt encodes an integer in one allocation.
func appendInt(n int64) []byte {
	return strconv.AppendInt(append(make([]byte, 0, 21), kindInt), n, 10)
}

func (s *Session) encode(v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		return append([]byte{kindString}, x...), nil
	case int:
		return appendInt(int64(x)), nil
	case int64:
		return appendInt(x), nil
	case int32:
		return appendInt(int64(x)), nil
	case bool:
		if x {
			return []byte{kindBool, '1'}, nil
		}
		return []byte{kindBool, '0'}, nil
	case time.Time:
		return x.AppendFormat([]byte{kindTime}, time.RFC3339Nano), nil
	}
	b, err := s.m.cfg.Codec.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("session: encode: %w", err)
	}
	return append([]byte{kindCodec}, b...), nil
}

// edit runs fn with s locked, if s can still change: ErrNoSession for a nil session,
// ErrCommitted once the response has started.
func (s *Session) edit(fn func() error) error {
	if s == nil {
		return ErrNoSession
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.committed {
		return ErrCommitted
	}
	return fn()
}

// Put stores v at key: strings, integers, booleans and times as such, anything else through
// the Codec. It fails with ErrTooLarge if the session would outgrow Config.MaxSize, and with
// ErrCommitted once the response has started.
func (s *Session) Put(key string, v any) error {
	if s == nil {
		return ErrNoSession
	}
	b, err := s.encode(v)
	if err != nil {
		return err
	}
	return s.edit(func() error { return s.putLocked(key, b) })
}

func (s *Session) putLocked(key string, b []byte) error {
	old, had := s.values[key]
	size := s.size + len(b)
	if had {
		size -= len(old)
	} else {
		size += len(key)
	}
	if size > s.m.cfg.MaxSize && size > s.size { // a Put that shrinks the session always passes
		return fmt.Errorf("%w: %d bytes with %q, over MaxSize %d", ErrTooLarge, size, key, s.m.cfg.MaxSize)
	}
	s.size = size
	if s.values == nil {
		s.values = make(map[string][]byte)
	}
	if s.set == nil {
		s.set = make(map[string][]byte)
	}
	s.values[key] = b
	s.set[key] = b
	delete(s.del, key)
	return nil
}

// Remove deletes the value at key.
func (s *Session) Remove(key string) error {
	return s.edit(func() error {
		s.removeLocked(key)
		return nil
	})
}

func (s *Session) removeLocked(key string) {
	if old, ok := s.values[key]; ok {
		s.size -= len(key) + len(old)
		delete(s.values, key)
		delete(s.set, key)
		if s.del == nil {
			s.del = make(map[string]struct{})
		}
		s.del[key] = struct{}{}
	}
}

// PopString returns the string at key and removes it: a flash message. Once the response has
// started it returns "" and ErrCommitted, so that a message is never shown without being removed.
func (s *Session) PopString(key string) (string, error) {
	var out string
	err := s.edit(func() error {
		if v, ok := s.values[key]; ok && len(v) > 0 && v[0] == kindString {
			out = string(v[1:])
			s.removeLocked(key)
		}
		return nil
	})
	return out, err
}

// Clear removes every value; the session itself (and its user) stays.
func (s *Session) Clear() error {
	return s.edit(func() error {
		for k := range s.values {
			s.removeLocked(k)
		}
		return nil
	})
}

// Renew gives the session a new ID, keeping its data; the old ID stops working when the
// response starts. Call it whenever privileges change (log in, log out, sudo), so that an ID an
// attacker planted or saw before is worth nothing after.
func (s *Session) Renew() error {
	return s.edit(func() error {
		s.renew = true
		return nil
	})
}

// Login ties the session to user, who can then list their sessions and end them all
// ([Manager.List], [Manager.DestroyAll]). When the response starts, a new session with a new ID
// takes over the values and the old one is deleted: an ID seen before logging in opens nothing
// after (no session fixation). To log out, Destroy the session. An empty user returns an error
// matching ErrInvalidConfig.
func (s *Session) Login(user string) error {
	if user == "" && s != nil {
		return fmt.Errorf("%w: Login with an empty user", ErrInvalidConfig)
	}
	return s.edit(func() error {
		s.login, s.user = true, user
		return nil
	})
}

// User returns the user the session belongs to, "" when anonymous.
func (s *Session) User() string {
	if s == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.user
}

// Destroy ends the session: its data is deleted and the cookie removed when the response
// starts. Values put after Destroy go into a new session with a new ID.
func (s *Session) Destroy() error {
	return s.edit(func() error {
		if s.id != "" {
			s.destroyID, s.destroyUser = s.id, s.rec.User
		}
		s.id = ""
		s.values, s.set, s.del = nil, nil, nil
		s.size, s.user, s.login, s.renew = 0, "", false, false
		s.rec = Record{}
		return nil
	})
}

// Handle identifies the stored session in listings ([Manager.List], [Info.Handle]) without
// revealing its ID; "" for a session not stored yet.
func (s *Session) Handle() string {
	if s == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.id == "" {
		return ""
	}
	return handle(s.id)
}

// IsNew reports whether the session was not found in the store for this request.
func (s *Session) IsNew() bool {
	if s == nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id == ""
}

// Deadline returns when the session ends at the latest (its absolute deadline); the zero time
// for a session not stored yet.
func (s *Session) Deadline() time.Time {
	if s == nil {
		return time.Time{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rec.Deadline
}
