package session

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

// A user ID that no base64url digest can contain by chance ('.' and '@' are not in its
// alphabet), so that finding it in a key name means it was written there.
const personalUser = "ada.lovelace@example.com"

// unkeyedTag is how session IDs were tagged before they were keyed: anyone could compute the
// tag of a candidate user ID and match it against a logged cookie.
func unkeyedTag(user string) string {
	sum := sha256.Sum256([]byte("user:" + user))
	return base64.RawURLEncoding.EncodeToString(sum[:3])
}

// loginCookie logs user in through m and returns the session cookie's value.
func loginCookie(t *testing.T, m *Manager, user string) string {
	t.Helper()
	c := &client{t: t, h: m.Middleware(app())}
	rec := c.do("POST", "/login?user="+user)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.NotNil(t, c.cookie)
	return c.cookie.Value
}

// TestUserTagIsKeyed: the tag that starts every session ID of a logged-in user is a keyed hash
// of the user. One store gives all of a user's sessions one tag (they share a slot with the
// user's index); two stores with their own secrets give the same user different tags; and no
// tag is the unkeyed hash anyone can compute from a candidate user ID.
func TestUserTagIsKeyed(t *testing.T) {
	redistest.Each(t, func(t *testing.T, be redistest.Backend) {
		// Two stores of their own: two memory stores, or two prefixes on one Redis (each with
		// the random secret it keeps there).
		var ms [2]*Manager
		for i := range ms {
			var st Store = newMemoryStore(t)
			if be.IsRedis() {
				rs, err := NewRedisStore(be.Client, RedisConfig{Prefix: fmt.Sprintf("%s%d:", be.Prefix, i)})
				require.NoError(t, err)
				st = rs
			}
			ms[i] = newManager(t, st, Config{})
		}
		a, b := ms[0], ms[1]
		for _, user := range []string{"ada", "bob", personalUser} {
			first, second := loginCookie(t, a, user), loginCookie(t, a, user)
			assert.Equal(t, first[:tagLen], second[:tagLen], "%s: one store, one tag per user", user)
			other := loginCookie(t, b, user)
			assert.NotEqual(t, first[:tagLen], other[:tagLen], "%s: another secret, another tag", user)
			assert.NotEqual(t, unkeyedTag(user), first[:tagLen], "%s: not the unkeyed hash", user)
			assert.NotEqual(t, unkeyedTag(user), other[:tagLen], "%s: not the unkeyed hash", user)
		}
	})
}

// TestConfiguredSecret: stores configured with one Secret tag a user alike (whatever their
// prefix), and with another Secret differently.
func TestConfiguredSecret(t *testing.T) {
	rdb := redistest.New(t)
	prefix := redistest.Prefix(t, rdb)
	tag := func(name string, secret string) string {
		st, err := NewRedisStore(rdb, RedisConfig{Prefix: prefix + name + ":", Secret: []byte(secret)})
		require.NoError(t, err)
		return loginCookie(t, newManager(t, st, Config{}), personalUser)[:tagLen]
	}
	assert.Equal(t, tag("a", "one secret"), tag("b", "one secret"))
	assert.NotEqual(t, tag("c", "one secret"), tag("d", "another secret"))
	assert.Equal(t, userDigest([]byte("one secret"), personalUser)[:tagLen], tag("e", "one secret"))
}

// TestCookieName: the name the Manager reports is the one its Set-Cookie carries.
func TestCookieName(t *testing.T) {
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "session"},
		{Config{Insecure: true}, "session"},
		{Config{HostPrefix: true}, "__Host-session"},
		{Config{CookieName: "sid"}, "sid"},
		{Config{CookieName: "sid", Insecure: true}, "sid"},
		{Config{CookieName: "sid", HostPrefix: true}, "__Host-sid"},
	} {
		m := newManager(t, newMemoryStore(t), tt.cfg)
		assert.Equal(t, tt.want, m.CookieName(), "%+v", tt.cfg)
		c := &client{t: t, h: m.Middleware(app())}
		rec := c.do("POST", "/put?k=a&v=1")
		cookies := rec.Result().Cookies()
		require.Len(t, cookies, 1)
		assert.Equal(t, m.CookieName(), cookies[0].Name, "%+v", tt.cfg)
		assert.Equal(t, !tt.cfg.Insecure, cookies[0].Secure, "%+v", tt.cfg)
	}
}

// TestRedisKeyNamesHoldNoIDs: after logins, writes, a renewal and a listing, no key name under
// the store's prefix contains a user ID or a session ID (or the random part of one).
func TestRedisKeyNamesHoldNoIDs(t *testing.T) {
	ctx := context.Background()
	for _, k := range redistest.Kinds()[1:] {
		t.Run(string(k), func(t *testing.T) {
			be := redistest.Open(t, k)
			m := newManager(t, newBackend(t, be).store, Config{})
			c := &client{t: t, h: m.Middleware(appWith("POST /renew", func(w http.ResponseWriter, r *http.Request) {
				_ = FromContext(r.Context()).Renew()
			}))}
			c.do("POST", "/put?k=a&v=1")
			anonymous := c.cookie.Value
			c.do("POST", "/login?user="+personalUser)
			loggedIn := c.cookie.Value
			c.do("POST", "/put?k=b&v=2")
			c.do("POST", "/renew")
			renewed := c.cookie.Value
			require.NotEqual(t, loggedIn, renewed)
			other := loginCookie(t, m, personalUser)
			infos, err := m.List(ctx, personalUser)
			require.NoError(t, err)
			require.Len(t, infos, 2)

			keys, err := scanAll(ctx, be)
			require.NoError(t, err)
			require.NotEmpty(t, keys)
			for _, key := range keys {
				assert.NotContains(t, key, personalUser, "a user ID in a key name")
				for _, id := range []string{anonymous, loggedIn, renewed, other} {
					assert.NotContains(t, key, id[tagLen:], "a session ID in a key name")
				}
			}
		})
	}
}

// TestInstancesShareUsersWithoutSecret: two instances, each with its own client of one Redis
// (miniredis, Redis, Cluster) and no Secret configured, log the same user in at the same moment
// (racing to create the shared secret); B renews the session A created; either one lists both
// sessions, and B signs the user out everywhere.
func TestInstancesShareUsersWithoutSecret(t *testing.T) {
	ctx := context.Background()
	for _, k := range redistest.Kinds()[1:] {
		t.Run(string(k), func(t *testing.T) {
			be := redistest.Open(t, k)
			ms := instances(t, be, 2, Config{})
			var cookies [2]string
			var wg sync.WaitGroup
			for i := range ms {
				wg.Go(func() { cookies[i] = loginCookie(t, ms[i], personalUser) })
			}
			wg.Wait()
			assert.Equal(t, cookies[0][:tagLen], cookies[1][:tagLen], "one secret shared through Redis")

			// B renews the session A logged in.
			onB := &client{t: t, h: ms[1].Middleware(appWith("POST /renew", func(w http.ResponseWriter, r *http.Request) {
				_ = FromContext(r.Context()).Renew()
			})), cookie: &http.Cookie{Name: "session", Value: cookies[0]}}
			require.Equal(t, http.StatusOK, onB.do("POST", "/renew").Code)
			renewed := onB.cookie.Value
			require.NotEqual(t, cookies[0], renewed)
			assert.Equal(t, cookies[0][:tagLen], renewed[:tagLen], "a renewal keeps the user's tag")
			want := []string{handle(renewed), handle(cookies[1])}
			for i, m := range ms {
				infos, err := m.List(ctx, personalUser)
				require.NoError(t, err)
				var got []string
				for _, in := range infos {
					got = append(got, in.Handle)
				}
				assert.ElementsMatch(t, want, got, "instance %d lists the renewed session and the other", i)
			}
			cookies[0] = renewed

			n, err := ms[1].DestroyAll(ctx, personalUser)
			require.NoError(t, err)
			assert.Equal(t, 2, n)
			for i, m := range ms {
				c := &client{t: t, h: m.Middleware(app()), cookie: &http.Cookie{Name: "session", Value: cookies[i]}}
				assert.Equal(t, "|0|", c.do("GET", "/get?k=a").Body.String(), "signed out everywhere")
			}
			keys, err := scanAll(ctx, be)
			require.NoError(t, err)
			for _, key := range keys {
				assert.True(t, strings.HasSuffix(key, "secret"), "only the shared secret is left: %s", key)
			}
		})
	}
}
