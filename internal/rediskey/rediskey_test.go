package rediskey

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestKey(t *testing.T) {
	assert.Equal(t, "rl:{1.2.3.4}:login", Key("rl:", "1.2.3.4", ":login"))
	assert.Equal(t, "rl:{a%7Bb%7Dc%25}:x", Key("rl:", "a{b}c%", ":x"))
	assert.Equal(t, "{%}", Key("", "", ""))
}

func TestCheckPrefix(t *testing.T) {
	assert.NoError(t, CheckPrefix("ratelimit:"))
	assert.ErrorIs(t, CheckPrefix("a{b"), ErrBadPrefix)
	assert.ErrorIs(t, CheckPrefix("a}b"), ErrBadPrefix)
}

// FuzzSameSlot: every key of one entity lands in one Cluster slot, and distinct entities give
// distinct keys, whatever bytes the entity holds.
func FuzzSameSlot(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "}", "{", "{}", "a}b{c", "%7D", ""} {
		f.Add(s, "x")
	}
	f.Fuzz(func(t *testing.T, entity, other string) {
		a, b := Key("p:", entity, ":login"), Key("p:", entity, ":global-and-more")
		if slot(a) != slot(b) {
			t.Fatalf("%q and %q are in slots %d and %d", a, b, slot(a), slot(b))
		}
		if entity != other && Key("p:", entity, ":x") == Key("p:", other, ":x") {
			t.Fatalf("entities %q and %q share a key", entity, other)
		}
	})
}

// slot is Redis Cluster's key slot: CRC16 (XMODEM) of the hash tag, or of the key without one.
func slot(key string) int {
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

func TestSlot(t *testing.T) {
	assert.Equal(t, 12182, slot("foo")) // CLUSTER KEYSLOT foo
	assert.Equal(t, 0x31C3%16384, slot("123456789"))
	assert.Equal(t, slot("bar"), slot("x{bar}y"))
	assert.Equal(t, slot("x{}y"), slot("x{}y"))
}

func TestPrefix(t *testing.T) {
	if p, err := Prefix("", "def:"); p != "def:" || err != nil {
		t.Fatalf("empty: %q, %v", p, err)
	}
	if p, err := Prefix("app:", "def:"); p != "app:" || err != nil {
		t.Fatalf("set: %q, %v", p, err)
	}
	if _, err := Prefix("a{b", "def:"); err != ErrBadPrefix {
		t.Fatalf("braces: %v", err)
	}
}
