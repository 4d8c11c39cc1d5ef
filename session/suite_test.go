package session

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

// backend is a store under test and a way to move its clock.
type backend struct {
	redistest.Backend
	store   Store
	advance func(time.Duration)
}

func newBackend(t *testing.T, be redistest.Backend) *backend {
	t.Helper()
	b := &backend{Backend: be}
	switch {
	case !be.IsRedis():
		m := newMemoryStore(t)
		now := time.Now()
		m.clock = func() time.Time { return now }
		b.store = m
		b.advance = func(d time.Duration) { now = now.Add(d) }
	default:
		// Subtests share a backend: each gets its own prefix under the backend's.
		prefix := be.Prefix + strings.NewReplacer("{", "(", "}", ")").Replace(t.Name()) + ":"
		s, err := NewRedisStore(be.Client, RedisConfig{Prefix: prefix, Timeout: 5 * time.Second})
		require.NoError(t, err)
		b.store = s
		b.advance = time.Sleep
		if be.Mini != nil {
			now := time.Now()
			be.Mini.SetTime(now)
			b.advance = func(d time.Duration) {
				now = now.Add(d)
				be.Mini.SetTime(now)
				be.Mini.FastForward(d)
			}
		}
	}
	return b
}

func newMemoryStore(tb testing.TB) *MemoryStore {
	tb.Helper()
	st, err := NewMemoryStore(MemoryConfig{})
	require.NoError(tb, err)
	return st
}

// create stores a new session and returns its ID.
func create(t *testing.T, st Store, values map[string][]byte, user string) string {
	t.Helper()
	id := newID()
	rec, err := st.Commit(context.Background(), &Change{
		ID: id, Create: true, Set: values, User: user,
		Idle: time.Minute, Lifetime: time.Hour,
	})
	require.NoError(t, err)
	require.Equal(t, id[tagLen:], rec.ID[tagLen:], "the store chooses the tag only")
	if user == "" {
		require.Equal(t, id, rec.ID, "an anonymous session keeps its random tag")
	}
	return rec.ID
}

func TestStoreSuite(t *testing.T) {
	ctx := context.Background()
	redistest.Each(t, func(t *testing.T, be redistest.Backend) {
		t.Run("CreateLoad", func(t *testing.T) {
			st := newBackend(t, be).store
			id := create(t, st, map[string][]byte{"a": []byte("sx"), "bin": {0, 1, 2}}, "")
			r, err := st.Load(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, id, r.ID)
			assert.Equal(t, map[string][]byte{"a": []byte("sx"), "bin": {0, 1, 2}}, r.Values)
			assert.WithinDuration(t, time.Now().Add(time.Hour), r.Deadline, 5*time.Second)
			assert.WithinDuration(t, time.Now().Add(time.Minute), r.Expires, 5*time.Second)
			assert.WithinDuration(t, time.Now(), r.Created, 5*time.Second)

			_, err = st.Load(ctx, newID())
			assert.ErrorIs(t, err, ErrNotFound)
			_, err = st.Load(ctx, "not an id")
			assert.ErrorIs(t, err, ErrNotFound)
		})
		t.Run("FieldLevelChanges", func(t *testing.T) {
			st := newBackend(t, be).store
			id := create(t, st, map[string][]byte{"a": []byte("1"), "b": []byte("2")}, "")
			// Two requests that loaded the same session, each changing its own keys.
			_, err := st.Commit(ctx, &Change{ID: id, Set: map[string][]byte{"x": []byte("X")}, Del: []string{"a"}, Idle: time.Minute})
			require.NoError(t, err)
			_, err = st.Commit(ctx, &Change{ID: id, Set: map[string][]byte{"y": []byte("Y")}, Idle: time.Minute})
			require.NoError(t, err)
			r, err := st.Load(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, map[string][]byte{"b": []byte("2"), "x": []byte("X"), "y": []byte("Y")}, r.Values)
		})
		t.Run("ManyFields", func(t *testing.T) {
			st := newBackend(t, be).store
			id := create(t, st, nil, "")
			set := map[string][]byte{}
			for i := range 2500 {
				set[fmt.Sprint("k", i)] = []byte("v")
			}
			_, err := st.Commit(ctx, &Change{ID: id, Set: set, Idle: time.Minute})
			require.NoError(t, err)
			var del []string
			for i := range 2400 {
				del = append(del, fmt.Sprint("k", i))
			}
			_, err = st.Commit(ctx, &Change{ID: id, Del: del, Idle: time.Minute})
			require.NoError(t, err)
			r, err := st.Load(ctx, id)
			require.NoError(t, err)
			assert.Len(t, r.Values, 100)
		})
		t.Run("Renew", func(t *testing.T) {
			st := newBackend(t, be).store
			id := create(t, st, map[string][]byte{"a": []byte("1")}, "ada")
			rec, err := st.Commit(ctx, &Change{ID: id, NewID: newID(), Set: map[string][]byte{"b": []byte("2")}, User: "ada", Idle: time.Minute, Lifetime: time.Hour})
			require.NoError(t, err)
			nid := rec.ID
			assert.Equal(t, id[:tagLen], nid[:tagLen], "a renewed ID keeps the tag (and the slot)")
			assert.NotEqual(t, id, nid)
			_, err = st.Load(ctx, id)
			assert.ErrorIs(t, err, ErrNotFound, "the old ID stops working at once")
			r, err := st.Load(ctx, nid)
			require.NoError(t, err)
			assert.Equal(t, map[string][]byte{"a": []byte("1"), "b": []byte("2")}, r.Values)
			assert.Equal(t, "ada", r.User)
			infos, err := st.User(ctx, UserQuery{User: "ada"})
			require.NoError(t, err)
			require.Len(t, infos, 1, "the index follows the renewal")
			assert.Equal(t, handle(nid), infos[0].Handle)

			_, err = st.Commit(ctx, &Change{ID: id, NewID: newID(), User: "ada", Idle: time.Minute})
			assert.ErrorIs(t, err, ErrNotFound, "the old ID cannot be renewed again")
		})
		t.Run("Destroy", func(t *testing.T) {
			st := newBackend(t, be).store
			id := create(t, st, map[string][]byte{"a": []byte("1")}, "")
			_, err := st.Commit(ctx, &Change{ID: id, Destroy: true})
			require.NoError(t, err)
			_, err = st.Load(ctx, id)
			assert.ErrorIs(t, err, ErrNotFound)
			_, err = st.Commit(ctx, &Change{ID: id, Set: map[string][]byte{"a": []byte("2")}, Idle: time.Minute})
			assert.ErrorIs(t, err, ErrNotFound, "a destroyed session is never written again")
		})
		t.Run("IdleTimeoutSlides", func(t *testing.T) {
			b := newBackend(t, be)
			id := newID()
			// Wide margins: on a real Redis this runs on the wall clock of a busy machine.
			_, err := b.store.Commit(ctx, &Change{ID: id, Create: true, Set: map[string][]byte{"a": []byte("1")}, Idle: 1200 * time.Millisecond, Lifetime: time.Hour})
			require.NoError(t, err)
			for range 3 {
				b.advance(500 * time.Millisecond)
				_, err := b.store.Load(ctx, id)
				require.NoError(t, err, "each load slides the idle deadline")
			}
			b.advance(1500 * time.Millisecond)
			_, err = b.store.Load(ctx, id)
			assert.ErrorIs(t, err, ErrNotFound, "idle for longer than IdleTimeout")
		})
		t.Run("AbsoluteDeadline", func(t *testing.T) {
			b := newBackend(t, be)
			id := newID()
			_, err := b.store.Commit(ctx, &Change{ID: id, Create: true, Set: map[string][]byte{"a": []byte("1")}, Idle: time.Hour, Lifetime: time.Second})
			require.NoError(t, err)
			if be.IsRedis() {
				ttl := be.Client.PTTL(ctx, b.store.(*RedisStore).mustKey(id)).Val()
				assert.LessOrEqual(t, ttl, time.Second, "the key's TTL never passes the absolute deadline")
				assert.Positive(t, ttl)
			}
			r, err := b.store.Load(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, r.Deadline, r.Expires, "the idle deadline is capped by the absolute one")
			b.advance(1300 * time.Millisecond)
			_, err = b.store.Commit(ctx, &Change{ID: id, Set: map[string][]byte{"a": []byte("2")}, Idle: time.Hour})
			assert.ErrorIs(t, err, ErrNotFound, "a save after the deadline does not revive the session")
			_, err = b.store.Load(ctx, id)
			assert.ErrorIs(t, err, ErrNotFound)
			if be.IsRedis() {
				assert.Zero(t, be.Client.Exists(ctx, b.store.(*RedisStore).mustKey(id)).Val(), "no immortal key")
			}
		})
		t.Run("UserIndex", func(t *testing.T) {
			st := newBackend(t, be).store
			var ada []string
			for range 3 {
				ada = append(ada, create(t, st, map[string][]byte{"a": []byte("1")}, "ada"))
			}
			bob := create(t, st, nil, "bob")
			anon := create(t, st, map[string][]byte{"a": []byte("1")}, "")
			_, err := st.Commit(ctx, &Change{ID: ada[2], Destroy: true, User: "ada"})
			require.NoError(t, err)

			infos, err := st.User(ctx, UserQuery{User: "ada"})
			require.NoError(t, err)
			assert.Len(t, infos, 2, "live sessions only")
			for _, in := range infos {
				assert.NotContains(t, in.Handle, ada[0], "a handle is not the ID")
				assert.NotContains(t, in.Handle, ada[1])
			}
			infos, err = st.User(ctx, UserQuery{User: "ada", Destroy: true, Handles: []string{infos[0].Handle, "nope"}})
			require.NoError(t, err)
			assert.Len(t, infos, 1, "one session revoked by its handle")
			infos, err = st.User(ctx, UserQuery{User: "ada"})
			require.NoError(t, err)
			assert.Len(t, infos, 1)
			infos, err = st.User(ctx, UserQuery{User: "ada", Destroy: true})
			require.NoError(t, err)
			assert.Len(t, infos, 1, "and the rest all at once")
			for _, id := range ada {
				_, err := st.Load(ctx, id)
				assert.ErrorIs(t, err, ErrNotFound)
			}
			_, err = st.Load(ctx, bob)
			assert.NoError(t, err, "other users keep theirs")
			_, err = st.Load(ctx, anon)
			assert.NoError(t, err)
			infos, err = st.User(ctx, UserQuery{User: "ada"})
			require.NoError(t, err)
			assert.Empty(t, infos)
		})
	})
}

func (s *RedisStore) mustKey(id string) string { return s.sessionKey(id) }

// TestRedisKeepsOnlyDigests: nothing in Redis contains a session ID.
func TestRedisKeepsOnlyDigests(t *testing.T) {
	ctx := context.Background()
	for _, k := range redistest.Kinds()[1:] {
		t.Run(string(k), func(t *testing.T) {
			be := redistest.Open(t, k)
			st := newBackend(t, be).store
			id := create(t, st, map[string][]byte{"a": []byte("1")}, "ada")
			keys, err := scanAll(ctx, be)
			require.NoError(t, err)
			require.NotEmpty(t, keys)
			for _, key := range keys {
				assert.NotContains(t, key, id[tagLen:])
				if be.Client.Type(ctx, key).Val() == "hash" {
					for f, v := range be.Client.HGetAll(ctx, key).Val() {
						assert.NotContains(t, f+v, id[tagLen:])
					}
				} else {
					for _, m := range be.Client.ZRange(ctx, key, 0, -1).Val() {
						assert.NotContains(t, m, id[tagLen:])
					}
				}
			}
		})
	}
}

func scanAll(ctx context.Context, be redistest.Backend) ([]string, error) {
	var mu sync.Mutex
	var keys []string
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, be.Prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			keys = append(keys, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	if cc, ok := be.Client.(*redis.ClusterClient); ok {
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
		return keys, err
	}
	return keys, scan(ctx, be.Client)
}
