// Package cachecontrol parses and formats Cache-Control header values: the directives of
// RFC 9111 §5.2, stale-while-revalidate and stale-if-error (RFC 5861) and immutable (RFC 8246).
//
// Parsing is lenient where leniency is safe and strict where a wrong guess would keep a response
// too long: an unreadable max-age or s-maxage counts as 0 (stale), as RFC 9111 §4.2.1 asks,
// rather than being ignored, and conflicting copies of either count as 0 too. Parse never
// panics, visits each byte of its input a bounded number of times and allocates nothing.
package cachecontrol

import (
	"strconv"
	"strings"
	"time"
)

// MaxSeconds is the largest delta-seconds value kept: 2^31, the value RFC 9111 §1.2.2 tells a
// cache to use for any larger one.
const MaxSeconds = 1 << 31

// Seconds is the argument of a directive counted in whole seconds (delta-seconds). The zero value
// means the directive is absent. It is a plain value.
type Seconds struct {
	// N is the number of seconds, 0..MaxSeconds.
	N int64
	// OK reports that the directive is present.
	OK bool
}

// SecondsOf returns d as a present Seconds, in whole seconds rounded down (so that a cache never
// keeps a response longer than d) and clamped to 0..MaxSeconds.
func SecondsOf(d time.Duration) Seconds {
	n := int64(d / time.Second)
	return Seconds{N: min(max(n, 0), MaxSeconds), OK: true}
}

// Duration returns s as a time.Duration; 0 when absent.
func (s Seconds) Duration() time.Duration {
	if !s.OK {
		return 0
	}
	return time.Duration(min(max(s.N, 0), MaxSeconds)) * time.Second
}

// Directives are the cache directives of a Cache-Control header, request or response. Unknown
// extensions are dropped. The zero value has no directive and formats as "". It is a plain
// value, safe to copy and to share.
type Directives struct {
	MaxAge               Seconds // max-age
	SMaxAge              Seconds // s-maxage
	StaleWhileRevalidate Seconds // stale-while-revalidate (RFC 5861)
	StaleIfError         Seconds // stale-if-error (RFC 5861)
	MaxStale             Seconds // max-stale; MaxSeconds when given without a value (any staleness)
	MinFresh             Seconds // min-fresh

	Public          bool // public
	Private         bool // private, also in its private="field-names" form
	NoStore         bool // no-store
	NoCache         bool // no-cache, also in its no-cache="field-names" form
	MustRevalidate  bool // must-revalidate
	ProxyRevalidate bool // proxy-revalidate
	Immutable       bool // immutable (RFC 8246)
	NoTransform     bool // no-transform
	OnlyIfCached    bool // only-if-cached
	MustUnderstand  bool // must-understand
}

// directive numbers the known directives; names is indexed by it.
type directive int

const (
	dMaxAge directive = iota
	dSMaxAge
	dStaleWhileRevalidate
	dStaleIfError
	dMaxStale
	dMinFresh
	dPublic
	dPrivate
	dNoStore
	dNoCache
	dMustRevalidate
	dProxyRevalidate
	dImmutable
	dNoTransform
	dOnlyIfCached
	dMustUnderstand
	dUnknown
)

var names = [...]string{
	dMaxAge:               "max-age",
	dSMaxAge:              "s-maxage",
	dStaleWhileRevalidate: "stale-while-revalidate",
	dStaleIfError:         "stale-if-error",
	dMaxStale:             "max-stale",
	dMinFresh:             "min-fresh",
	dPublic:               "public",
	dPrivate:              "private",
	dNoStore:              "no-store",
	dNoCache:              "no-cache",
	dMustRevalidate:       "must-revalidate",
	dProxyRevalidate:      "proxy-revalidate",
	dImmutable:            "immutable",
	dNoTransform:          "no-transform",
	dOnlyIfCached:         "only-if-cached",
	dMustUnderstand:       "must-understand",
}

func lookup(name string) directive {
	for i, n := range names {
		if len(n) == len(name) && (n == name || strings.EqualFold(n, name)) {
			return directive(i)
		}
	}
	return dUnknown
}

// Parse reads the directives of one or more Cache-Control field lines, as found in an
// http.Header (Parse(h["Cache-Control"]...)). Names are case-insensitive; arguments may be
// tokens or quoted strings. Rules for awkward input:
//
//   - A max-age or s-maxage whose argument is missing, negative or not an integer counts as 0,
//     and so do two copies of one of them with different values (RFC 9111 §4.2.1).
//   - Other directives with such an argument are ignored; of two copies, the first counts.
//   - Values above MaxSeconds are MaxSeconds (RFC 9111 §1.2.2).
//   - A list member with junk after it ("no-store x") still counts by its name.
//   - Unknown directives are ignored.
func Parse(values ...string) Directives {
	var d Directives
	for _, v := range values {
		d.parseLine(v)
	}
	return d
}

func (d *Directives) parseLine(s string) {
	i := 0
	for i < len(s) {
		for i < len(s) && (s[i] == ',' || isSpace(s[i])) {
			i++
		}
		start := i
		for i < len(s) && isTchar(s[i]) {
			i++
		}
		name := s[start:i]
		i = skipSpace(s, i)
		var arg string
		hasArg, quoted, wellFormed := false, false, true
		if i < len(s) && s[i] == '=' {
			hasArg = true
			i = skipSpace(s, i+1)
			if i < len(s) && s[i] == '"' {
				quoted = true
				end := endQuote(s, i+1)
				arg = s[i+1 : end]
				if end < len(s) {
					end++ // the closing quote
				} else {
					wellFormed = false // unterminated
				}
				i = end
			} else {
				a := i
				for i < len(s) && isTchar(s[i]) {
					i++
				}
				arg = s[a:i]
			}
			i = skipSpace(s, i)
		}
		if i < len(s) && s[i] != ',' {
			wellFormed = false
			i = nextComma(s, i)
		}
		if name != "" {
			d.apply(lookup(name), arg, hasArg, quoted, wellFormed)
		}
	}
}

func (d *Directives) apply(dir directive, arg string, hasArg, quoted, wellFormed bool) {
	switch dir {
	case dMaxAge, dSMaxAge:
		p := &d.MaxAge
		if dir == dSMaxAge {
			p = &d.SMaxAge
		}
		n, ok := delta(arg, quoted)
		if !ok || !hasArg || !wellFormed {
			n = 0 // unreadable freshness means stale, never "no limit"
		}
		if p.OK && p.N != n {
			n = 0 // conflicting copies
		}
		*p = Seconds{N: n, OK: true}
	case dStaleWhileRevalidate, dStaleIfError, dMaxStale, dMinFresh:
		p := d.seconds(dir)
		if p.OK {
			return // the first copy counts
		}
		if dir == dMaxStale && !hasArg && wellFormed {
			*p = Seconds{N: MaxSeconds, OK: true}
			return
		}
		if n, ok := delta(arg, quoted); ok && hasArg && wellFormed {
			*p = Seconds{N: n, OK: true}
		}
	case dPublic:
		d.Public = true
	case dPrivate:
		d.Private = true
	case dNoStore:
		d.NoStore = true
	case dNoCache:
		d.NoCache = true
	case dMustRevalidate:
		d.MustRevalidate = true
	case dProxyRevalidate:
		d.ProxyRevalidate = true
	case dImmutable:
		d.Immutable = true
	case dNoTransform:
		d.NoTransform = true
	case dOnlyIfCached:
		d.OnlyIfCached = true
	case dMustUnderstand:
		d.MustUnderstand = true
	}
}

func (d *Directives) seconds(dir directive) *Seconds {
	switch dir {
	case dMaxAge:
		return &d.MaxAge
	case dSMaxAge:
		return &d.SMaxAge
	case dStaleWhileRevalidate:
		return &d.StaleWhileRevalidate
	case dStaleIfError:
		return &d.StaleIfError
	case dMaxStale:
		return &d.MaxStale
	default:
		return &d.MinFresh
	}
}

// delta reads delta-seconds (1*DIGIT), clamped to MaxSeconds. A quoted argument is unescaped on
// the fly, so that `"6\0"` reads as 60 without building the unescaped string.
func delta(arg string, quoted bool) (int64, bool) {
	var n int64
	digits := 0
	for i := 0; i < len(arg); i++ {
		c := arg[i]
		if quoted && c == '\\' && i+1 < len(arg) {
			i++
			c = arg[i]
		}
		if c < '0' || c > '9' {
			return 0, false
		}
		digits++
		if n <= MaxSeconds { // stop growing once clamped: no overflow, however long the input
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, MaxSeconds), digits > 0
}

// endQuote returns the index of the quote closing a quoted string whose content starts at i, or
// len(s) when there is none.
func endQuote(s string, i int) int {
	for ; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return len(s)
}

// nextComma returns the index of the next comma outside a quoted string, or len(s).
func nextComma(s string, i int) int {
	for ; i < len(s); i++ {
		switch s[i] {
		case ',':
			return i
		case '"':
			i = endQuote(s, i+1)
		}
	}
	return len(s)
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' }

func skipSpace(s string, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}

// isTchar reports a token character (RFC 9110 §5.6.2).
func isTchar(c byte) bool { return tchar[c] }

var tchar = func() (t [256]bool) {
	for c := range t {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", byte(c)) >= 0
	}
	return t
}()

// Append appends d as a Cache-Control value to dst: lower-case names, ", " between them, in a
// fixed order (cacheability, then revalidation, then lifetimes, then request directives).
// Seconds outside 0..MaxSeconds are clamped. A max-stale of MaxSeconds is written without a
// value. The zero Directives appends nothing.
func (d Directives) Append(dst []byte) []byte {
	start := len(dst)
	flag := func(on bool, name string) {
		if on {
			if len(dst) > start {
				dst = append(dst, ", "...)
			}
			dst = append(dst, name...)
		}
	}
	secs := func(s Seconds, name string) {
		if !s.OK {
			return
		}
		flag(true, name)
		n := min(max(s.N, 0), MaxSeconds)
		if name == names[dMaxStale] && n == MaxSeconds {
			return
		}
		dst = append(dst, '=')
		dst = strconv.AppendInt(dst, n, 10)
	}
	flag(d.Public, names[dPublic])
	flag(d.Private, names[dPrivate])
	flag(d.NoCache, names[dNoCache])
	flag(d.NoStore, names[dNoStore])
	flag(d.NoTransform, names[dNoTransform])
	flag(d.MustRevalidate, names[dMustRevalidate])
	flag(d.ProxyRevalidate, names[dProxyRevalidate])
	flag(d.MustUnderstand, names[dMustUnderstand])
	secs(d.MaxAge, names[dMaxAge])
	secs(d.SMaxAge, names[dSMaxAge])
	secs(d.StaleWhileRevalidate, names[dStaleWhileRevalidate])
	secs(d.StaleIfError, names[dStaleIfError])
	flag(d.Immutable, names[dImmutable])
	secs(d.MaxStale, names[dMaxStale])
	secs(d.MinFresh, names[dMinFresh])
	flag(d.OnlyIfCached, names[dOnlyIfCached])
	return dst
}

// String returns d as a Cache-Control value, as Append writes it.
func (d Directives) String() string {
	var buf [160]byte
	return string(d.Append(buf[:0]))
}
