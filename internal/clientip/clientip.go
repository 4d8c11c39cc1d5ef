package clientip

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// ErrNoClientIP reports that the request's RemoteAddr is empty or not an IP address, as happens on a
// unix socket listener. Callers must treat it as an error, not skip the limit: an empty key would
// let every such request through (or put them all in one bucket).
var ErrNoClientIP = errors.New("clientip: no client IP address")

// Canonical header keys, so that the request's header map is indexed without re-canonicalising.
const (
	headerXFF       = "X-Forwarded-For"
	headerForwarded = "Forwarded"
)

const (
	defaultIPv4Bits = 32
	defaultIPv6Bits = 56
)

// Config says which peers are trusted to report the client's address and how addresses are grouped
// into keys.
//
// The zero value trusts nobody (RemoteAddr only, headers ignored), keeps IPv4 addresses whole and
// groups IPv6 addresses by /56. A Config is a plain value; [New] copies what it needs.
type Config struct {
	// TrustedProxies are the peers whose forwarding header is believed, e.g. 10.0.0.0/8. When empty
	// (the default) headers are never read. IPv4 peers are matched by IPv4 prefixes and by
	// IPv4-mapped prefixes of at least /96.
	TrustedProxies []netip.Prefix

	// Header is the forwarding header read from trusted peers: "X-Forwarded-For" (the default when
	// empty) or "Forwarded" (RFC 7239), matched case-insensitively. Any other value is an error.
	Header string

	// IPv4Prefix is the number of leading bits kept in IPv4 keys, 1..32. 0 means 32.
	IPv4Prefix int

	// IPv6Prefix is the number of leading bits kept in IPv6 keys, 1..128. 0 means 56.
	IPv6Prefix int
}

// Resolver finds the client's IP address of HTTP requests.
//
// It is immutable once built by [New] and safe for concurrent use. The zero value, and a nil
// *Resolver, behave like New(Config{}): trust nobody, IPv4 by /32, IPv6 by /56.
type Resolver struct {
	// Split by family so that a lookup only scans prefixes that can match.
	trusted4  []netip.Prefix
	trusted6  []netip.Prefix
	header    string // canonical key into http.Header
	forwarded bool   // header is RFC 7239 Forwarded rather than X-Forwarded-For
	v4bits    int    // 0 in the zero value, meaning defaultIPv4Bits
	v6bits    int    // 0 in the zero value, meaning defaultIPv6Bits
}

// zeroResolver stands in for a nil *Resolver so that methods never dereference nil.
var zeroResolver Resolver

// New validates cfg and returns a Resolver for it. It returns an error, and no Resolver, when a
// prefix width is out of range, Header is not a supported header name, or a TrustedProxies entry is
// not a valid prefix.
func New(cfg Config) (*Resolver, error) {
	r := &Resolver{header: headerXFF, v4bits: defaultIPv4Bits, v6bits: defaultIPv6Bits}
	if cfg.IPv4Prefix != 0 {
		if cfg.IPv4Prefix < 1 || cfg.IPv4Prefix > 32 {
			return nil, fmt.Errorf("clientip: IPv4Prefix %d out of range 1..32", cfg.IPv4Prefix)
		}
		r.v4bits = cfg.IPv4Prefix
	}
	if cfg.IPv6Prefix != 0 {
		if cfg.IPv6Prefix < 1 || cfg.IPv6Prefix > 128 {
			return nil, fmt.Errorf("clientip: IPv6Prefix %d out of range 1..128", cfg.IPv6Prefix)
		}
		r.v6bits = cfg.IPv6Prefix
	}
	switch {
	case cfg.Header == "" || strings.EqualFold(cfg.Header, headerXFF):
	case strings.EqualFold(cfg.Header, headerForwarded):
		r.header, r.forwarded = headerForwarded, true
	default:
		// X-Real-IP and friends carry one unverifiable value with no hop list to walk.
		return nil, fmt.Errorf("clientip: Header %q is not %q or %q", cfg.Header, headerXFF, headerForwarded)
	}
	for i, p := range cfg.TrustedProxies {
		if !p.IsValid() {
			return nil, fmt.Errorf("clientip: TrustedProxies[%d] is not a valid prefix", i)
		}
		p = p.Masked()
		// Addresses are unmapped before matching, so a mapped prefix must be unmapped too.
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if p.Addr().Is4() {
			r.trusted4 = append(r.trusted4, p)
		} else {
			r.trusted6 = append(r.trusted6, p)
		}
	}
	return r, nil
}

// Addr returns the client's IP address: the peer's, or, when the peer is a trusted proxy, the
// rightmost untrusted hop of the forwarding header (see the package documentation). IPv4-mapped
// addresses are unmapped and zones removed. It fails with an error matching [ErrNoClientIP] when
// req is nil or its RemoteAddr is not an IP address.
func (r *Resolver) Addr(req *http.Request) (netip.Addr, error) {
	if r == nil {
		r = &zeroResolver
	}
	if req == nil {
		return netip.Addr{}, ErrNoClientIP
	}
	peer, ok := parseHost(req.RemoteAddr, syntaxRemote)
	if !ok {
		return netip.Addr{}, fmt.Errorf("%w: RemoteAddr %q", ErrNoClientIP, req.RemoteAddr)
	}
	if !r.trusts(peer) {
		return peer, nil
	}
	// Index the map directly: the key is canonical, which is what http.Header.Values would do.
	lines := req.Header[r.header]
	if r.forwarded {
		return r.walkForwarded(lines, peer), nil
	}
	return r.walkXFF(lines, peer), nil
}

// TrustsPeer reports whether req comes from a trusted proxy, whose forwarding header is
// believed: a reverse proxy passes that header on (appending the peer) rather than dropping
// it.
func (r *Resolver) TrustsPeer(req *http.Request) bool {
	if r == nil || req == nil {
		return false
	}
	peer, ok := parseHost(req.RemoteAddr, syntaxRemote)
	return ok && r.trusts(peer)
}

// Header returns the forwarding header the Resolver reads from trusted peers.
func (r *Resolver) Header() string {
	if r == nil {
		return headerXFF
	}
	return r.header
}

// Prefix returns [Resolver.Addr] masked to the configured number of bits for its family.
func (r *Resolver) Prefix(req *http.Request) (netip.Prefix, error) {
	a, err := r.Addr(req)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, r.bits(a)).Masked(), nil
}

// AppendKey appends a stable text key for the client's network to dst and returns the extended
// slice: the bare address ("192.0.2.1") for IPv4 kept at 32 bits, otherwise the prefix
// ("2001:db8:ab00::/56", "10.1.0.0/16"). IPv4 and IPv6 keys never collide. It does not allocate when
// dst has room for the key (64 spare bytes are always enough). On error dst is returned unchanged.
func (r *Resolver) AppendKey(dst []byte, req *http.Request) ([]byte, error) {
	a, err := r.Addr(req)
	if err != nil {
		return dst, err
	}
	bits := r.bits(a)
	if a.Is4() && bits == 32 {
		// The common key stays the plain address, the form people grep logs and Redis for.
		return a.AppendTo(dst), nil
	}
	return netip.PrefixFrom(a, bits).Masked().AppendTo(dst), nil
}

func (r *Resolver) bits(a netip.Addr) int {
	if r == nil {
		r = &zeroResolver
	}
	if a.Is4() {
		if r.v4bits == 0 {
			return defaultIPv4Bits
		}
		return r.v4bits
	}
	if r.v6bits == 0 {
		return defaultIPv6Bits
	}
	return r.v6bits
}

func (r *Resolver) trusts(a netip.Addr) bool {
	ps := r.trusted6
	if a.Is4() {
		ps = r.trusted4
	}
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// walkXFF walks X-Forwarded-For hops from the right. It scans backwards instead of splitting, so a
// well-formed header costs no allocation and a long forged prefix of hops is never looked at.
func (r *Resolver) walkXFF(lines []string, peer netip.Addr) netip.Addr {
	last := peer // the nearest address a trusted party vouched for
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		end := len(line)
		for {
			start := strings.LastIndexByte(line[:end], ',') + 1
			a, ok := parseHost(trimOWS(line[start:end]), syntaxXFF)
			if !ok {
				return last
			}
			if !r.trusts(a) {
				return a
			}
			last = a
			if start == 0 {
				break
			}
			end = start - 1
		}
	}
	return last
}

// span is one element of a Forwarded line, as byte offsets.
type span struct{ start, end int }

// walkForwarded walks RFC 7239 elements from the right. Quoted strings may contain commas, so a line
// cannot be split from the right; its element boundaries are found forwards first, into a stack
// buffer that only grows onto the heap for unusually long chains.
func (r *Resolver) walkForwarded(lines []string, peer netip.Addr) netip.Addr {
	last := peer
	var buf [8]span
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		spans := buf[:0]
		for start := 0; ; {
			end := nextSep(line, start, ',')
			spans = append(spans, span{start, end})
			if end >= len(line) {
				break
			}
			start = end + 1
		}
		for k := len(spans) - 1; k >= 0; k-- {
			a, ok := forwardedFor(line[spans[k].start:spans[k].end])
			if !ok {
				return last
			}
			if !r.trusts(a) {
				return a
			}
			last = a
		}
	}
	return last
}

// forwardedFor returns the address in the for= parameter of one Forwarded element. An element
// without exactly one for= parameter, or with a malformed pair, is rejected rather than guessed at.
func forwardedFor(elem string) (netip.Addr, bool) {
	var value string
	found := false
	for start := 0; start <= len(elem); {
		end := nextSep(elem, start, ';')
		pair := trimOWS(elem[start:end])
		start = end + 1
		if pair == "" {
			continue // the grammar allows empty pairs: "for=x;;proto=http"
		}
		eq := strings.IndexByte(pair, '=')
		if eq <= 0 {
			return netip.Addr{}, false
		}
		if !strings.EqualFold(pair[:eq], "for") {
			continue
		}
		if found {
			// RFC 7239 forbids repeats; proxies that disagree on which one counts could be played.
			return netip.Addr{}, false
		}
		value, found = pair[eq+1:], true
	}
	if !found {
		return netip.Addr{}, false
	}
	v, ok := unquote(value)
	// "unknown" and obfuscated "_identifiers" name no address; they would fail parsing anyway, but
	// are named here because they are expected rather than malformed.
	if !ok || v == "" || v[0] == '_' || strings.EqualFold(v, "unknown") {
		return netip.Addr{}, false
	}
	return parseHost(v, syntaxForwarded)
}

// nextSep returns the index of the first sep at or after i that is outside a quoted string, or
// len(s). An unterminated quoted string runs to the end of s. Quotes are looked for only before the
// next sep, so the common unquoted case runs at IndexByte speed and every byte is visited once.
func nextSep(s string, i int, sep byte) int {
	for i < len(s) {
		j := strings.IndexByte(s[i:], sep)
		if j < 0 {
			j = len(s) - i
		}
		q := strings.IndexByte(s[i:i+j], '"')
		if q < 0 {
			return i + j
		}
		// Skip the quoted string; the sep found above may be inside it.
		for i += q + 1; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' {
				i++
			}
		}
		i++ // past the closing quote
	}
	return len(s)
}

// unquote returns a token as is, or the content of a quoted string with its escapes resolved. It
// allocates only when the string contains escapes, which no well-behaved proxy writes.
func unquote(v string) (string, bool) {
	if v == "" || v[0] != '"' {
		return v, true
	}
	escaped := false
	for i := 1; i < len(v); i++ {
		switch v[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			if i != len(v)-1 {
				return "", false // text after the closing quote
			}
			if !escaped {
				return v[1:i], true
			}
			b := make([]byte, 0, i-1)
			for j := 1; j < i; j++ {
				if v[j] == '\\' {
					j++ // never past i: a backslash just before the closing quote would escape it
				}
				b = append(b, v[j])
			}
			return string(b), true
		}
	}
	return "", false // unterminated
}

// syntax says where an address comes from, which decides the zones and ports accepted.
type syntax uint8

const (
	// syntaxRemote is RemoteAddr. The server writes it, so any zone (an interface name) is accepted.
	syntaxRemote syntax = iota
	// syntaxXFF is an X-Forwarded-For hop. Zones are limited to RFC 6874 unreserved characters, so a
	// zone can never hide a list separator.
	syntaxXFF
	// syntaxForwarded is a Forwarded for= value: as syntaxXFF, plus obfuscated ports ("_abc").
	syntaxForwarded
)

// parseHost parses "ip", "ip:port", "[ipv6]" or "[ipv6]:port" and returns the address unmapped and
// without zone.
func parseHost(s string, syn syntax) (netip.Addr, bool) {
	if s == "" {
		return netip.Addr{}, false
	}
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		if rest := s[end+1:]; rest != "" && (rest[0] != ':' || !validPort(rest[1:], syn)) {
			return netip.Addr{}, false
		}
		// Brackets are for IPv6 only; "[192.0.2.1]" is not something a proxy writes.
		return parseIP(s[1:end], syn, true)
	}
	colon := strings.IndexByte(s, ':')
	switch {
	case colon < 0:
		return parseIP(s, syn, false)
	case colon == strings.LastIndexByte(s, ':'):
		// One colon: an IPv4 address and a port. IPv6 needs at least two.
		if !validPort(s[colon+1:], syn) {
			return netip.Addr{}, false
		}
		return parseIP(s[:colon], syn, false)
	default:
		return parseIP(s, syn, true)
	}
}

// parseIP parses a bare address of the wanted family (IPv6, which includes IPv4-mapped, or IPv4),
// removing a zone before netip sees it so that zoned input does not cost an allocation.
func parseIP(s string, syn syntax, want6 bool) (netip.Addr, bool) {
	zoned := false
	if i := strings.IndexByte(s, '%'); i >= 0 {
		zone := s[i+1:]
		if zone == "" || (syn != syntaxRemote && !validZone(zone)) {
			return netip.Addr{}, false
		}
		s, zoned = s[:i], true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Is6() != want6 || (zoned && !a.Is6()) {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// validPort accepts a decimal port 0..65535 or, in Forwarded, an obfuscated port.
func validPort(p string, syn syntax) bool {
	if syn == syntaxForwarded && len(p) > 1 && p[0] == '_' {
		for i := 1; i < len(p); i++ {
			if c := p[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
				return false
			}
		}
		return true
	}
	if p == "" || len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}

// validZone accepts RFC 6874 unreserved characters only.
func validZone(z string) bool {
	for i := 0; i < len(z); i++ {
		if c := z[i]; !isAlnum(c) && c != '-' && c != '.' && c != '_' && c != '~' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// trimOWS trims the optional whitespace (spaces and tabs) HTTP allows around list elements.
func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
