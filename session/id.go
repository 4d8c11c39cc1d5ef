package session

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// A session ID is 47 base64url characters: a 4-character tag, then 43 characters that carry 256
// random bits. The tag places a session in a Redis Cluster slot, and stores choose it (see
// [Change]): random for an anonymous session, a keyed hash of the user for a user's sessions, so
// that they share a slot with the user's index, and kept by a renewal, so that one script can
// move the session's data atomically. It is not secret: the 256 bits are what nobody can guess.
const (
	tagLen = 4
	idLen  = tagLen + 43
)

// newID returns a new session ID with a random tag.
func newID() string {
	var b [3 + 32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics rather than return an error)
	return base64.RawURLEncoding.EncodeToString(b[:])[:idLen]
}

// withTag returns id with its tag replaced by tag.
func withTag(id, tag string) string {
	if id[:tagLen] == tag {
		return id
	}
	return tag + id[tagLen:]
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

// appendDigest appends the base64url SHA-256 of id.
func appendDigest(dst []byte, id string) []byte {
	var buf [idLen]byte // on the stack: []byte(id) would allocate (over 32 bytes)
	sum := sha256.Sum256(append(buf[:0], id...))
	return base64.RawURLEncoding.AppendEncode(dst, sum[:])
}

// handle is what stores keep instead of the ID, and what listings show: the base64url SHA-256
// of the ID, so that a leaked store (a dump, MONITOR) gives no usable session. The ID's 256
// random bits make a keyed hash unnecessary: no guess can be checked against it.
func handle(id string) string {
	var buf [43]byte
	return string(appendDigest(buf[:0], id))
}
