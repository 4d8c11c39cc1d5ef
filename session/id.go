package session

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// A session ID is a 4-character tag and 43 characters of 256 random bits, all base64url: 47
// characters in the cookie. The tag places a session in a Redis Cluster slot; a renewed ID keeps
// it, so that one script can move the session's data to the new ID atomically. It is random
// too, but not secret: the 256 bits are what nobody can guess.
const (
	tagLen = 4
	idLen  = tagLen + 43
)

// newID returns a new session ID, with a new tag unless tag is given (a renewal).
func newID(tag string) string {
	var b [3 + 32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics rather than return an error)
	raw := base64.RawURLEncoding.EncodeToString(b[:])
	if tag == "" {
		return raw[:idLen]
	}
	return tag + raw[tagLen:idLen]
}

// validID reports whether s has the shape of a session ID. Anything else from a cookie is
// ignored before it reaches a store.
func validID(s string) bool {
	if len(s) != idLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// userTag is the tag of every session of user, so that a user's sessions and their index share
// a Redis Cluster slot and can be listed or ended in one atomic script.
func userTag(user string) string {
	sum := sha256.Sum256([]byte("user:" + user))
	return base64.RawURLEncoding.EncodeToString(sum[:3]) // 3 bytes: 4 characters
}

// appendDigest appends the base64url SHA-256 of id.
func appendDigest(dst []byte, id string) []byte {
	sum := sha256.Sum256([]byte(id))
	return base64.RawURLEncoding.AppendEncode(dst, sum[:])
}

// digest is what stores keep instead of the ID: a leaked store (a dump, MONITOR) gives no
// usable session. It keeps the tag in front so that the Redis key can use it as its hash tag.
func digest(id string) (tag, hash string) {
	sum := sha256.Sum256([]byte(id))
	return id[:tagLen], base64.RawURLEncoding.EncodeToString(sum[:])
}
