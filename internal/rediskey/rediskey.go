// Package rediskey builds the Redis keys of every outgrow component, so that they all place
// keys in Cluster slots the same way.
//
// A key is prefix + "{" + entity + "}" + suffix. Redis Cluster hashes only the part between the
// first "{" and the next "}", so every key of one entity (an IP, a user, a session) shares a slot
// and one script may touch them all, while different entities spread over the cluster. A constant
// tag would put every key in one slot. Braces and "%" in the entity are percent-escaped, so an
// entity can neither end the tag early nor make it empty (the empty entity is written "%"), and distinct entities stay distinct.
package rediskey

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"unsafe"
)

// ErrBadPrefix reports a prefix that would break hash tags.
var ErrBadPrefix = errors.New("rediskey: prefix must not contain '{' or '}'")

// CheckPrefix validates a component's configured prefix.
func CheckPrefix(prefix string) error {
	if strings.ContainsAny(prefix, "{}") {
		return ErrBadPrefix
	}
	return nil
}

// Prefix returns a component's configured prefix, def when it is empty, after CheckPrefix.
func Prefix(prefix, def string) (string, error) {
	if prefix == "" {
		return def, nil
	}
	return prefix, CheckPrefix(prefix)
}

// Append appends the key prefix{entity}suffix to dst.
func Append(dst []byte, prefix, entity, suffix string) []byte {
	dst = append(dst, prefix...)
	dst = append(dst, '{')
	if entity == "" {
		// An empty tag would hash the whole key, splitting one entity over several slots. A
		// lone "%" never comes out of escaping, so it cannot collide with another entity.
		dst = append(dst, '%')
	}
	for i := 0; i < len(entity); i++ {
		switch c := entity[i]; c {
		case '{', '}', '%':
			dst = append(dst, '%', "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
		default:
			dst = append(dst, c)
		}
	}
	dst = append(dst, '}')
	return append(dst, suffix...)
}

// Key returns prefix{entity}suffix.
func Key(prefix, entity, suffix string) string {
	b := Append(make([]byte, 0, len(prefix)+len(entity)+len(suffix)+8), prefix, entity, suffix)
	return unsafe.String(unsafe.SliceData(b), len(b)) // b is never written again: one allocation, not two
}

// Slot returns the Redis Cluster slot of key: CRC16 (XMODEM) of its hash tag, or of the whole
// key when it has none, modulo 16384. Clients group keys by slot to send one multi-key command
// per slot.
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

// DigestLen is the length of a [Digest].
const DigestLen = 22

// Digest returns a keyed hash of s (HMAC-SHA256 under secret, its first 128 bits in base64url,
// 22 characters), for secrets and personal data that name a key (API keys, user IDs): the key
// name identifies the entity without containing it, and without the secret a guess cannot be
// checked against it.
func Digest(secret []byte, s string) string {
	var buf [DigestLen]byte
	return string(AppendDigest(buf[:0], secret, s))
}

// AppendDigest appends [Digest] of s to dst. It is HMAC-SHA256 (RFC 2104) written out over
// sha256.Sum256, so that short inputs cost no allocation.
func AppendDigest(dst, secret []byte, s string) []byte {
	const block = 64
	var key [block]byte
	if len(secret) > block {
		sum := sha256.Sum256(secret)
		copy(key[:], sum[:])
	} else {
		copy(key[:], secret)
	}
	var buf [block + 192]byte
	msg := buf[:0]
	if block+len(s) > len(buf) {
		msg = make([]byte, 0, block+len(s))
	}
	for _, k := range key {
		msg = append(msg, k^0x36)
	}
	inner := sha256.Sum256(append(msg, s...))
	var outer [block + sha256.Size]byte
	for i, k := range key {
		outer[i] = k ^ 0x5c
	}
	copy(outer[block:], inner[:])
	sum := sha256.Sum256(outer[:])
	return base64.RawURLEncoding.AppendEncode(dst, sum[:16])
}
