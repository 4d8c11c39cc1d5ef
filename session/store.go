package session

import (
	"context"
	"errors"
	"time"
)

// Store keeps sessions. It is given session IDs and keeps only their digests. Implementations
// must be safe for concurrent use; [MemoryStore] and [RedisStore] share one contract, proven by
// one test suite.
type Store interface {
	// Load returns the session of id and slides its idle deadline, in one step. It returns
	// ErrNotFound for a session that does not exist or has expired (idle or absolute); an
	// expired one is deleted.
	Load(ctx context.Context, id string) (Record, error)
	// Commit applies c: creates, changes, renews or destroys one session. Changing or renewing
	// a session that no longer exists, or whose absolute deadline has passed, returns
	// ErrNotFound and writes nothing (an expired session is deleted, never written again). The
	// Record returned has only the deadlines (Deadline and Expires).
	Commit(ctx context.Context, c *Change) (Record, error)
	// User lists the live sessions of a user through a per-user index and, with q.Destroy,
	// deletes them (only those of q.Handles, when given), atomically: O(sessions of that user),
	// never a scan. It returns the sessions listed, or with q.Destroy, those deleted.
	User(ctx context.Context, q UserQuery) ([]Info, error)
}

// UserQuery selects the sessions of a user for [Store.User].
type UserQuery struct {
	User    string
	Destroy bool     // delete the sessions selected
	Handles []string // with Destroy, only these (Info.Handle); all when empty
}

// Record is a session as stored.
type Record struct {
	Values   map[string][]byte // encoded values by key
	User     string            // the user the session belongs to; "" when anonymous
	Created  time.Time
	Deadline time.Time // absolute: the session ends then, used or not
	Expires  time.Time // idle: the session ends then unless used before
}

// Change is what a request did to its session, for [Store.Commit].
type Change struct {
	ID      string // the session's ID as loaded; for a new session, its new ID
	Create  bool   // a session not stored yet
	Destroy bool   // delete the session
	// NewID, when set, renews the session: its data moves to NewID and ID stops working, at
	// once. It shares ID's first 4 characters.
	NewID string
	Set   map[string][]byte // values written
	Del   []string          // values removed
	// User is the user the session belongs to ("" when anonymous): for Create, the user it is
	// created for; otherwise the one it was loaded with. A user's sessions are listed in the
	// user's index, and their IDs start with the user's tag (see userTag), which places them
	// with the index. A session never changes users: logging in creates a new session.
	User string
	// Idle is the idle timeout, Lifetime the absolute one (used at creation).
	Idle, Lifetime time.Duration
}

// Info describes one session of a user, for listings.
type Info struct {
	// Handle identifies the session without being its ID (it cannot open the session): the
	// digest stores keep.
	Handle   string
	Created  time.Time
	Deadline time.Time
	Expires  time.Time
}

// Errors returned by stores and the Manager.
var (
	// ErrNotFound reports a session that does not exist or has expired.
	ErrNotFound = errors.New("session: not found")
	// ErrUnavailable reports a store that failed or did not answer in time; it wraps the cause.
	ErrUnavailable = errors.New("session: store unavailable")
	// ErrTooLarge reports session data over Config.MaxSize.
	ErrTooLarge = errors.New("session: data too large")
	// ErrCommitted reports a change made after the response's headers were written: the session
	// was saved with them, so the change could not be.
	ErrCommitted = errors.New("session: changed after the response started")
	// ErrNoSession reports a call on the session of a request that did not go through the
	// Manager's middleware.
	ErrNoSession = errors.New("session: no session in this context")
	// ErrKind reports a value read as another kind than it was put (Session.Get).
	ErrKind = errors.New("session: value of another kind")
	// ErrInvalidConfig reports a Config or store configuration that cannot work.
	ErrInvalidConfig = errors.New("session: invalid config")
)

// deadlineOf is when a session used at now expires: its idle deadline, capped by its absolute
// one.
func deadlineOf(now, abs time.Time, idle time.Duration) time.Time {
	if e := now.Add(idle); e.Before(abs) {
		return e
	}
	return abs
}
