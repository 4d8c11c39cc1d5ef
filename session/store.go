package session

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/outgrow/outgrow/internal/rediskey"
)

// Store keeps sessions for a [Manager]. It is given session IDs and keeps only their digests.
// Implementations must be safe for concurrent use; [MemoryStore] and [RedisStore] share one
// contract, proven by one test suite.
//
// A store chooses where a session lives, through the first 4 characters of its ID (its tag): it
// keeps the random tag of an anonymous session's new ID, gives every session of a user the
// user's tag (a keyed hash of the user ID under the store's secret, so that a cookie cannot be
// tied to a user ID without it), and gives a renewed ID the tag of the ID it replaces.
type Store interface {
	// Load returns the session of id and slides its idle deadline, in one step. It returns
	// ErrNotFound for a session that does not exist or has expired (idle or absolute); an
	// expired one is deleted.
	Load(ctx context.Context, id string) (Record, error)
	// Commit applies c: creates, changes, renews or destroys one session. Changing or renewing
	// a session that no longer exists, or whose absolute deadline has passed, returns
	// ErrNotFound and writes nothing (an expired session is deleted, never written again). The
	// Record returned has only the session's ID (after a creation or a renewal: the new ID, with
	// the tag the store chose) and deadlines (Deadline and Expires).
	Commit(ctx context.Context, c *Change) (Record, error)
	// User lists the live sessions of a user through a per-user index and, with q.Destroy,
	// deletes them (only those of q.Handles, when given), atomically: O(sessions of that user),
	// never a scan. It returns the sessions listed, or with q.Destroy, those deleted.
	User(ctx context.Context, q UserQuery) ([]Info, error)
}

// UserQuery selects the sessions of a user for [Store.User]. It is plain data; its zero value
// lists the sessions of the user "".
type UserQuery struct {
	User    string   // whose sessions
	Destroy bool     // delete the sessions selected
	Handles []string // with Destroy, only these (Info.Handle); all when empty
}

// Record is a session as stored, returned by a [Store]; plain data, owned by the caller.
type Record struct {
	ID       string            // the session's ID
	Values   map[string][]byte // encoded values by key
	User     string            // the user the session belongs to; "" when anonymous
	Created  time.Time         // when the session was stored first
	Deadline time.Time         // absolute: the session ends then, used or not
	Expires  time.Time         // idle: the session ends then unless used before
}

// Change is what a request did to its session, for [Store.Commit]; plain data, which a store
// reads and never keeps. Its zero value is not a valid change.
type Change struct {
	// ID is the session's ID as loaded; with Create, a new random ID whose tag the store
	// replaces when User is set.
	ID      string
	Create  bool // a session not stored yet
	Destroy bool // delete the session
	// NewID, when set, renews the session: its data moves to NewID, with ID's tag, and ID stops
	// working at once.
	NewID string
	Set   map[string][]byte // values written
	Del   []string          // values removed
	// User is the user the session belongs to ("" when anonymous): with Create, the user it is
	// created for; otherwise the one it was loaded with. A user's sessions are listed in the
	// user's index. A session never changes users: logging in creates a new session.
	User string
	// Idle is the idle timeout, Lifetime the absolute one (used at creation).
	Idle, Lifetime time.Duration
}

// Info describes one session of a user, for listings; plain data.
type Info struct {
	// Handle identifies the session without being its ID (it cannot open the session): the
	// SHA-256 that stores keep, as [Session.Handle] gives it.
	Handle   string
	Created  time.Time // when the session was stored first
	Deadline time.Time // absolute: the session ends then, used or not
	Expires  time.Time // idle: the session ends then unless used before
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
	// ErrInvalidConfig is wrapped by the error of a constructor given a configuration that
	// cannot work, of a Store given a Change that cannot work and of Session.Login given no
	// user; the message names the field.
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

// checkChange validates a Change for any store.
func checkChange(c *Change) error {
	switch {
	case c == nil:
		return fmt.Errorf("%w: nil Change", ErrInvalidConfig)
	case !validID(c.ID):
		return fmt.Errorf("%w: Change.ID is not a session ID", ErrInvalidConfig)
	case c.NewID != "" && !validID(c.NewID):
		return fmt.Errorf("%w: Change.NewID is not a session ID", ErrInvalidConfig)
	case !c.Destroy && c.Idle <= 0:
		return fmt.Errorf("%w: Change.Idle %v must be positive", ErrInvalidConfig, c.Idle)
	case c.Create && !c.Destroy && c.Lifetime <= 0:
		return fmt.Errorf("%w: Change.Lifetime %v must be positive", ErrInvalidConfig, c.Lifetime)
	}
	return nil
}

// userDigest is the keyed hash of user under a store's secret: the name of the user's index,
// and in its first 4 characters the tag of the user's session IDs. Without the secret, nobody
// can tell whose a tag or an index is, nor test a guess.
func userDigest(secret []byte, user string) string { return rediskey.Digest(secret, user) }

// sessionKey is prefix{tag}:handle, the key of the session of id in either store (a
// MemoryStore's prefix is empty), built in one allocation.
func sessionKey(prefix, id string) string {
	var buf [128]byte
	return string(appendDigest(rediskey.Append(buf[:0], prefix, id[:tagLen], ":"), id))
}

// keyHandle returns the handle that ends a session's key.
func keyHandle(key string) string { return key[strings.LastIndexByte(key, ':')+1:] }

// placement is where a Change puts its session: the ID it is stored under (with the tag the
// store chose) and the renewed ID if any.
type placement struct {
	id, newID string
}

// place decides the IDs of c's session. user is the keyed digest of c.User (see userDigest);
// only a creation for a user needs it, to give the session the user's tag.
func place(c *Change, user string) placement {
	p := placement{id: c.ID}
	if c.Create && user != "" {
		p.id = withTag(c.ID, user[:tagLen])
	}
	if c.NewID != "" {
		p.newID = withTag(c.NewID, p.id[:tagLen])
	}
	return p
}

// current is the session's ID once the change is made.
func (p placement) current() string {
	if p.newID != "" {
		return p.newID
	}
	return p.id
}

// sortInfos orders a listing by creation, then handle.
func sortInfos(infos []Info) {
	sort.Slice(infos, func(i, j int) bool {
		if !infos[i].Created.Equal(infos[j].Created) {
			return infos[i].Created.Before(infos[j].Created)
		}
		return infos[i].Handle < infos[j].Handle
	})
}
