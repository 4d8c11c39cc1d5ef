package session

import (
	"bytes"
	"testing"
)

// FuzzUnpack: whatever load.lua's reply holds, unpack never panics, and what it accepts splits
// the whole string into the fields and values it names.
func FuzzUnpack(f *testing.F) {
	f.Add([]byte("_a1964770000000.usersada"), []byte{2, 13, 5, 4})
	f.Add([]byte(""), []byte{})
	f.Add([]byte("x"), []byte{1})
	f.Add([]byte("_uada.a"), []byte{2, 3, 2, 0})
	f.Fuzz(func(t *testing.T, b, lengths []byte) {
		lens := make([]any, len(lengths))
		total := 0
		for i, n := range lengths {
			lens[i] = int64(int8(n)) // negative lengths too
			total += int(int8(n))
		}
		r, ok := unpack(bytes.Clone(b), lens)
		if !ok {
			return
		}
		if total != len(b) || len(lengths)%2 != 0 {
			t.Fatalf("accepted %q split by %v", b, lengths)
		}
		size := 0
		for k, v := range r.Values {
			size += 1 + len(k) + len(v)
		}
		if size > len(b) {
			t.Fatalf("values of %d bytes from %d", size, len(b))
		}
	})
}
