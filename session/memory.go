package session

import (
	"context"
	"crypto/rand"
	"maps"
	"slices"
	"sync"
	"time"
)

// MemoryConfig configures a [MemoryStore]. It has no fields yet: the zero value is the
// configuration, and the type lets options come without breaking callers.
type MemoryConfig struct{}

// MemoryStore is a [Store] in this process, with the semantics of [RedisStore]: digests at
// rest, idle and absolute deadlines checked on every load and commit, field-level changes, atomic
// renewal and a per-user index. Use it for tests and for a single instance; sessions in it do
// not survive a restart and are not shared between instances. Its secret for users' tags is
// random, made by [NewMemoryStore]: one process needs no other.
//
// The zero value is not usable; create a MemoryStore with [NewMemoryStore]. It is safe for concurrent use
// and has no goroutine: expired sessions are removed as they are met and by a sweep of a shard
// every 1024 writes to it. Sessions are sharded by their ID's tag, like Redis Cluster slots, so
// that a user's sessions and index share a shard.
type MemoryStore struct {
	clock  func() time.Time // time.Now; tests move it
	secret []byte
	shards [32]memShard
}

var _ Store = (*MemoryStore)(nil)

type memShard struct {
	mu     sync.Mutex
	m      map[string]*memSession // by sessionKey("", id)
	users  map[string]map[string]struct{}
	writes int
	_      [64]byte // no false sharing between neighbouring shards' locks
}

type memSession struct {
	values       map[string][]byte
	user         string
	created, abs time.Time
	idle         time.Duration
	expires      time.Time
}

// NewMemoryStore returns an empty MemoryStore. Its error wraps ErrInvalidConfig and names the
// field at fault (MemoryConfig has no fields yet: it is always nil).
func NewMemoryStore(MemoryConfig) (*MemoryStore, error) {
	s := &MemoryStore{clock: time.Now, secret: make([]byte, 32)}
	_, _ = rand.Read(s.secret) // never fails (crypto/rand panics rather than return an error)
	for i := range s.shards {
		s.shards[i].m = make(map[string]*memSession)
		s.shards[i].users = make(map[string]map[string]struct{})
	}
	return s, nil
}

// shard returns the shard of a tag.
func (s *MemoryStore) shard(tag string) *memShard {
	h := uint32(2166136261)
	for i := 0; i < len(tag); i++ {
		h = (h ^ uint32(tag[i])) * 16777619
	}
	return &s.shards[h%uint32(len(s.shards))]
}

// count returns the number of sessions stored, expired ones included, for tests.
func (s *MemoryStore) count() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// live returns the session at key if it has not expired at now, deleting it if it has. s.mu is
// held.
func (s *memShard) live(key string, now time.Time) *memSession {
	e := s.m[key]
	if e == nil {
		return nil
	}
	if !now.Before(e.expires) || !now.Before(e.abs) {
		s.remove(key, e)
		return nil
	}
	return e
}

func (s *memShard) remove(key string, e *memSession) {
	delete(s.m, key)
	if e.user != "" {
		s.unindex(e.user, key)
	}
}

func (s *memShard) unindex(user, key string) {
	if set := s.users[user]; set != nil {
		delete(set, key)
		if len(set) == 0 {
			delete(s.users, user)
		}
	}
}

func (e *memSession) record() Record {
	vals := make(map[string][]byte, len(e.values))
	for k, v := range e.values {
		vals[k] = append([]byte(nil), v...)
	}
	return Record{Values: vals, User: e.user, Created: e.created, Deadline: e.abs, Expires: e.expires}
}

// Load implements [Store].
func (s *MemoryStore) Load(_ context.Context, id string) (Record, error) {
	if !validID(id) {
		return Record{}, ErrNotFound
	}
	sh := s.shard(id[:tagLen])
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := s.clock()
	e := sh.live(sessionKey("", id), now)
	if e == nil {
		return Record{}, ErrNotFound
	}
	e.expires = deadlineOf(now, e.abs, e.idle)
	r := e.record()
	r.ID = id
	return r, nil
}

// Commit implements [Store].
func (s *MemoryStore) Commit(_ context.Context, c *Change) (Record, error) {
	if err := checkChange(c); err != nil {
		return Record{}, err
	}
	user := ""
	if c.Create && c.User != "" {
		user = userDigest(s.secret, c.User) // only a creation needs it: the index is by user ID
	}
	p := place(c, user)
	// A renewed ID keeps the tag, a user's sessions share the user's: one shard holds it all.
	sh := s.shard(p.id[:tagLen])
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := s.clock()
	sh.sweep(now)
	key := sessionKey("", p.id)
	e := sh.live(key, now)
	switch {
	case c.Destroy:
		if e != nil {
			sh.remove(key, e)
		}
		return Record{}, nil
	case c.Create:
		if e != nil {
			sh.remove(key, e)
		}
		e = &memSession{values: make(map[string][]byte), user: c.User, created: now, abs: now.Add(c.Lifetime)}
		sh.m[key] = e
	case e == nil:
		return Record{}, ErrNotFound
	}
	e.idle = c.Idle
	for k, v := range c.Set {
		e.values[k] = append([]byte(nil), v...)
	}
	for _, k := range c.Del {
		delete(e.values, k)
	}
	if p.newID != "" {
		sh.remove(key, e)
		key = sessionKey("", p.newID)
		sh.m[key] = e
	}
	e.expires = deadlineOf(now, e.abs, e.idle)
	if !now.Before(e.expires) {
		sh.remove(key, e)
		return Record{}, ErrNotFound
	}
	if e.user != "" {
		set := sh.users[e.user]
		if set == nil {
			set = make(map[string]struct{})
			sh.users[e.user] = set
		}
		set[key] = struct{}{}
	}
	return Record{ID: p.current(), Deadline: e.abs, Expires: e.expires}, nil
}

// User implements [Store].
func (s *MemoryStore) User(_ context.Context, q UserQuery) ([]Info, error) {
	user := q.User
	sh := s.shard(userDigest(s.secret, user)[:tagLen])
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := s.clock()
	var out []Info
	for _, key := range slices.Sorted(maps.Keys(sh.users[user])) {
		e := sh.live(key, now)
		if e == nil {
			continue
		}
		hash := keyHandle(key)
		if q.Destroy && len(q.Handles) > 0 && !slices.Contains(q.Handles, hash) {
			continue
		}
		out = append(out, Info{Handle: hash, Created: e.created, Deadline: e.abs, Expires: e.expires})
		if q.Destroy {
			sh.remove(key, e)
		}
	}
	sortInfos(out)
	return out, nil
}

// sweep removes expired sessions every 1024 writes. s.mu is held.
func (s *memShard) sweep(now time.Time) {
	if s.writes++; s.writes < 1024 {
		return
	}
	s.writes = 0
	for key := range s.m {
		s.live(key, now)
	}
}
