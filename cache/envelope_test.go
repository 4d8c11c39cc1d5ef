package cache

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	e := envelope{flags: flagRaw, fresh: 1_700_000_000_000, stale: 1_700_000_060_000, hard: 1_700_003_600_000, load: 12, payload: []byte("hello")}
	got, err := decodeEnvelope(e.append(nil))
	if err != nil || got.flags != e.flags || got.fresh != e.fresh || got.stale != e.stale || got.hard != e.hard || got.load != e.load || !bytes.Equal(got.payload, e.payload) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for _, bad := range [][]byte{nil, {1}, {2, 0, 1, 1, 1, 0}, {1, 0, 5, 4, 6, 0}, {1, flagNegative, 1, 1, 1, 0, 'x'}, {1, 0, 0x80}} {
		if _, err := decodeEnvelope(bad); err == nil {
			t.Errorf("%v decoded", bad)
		}
	}
}

// FuzzEnvelope: any bytes from Redis decode or fail cleanly, and what decodes encodes back to
// the same bytes.
func FuzzEnvelope(f *testing.F) {
	f.Add((&envelope{fresh: 10, stale: 20, hard: 30, payload: []byte(`{"a":1}`)}).append(nil))
	f.Add((&envelope{flags: flagNegative, fresh: 5, stale: 5, hard: 5}).append(nil))
	f.Add([]byte{1, 0, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		again, err := decodeEnvelope(e.append(nil))
		if err != nil || again.fresh != e.fresh || again.stale != e.stale || again.hard != e.hard ||
			again.load != e.load || again.flags != e.flags || !bytes.Equal(again.payload, e.payload) {
			t.Fatalf("%x: %+v then %+v, %v", b, e, again, err)
		}
	})
}

// FuzzMessage: any payload on the channel parses or is ignored without panicking, and what a
// store announces parses back to its namespace and key.
func FuzzMessage(f *testing.F) {
	f.Add("users", "42")
	f.Add("", "{a}b{")
	f.Add("x", "")
	f.Fuzz(func(t *testing.T, namespace, key string) {
		_, _, _, _ = parseMessage(namespace + key) // anything another client published
		if strings.ContainsAny(namespace, "{}") {
			return // New refuses such a namespace
		}
		s := &RedisStore{origin: rand.Text()}
		origin, ns, k, ok := parseMessage(s.message(namespace, key))
		if !ok || origin != s.origin || ns != namespace || k != key {
			t.Fatalf("%q, %q: parsed %q, %q, %q, %v", namespace, key, origin, ns, k, ok)
		}
	})
}
