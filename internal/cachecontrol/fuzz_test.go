package cachecontrol

import (
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary header text, one field line per "\n". Parse must not panic, must
// keep every value in range, and its result must survive a round trip through String.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"public, max-age=300, s-maxage=600, stale-while-revalidate=30, stale-if-error=86400, immutable",
		"private, no-cache, no-store, must-revalidate, proxy-revalidate, no-transform, must-understand",
		`private="Set-Cookie", no-cache="a, b", community="UCI"`,
		"max-age=-1, s-maxage=1.5",
		"max-age=60, max-age=120\nmax-age=60",
		`max-age="6\0", max-age = 60`,
		"max-stale, min-fresh=5, only-if-cached",
		"max-age=99999999999999999999999",
		`foo="unterminated, max-age=5`,
		"no-store garbage;x=1, =, ,,",
		"MAX-AGE=0007\n\tPublic",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		lines := strings.Split(in, "\n")
		d := Parse(lines...)
		for _, s := range []Seconds{d.MaxAge, d.SMaxAge, d.StaleWhileRevalidate, d.StaleIfError, d.MaxStale, d.MinFresh} {
			if s.N < 0 || s.N > MaxSeconds || (!s.OK && s.N != 0) {
				t.Fatalf("Parse(%q): out-of-range Seconds %+v in %+v", in, s, d)
			}
		}
		out := d.String()
		for i := 0; i < len(out); i++ {
			if c := out[i]; c != ' ' && c != ',' && c != '=' && !isTchar(c) {
				t.Fatalf("String() = %q: byte %q is not allowed", out, c)
			}
		}
		if again := Parse(out); again != d {
			t.Fatalf("Parse(%q) = %+v\nString = %q\nParse(String) = %+v", in, d, out, again)
		}
		// A line parses the same alone as after other lines that set nothing.
		if Parse(append([]string{"", " , x-unknown"}, lines...)...) != d {
			t.Fatalf("Parse(%q) depends on preceding empty lines", in)
		}
	})
}
