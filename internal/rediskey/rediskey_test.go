package rediskey

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
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
		if Slot(a) != Slot(b) {
			t.Fatalf("%q and %q are in slots %d and %d", a, b, Slot(a), Slot(b))
		}
		if entity != other && Key("p:", entity, ":x") == Key("p:", other, ":x") {
			t.Fatalf("entities %q and %q share a key", entity, other)
		}
	})
}

func TestSlot(t *testing.T) {
	assert.Equal(t, 12182, Slot("foo")) // CLUSTER KEYSLOT foo
	assert.Equal(t, 0x31C3%16384, Slot("123456789"))
	assert.Equal(t, Slot("bar"), Slot("x{bar}y"))
	assert.Equal(t, Slot("x{}y"), Slot("x{}y"))
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

func TestDigest(t *testing.T) {
	a := Digest([]byte("secret"), "api-key-1")
	if len(a) != DigestLen || strings.Contains(a, "api-key") {
		t.Fatalf("Digest = %q", a)
	}
	if a != Digest([]byte("secret"), "api-key-1") {
		t.Fatal("not deterministic")
	}
	if a == Digest([]byte("other"), "api-key-1") || a == Digest([]byte("secret"), "api-key-2") {
		t.Fatal("the secret and the input must both change the digest")
	}
	if strings.ContainsAny(a, "{}%") {
		t.Fatalf("a digest must be usable as a hash tag as is: %q", a)
	}
	for _, secret := range [][]byte{[]byte("short"), make([]byte, 100)} {
		for _, in := range []string{"k", strings.Repeat("x", 300)} {
			m := hmac.New(sha256.New, secret)
			m.Write([]byte(in))
			want := base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
			if got := Digest(secret, in); got != want {
				t.Fatalf("Digest(%d-byte secret, %d-byte input) = %q, want HMAC-SHA256 %q", len(secret), len(in), got, want)
			}
		}
	}
	dst := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { _ = AppendDigest(dst, []byte("s"), "203.0.113.9") }); n != 0 {
		t.Fatalf("AppendDigest of a short key allocates %v times", n)
	}
}

func TestKeyAllocatesOnce(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = Key("cache:", "user:42", ":lease") }); n != 1 {
		t.Fatalf("Key allocates %v times, want 1", n)
	}
	if k := Key("p:", "a{b}%", ":s"); k != "p:{a%7Bb%7D%25}:s" {
		t.Fatalf("Key = %q", k)
	}
}
