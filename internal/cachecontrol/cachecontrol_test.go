package cachecontrol

import (
	"math"
	"strings"
	"testing"
	"time"
)

func sec(n int64) Seconds { return Seconds{N: n, OK: true} }

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want Directives
	}{
		{"empty", nil, Directives{}},
		{"blank line", []string{"  ,, ,"}, Directives{}},
		{"simple", []string{"public, max-age=60"}, Directives{Public: true, MaxAge: sec(60)}},
		{"case and spaces", []string{"\tPUBLIC ,Max-Age=60,  S-MAXAGE=7 "}, Directives{Public: true, MaxAge: sec(60), SMaxAge: sec(7)}},
		{"several lines", []string{"private", "max-age=5", "no-cache"}, Directives{Private: true, NoCache: true, MaxAge: sec(5)}},
		{"quoted value", []string{`max-age="60", stale-if-error="9"`}, Directives{MaxAge: sec(60), StaleIfError: sec(9)}},
		{"quoted escapes", []string{`max-age="6\0"`}, Directives{MaxAge: sec(60)}},
		{"spaces around =", []string{"max-age = 60"}, Directives{MaxAge: sec(60)}},
		{"leading zeros", []string{"max-age=0007"}, Directives{MaxAge: sec(7)}},
		{"every flag", []string{"public,private,no-store,no-cache,must-revalidate,proxy-revalidate,immutable,no-transform,only-if-cached,must-understand"},
			Directives{Public: true, Private: true, NoStore: true, NoCache: true, MustRevalidate: true, ProxyRevalidate: true,
				Immutable: true, NoTransform: true, OnlyIfCached: true, MustUnderstand: true}},
		{"rfc 5861", []string{"max-age=600, stale-while-revalidate=30, stale-if-error=86400"},
			Directives{MaxAge: sec(600), StaleWhileRevalidate: sec(30), StaleIfError: sec(86400)}},
		{"request directives", []string{"max-stale=10, min-fresh=3, only-if-cached"}, Directives{MaxStale: sec(10), MinFresh: sec(3), OnlyIfCached: true}},
		{"max-stale without value", []string{"max-stale"}, Directives{MaxStale: sec(MaxSeconds)}},

		// Field-name forms count as the unqualified directive: the stricter reading.
		{"private field names", []string{`private="Set-Cookie, Authorization", max-age=5`}, Directives{Private: true, MaxAge: sec(5)}},
		{"no-cache field names", []string{`no-cache="x"`}, Directives{NoCache: true}},
		{"private token", []string{`private=Set-Cookie`}, Directives{Private: true}},

		// An unreadable max-age or s-maxage means stale (RFC 9111 §4.2.1, psf/cachecontrol#456).
		{"negative max-age", []string{"max-age=-1"}, Directives{MaxAge: sec(0)}},
		{"fractional max-age", []string{"max-age=1.5"}, Directives{MaxAge: sec(0)}},
		{"plus sign", []string{"max-age=+5"}, Directives{MaxAge: sec(0)}},
		{"empty max-age", []string{"max-age="}, Directives{MaxAge: sec(0)}},
		{"bare max-age", []string{"max-age"}, Directives{MaxAge: sec(0)}},
		{"empty quoted", []string{`max-age=""`}, Directives{MaxAge: sec(0)}},
		{"quoted spaces", []string{`max-age=" 60"`}, Directives{MaxAge: sec(0)}},
		{"junk after value", []string{"max-age=60 x"}, Directives{MaxAge: sec(0)}},
		{"junk in value", []string{"max-age=60x"}, Directives{MaxAge: sec(0)}},
		{"unterminated quote", []string{`max-age="60, public`}, Directives{MaxAge: sec(0)}},
		{"bad s-maxage", []string{"s-maxage=abc, max-age=10"}, Directives{SMaxAge: sec(0), MaxAge: sec(10)}},
		{"conflicting max-age", []string{"max-age=60, max-age=120"}, Directives{MaxAge: sec(0)}},
		{"conflict across lines", []string{"max-age=60", "max-age=120"}, Directives{MaxAge: sec(0)}},
		{"conflict stays", []string{"max-age=60, max-age=120, max-age=60"}, Directives{MaxAge: sec(0)}},
		{"repeated max-age", []string{"max-age=60, MAX-AGE=60"}, Directives{MaxAge: sec(60)}},
		{"invalid then valid", []string{"max-age=x, max-age=60"}, Directives{MaxAge: sec(0)}},

		// Other delta-seconds directives are ignored when unreadable; the first copy counts.
		{"bad swr", []string{"stale-while-revalidate=-5, stale-if-error=1e3"}, Directives{}},
		{"bare swr", []string{"stale-while-revalidate"}, Directives{}},
		{"first swr", []string{"stale-while-revalidate=5, stale-while-revalidate=9"}, Directives{StaleWhileRevalidate: sec(5)}},
		{"bad max-stale", []string{"max-stale=-1"}, Directives{}},

		// Huge values clamp to 2^31 (RFC 9111 §1.2.2) instead of overflowing.
		{"2^31", []string{"max-age=2147483648"}, Directives{MaxAge: sec(MaxSeconds)}},
		{"huge", []string{"max-age=99999999999999999999999999999999"}, Directives{MaxAge: sec(MaxSeconds)}},
		{"huge swr", []string{"stale-while-revalidate=18446744073709551616"}, Directives{StaleWhileRevalidate: sec(MaxSeconds)}},

		// Unknown and malformed members do not disturb their neighbours.
		{"extension", []string{`community="UCI", foo, bar=baz, max-age=5`}, Directives{MaxAge: sec(5)}},
		{"comma in quotes", []string{`foo="a, no-store", public`}, Directives{Public: true}},
		{"name with junk", []string{"no-store garbage, public"}, Directives{NoStore: true, Public: true}},
		{"semicolon", []string{"no-store;x=1"}, Directives{NoStore: true}},
		{"not a name", []string{`"no-store", @public, max-age60`}, Directives{}},
		{"prefix of name", []string{"no-stor, max-ag=5, publicity"}, Directives{}},
		{"bool with value", []string{"no-store=1"}, Directives{NoStore: true}},
		{"equals only", []string{"=5, ==, public"}, Directives{Public: true}},
		{"unicode", []string{"mäx-age=5, püblic, private"}, Directives{Private: true}},
		{"quote does not cross lines", []string{`foo="a`, "no-store"}, Directives{NoStore: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Parse(tt.in...)
			if got != tt.want {
				t.Fatalf("Parse(%q)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
			if again := Parse(got.String()); again != got {
				t.Fatalf("Parse(String()) = %+v, want %+v (String %q)", again, got, got.String())
			}
		})
	}
}

func TestString(t *testing.T) {
	tests := []struct {
		d    Directives
		want string
	}{
		{Directives{}, ""},
		{Directives{NoStore: true}, "no-store"},
		{Directives{Public: true, MaxAge: sec(300), SMaxAge: sec(600), StaleWhileRevalidate: sec(30), StaleIfError: sec(86400), Immutable: true},
			"public, max-age=300, s-maxage=600, stale-while-revalidate=30, stale-if-error=86400, immutable"},
		{Directives{Private: true, MaxAge: sec(0), MustRevalidate: true}, "private, must-revalidate, max-age=0"},
		{Directives{MaxStale: sec(MaxSeconds), MinFresh: sec(5), OnlyIfCached: true}, "max-stale, min-fresh=5, only-if-cached"},
		{Directives{MaxStale: sec(7)}, "max-stale=7"},
		{Directives{MaxAge: Seconds{N: -5, OK: true}, SMaxAge: Seconds{N: 1 << 40, OK: true}}, "max-age=0, s-maxage=2147483648"},
		{Directives{MaxAge: Seconds{N: 60}}, ""}, // absent: N is ignored
	}
	for _, tt := range tests {
		if got := tt.d.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.d, got, tt.want)
		}
		if got := string(tt.d.Append([]byte("x: "))); got != "x: "+tt.want {
			t.Errorf("Append = %q", got)
		}
	}
}

func TestSeconds(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want Seconds
	}{
		{0, sec(0)},
		{1500 * time.Millisecond, sec(1)},
		{999 * time.Millisecond, sec(0)},
		{-time.Second, sec(0)},
		{300 * time.Second, sec(300)},
		{1 << 62, sec(MaxSeconds)},
	}
	for _, tt := range tests {
		if got := SecondsOf(tt.d); got != tt.want {
			t.Errorf("SecondsOf(%v) = %+v, want %+v", tt.d, got, tt.want)
		}
	}
	if d := sec(90).Duration(); d != 90*time.Second {
		t.Errorf("Duration = %v", d)
	}
	if d := (Seconds{N: 90}).Duration(); d != 0 {
		t.Errorf("absent Duration = %v", d)
	}
	if d := (Seconds{N: -3, OK: true}).Duration(); d != 0 {
		t.Errorf("negative Duration = %v", d)
	}
}

func TestParseAllocs(t *testing.T) {
	lines := []string{`public, max-age=300, s-maxage="600", stale-while-revalidate=30`, `private="Set-Cookie", x-ext=1`}
	if n := testing.AllocsPerRun(100, func() { _ = Parse(lines...) }); n != 0 {
		t.Errorf("Parse allocates %v times", n)
	}
	d := Parse(lines...)
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf = d.Append(buf[:0]) }); n != 0 {
		t.Errorf("Append allocates %v times", n)
	}
}

// TestParseLinear checks that hostile input is handled in one pass: a long run of quotes,
// backslashes and commas takes time proportional to its length. Input 16 times as long must
// take less than 64 times as long (a quadratic parser would take 256 times); each time is the
// best of several runs, so that a pause of the machine does not count.
func TestParseLinear(t *testing.T) {
	timeOf := func(s string) time.Duration {
		best := time.Duration(math.MaxInt64)
		for range 7 {
			start := time.Now()
			_ = Parse(s, s)
			best = min(best, time.Since(start))
		}
		return best
	}
	for _, unit := range []string{`"`, `\`, `,`, `a="\"`, `max-age=`, `=`, ` `} {
		short, long := timeOf(strings.Repeat(unit, 1<<12)), timeOf(strings.Repeat(unit, 1<<16))
		if long > 64*short {
			t.Errorf("%q: 16 times the input took %.0f times as long (%v, %v)", unit, float64(long)/float64(short), short, long)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	line := "public, max-age=300, s-maxage=600, stale-while-revalidate=30, stale-if-error=86400, immutable"
	b.ReportAllocs()
	for b.Loop() {
		_ = Parse(line)
	}
}
