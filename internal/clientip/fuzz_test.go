package clientip

import (
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// FuzzAddr feeds arbitrary peers and header text (one header line per "\n") to both header
// syntaxes. The fuzzer chooses whether the peer is trusted; hops in 10.0.0.0/8 and fd00::/8 always
// are, so that trusted chains occur.
func FuzzAddr(f *testing.F) {
	seeds := []struct {
		remote, header string
		trusted        bool
	}{
		{"10.0.0.1:1234", "203.0.113.7, 10.0.0.2", true},
		{"203.0.113.9:1", "1.2.3.4", false},
		{"[fd00::1]:80", "2001:db8::1, fd00::2", true},
		{"[fe80::1%eth0]:80", "[2001:db8::7]:4711", true},
		{"[::ffff:10.1.2.3]:80", "::ffff:1.2.3.4", false},
		{"192.0.2.1", "garbage, 10.0.0.2\n203.0.113.5", true},
		{"192.0.2.1", "203.0.113.5,\n", true},
		{"10.0.0.1:1", "10.0.0.9, 10.0.0.8", false},
		{"", "1.2.3.4", true},
		{"@", "1.2.3.4", true},
		{"10.0.0.1:1", "for=192.0.2.60;proto=http;by=203.0.113.43", false},
		{"10.0.0.1:1", `For="[2001:db8:cafe::17]:4711", for=10.0.0.3`, false},
		{"10.0.0.1:1", "for=192.0.2.43, for=unknown\nfor=_hidden", false},
		{"10.0.0.1:1", `for="\[2001:db8::1\]:_p";by="a,for=1.1.1.1"`, false},
		{"10.0.0.1:1", `for="192.0.2.1;for=10.0.0.2`, false},
		{"10.0.0.1:1", "[fe80::1%e,th0]:80, 10.0.0.2", false},
		{"10.0.0.1:1", "\t203.0.113.7:65535 ,[2001:db8::1]", false},
	}
	for _, s := range seeds {
		f.Add(s.remote, s.header, s.trusted)
	}

	base := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	plain, err := New(Config{})
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, remoteAddr, header string, trusted bool) {
		for _, sep := range []byte{',', ';'} {
			for i := 0; i <= len(header); i++ {
				if got, want := nextSep(header, i, sep), referenceNextSep(header, i, sep); got != want {
					t.Fatalf("nextSep(%q, %d, %q) = %d, want %d", header, i, sep, got, want)
				}
			}
		}

		lines := strings.Split(header, "\n")
		req := &http.Request{RemoteAddr: remoteAddr, Header: http.Header{
			headerXFF:       lines,
			headerForwarded: lines,
		}}

		peer, err := plain.Addr(req)
		if err != nil {
			if !errors.Is(err, ErrNoClientIP) || peer.IsValid() {
				t.Fatalf("Addr(%q) = %v, %v; want invalid, ErrNoClientIP", remoteAddr, peer, err)
			}
		} else {
			checkNormal(t, "peer", peer)
		}

		trustedList := slices.Clone(base)
		if trusted && err == nil {
			trustedList = append(trustedList, netip.PrefixFrom(peer, peer.BitLen()))
		}
		peerTrusted := err == nil && slices.ContainsFunc(trustedList, func(p netip.Prefix) bool { return p.Contains(peer) })

		for _, h := range []string{headerXFF, headerForwarded} {
			r, nerr := New(Config{TrustedProxies: trustedList, Header: h})
			if nerr != nil {
				t.Fatal(nerr)
			}
			got, gerr := r.Addr(req)
			if err != nil {
				// Only the peer can make Addr fail, whatever the header says.
				if !errors.Is(gerr, ErrNoClientIP) || got.IsValid() {
					t.Fatalf("%s: Addr(%q) = %v, %v; want ErrNoClientIP", h, remoteAddr, got, gerr)
				}
				continue
			}
			if gerr != nil {
				t.Fatalf("%s: Addr(%q, %q) failed although the peer parsed: %v", h, remoteAddr, header, gerr)
			}
			checkNormal(t, h, got)
			checkKeys(t, r, req, got)

			if !peerTrusted {
				if got != peer {
					t.Fatalf("%s: untrusted peer %v, header %q: got %v", h, peer, header, got)
				}
				continue
			}
			if got != peer && !slices.Contains(naiveHops(h, lines), got) {
				t.Fatalf("%s: peer %v, header %q: got %v, which is neither the peer nor a hop %v",
					h, peer, header, got, naiveHops(h, lines))
			}
			if h == headerXFF {
				if want := referenceXFF(lines, peer, trustedList); got != want {
					t.Fatalf("X-Forwarded-For %q behind %v: got %v, reference walk says %v", header, peer, got, want)
				}
			}
		}
	})
}

// checkNormal asserts the invariants of every address Addr returns.
func checkNormal(t *testing.T, what string, a netip.Addr) {
	t.Helper()
	if !a.IsValid() || a.Is4In6() || a.Zone() != "" {
		t.Fatalf("%s: %#v is not a valid, unmapped, zoneless address", what, a)
	}
}

// checkKeys asserts that Prefix and AppendKey describe the address Addr returned.
func checkKeys(t *testing.T, r *Resolver, req *http.Request, a netip.Addr) {
	t.Helper()
	p, err := r.Prefix(req)
	if err != nil || !p.IsValid() || !p.Contains(a) || p != p.Masked() {
		t.Fatalf("Prefix = %v, %v for address %v", p, err, a)
	}
	key, err := r.AppendKey([]byte("k:"), req)
	if err != nil || !strings.HasPrefix(string(key), "k:") {
		t.Fatalf("AppendKey = %q, %v", key, err)
	}
	text := string(key[2:])
	if a.Is4() && p.Bits() == 32 {
		if back, err := netip.ParseAddr(text); err != nil || back != a {
			t.Fatalf("AppendKey = %q for %v", text, a)
		}
	} else if back, err := netip.ParsePrefix(text); err != nil || back != p {
		t.Fatalf("AppendKey = %q for prefix %v", text, p)
	}
}

// naiveHops lists every address that could plausibly be read from the header lines, by splitting
// on every separator and trying several parses. It is deliberately looser than the parser: anything
// Addr returns from a header must be among these.
func naiveHops(header string, lines []string) []netip.Addr {
	var out []netip.Addr
	for _, line := range lines {
		if header == headerXFF {
			for _, hop := range strings.Split(line, ",") {
				out = append(out, naiveParse(strings.TrimSpace(hop))...)
			}
			continue
		}
		for _, pair := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ';' }) {
			name, value, ok := strings.Cut(pair, "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(name), "for") {
				continue
			}
			value = strings.TrimSpace(value)
			value = strings.TrimSuffix(strings.TrimPrefix(value, `"`), `"`)
			out = append(out, naiveParse(strings.ReplaceAll(value, `\`, ""))...)
		}
	}
	return out
}

func naiveParse(s string) []netip.Addr {
	var out []netip.Addr
	add := func(a netip.Addr, err error) {
		if err == nil {
			out = append(out, a.Unmap().WithZone(""))
		}
	}
	add(netip.ParseAddr(s))
	if ap, err := netip.ParseAddrPort(s); err == nil {
		add(ap.Addr(), nil)
	}
	if strings.HasPrefix(s, "[") {
		if i := strings.IndexByte(s, ']'); i > 0 {
			add(netip.ParseAddr(s[1:i]))
		}
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		add(netip.ParseAddr(s[:i]))
	}
	return out
}

// referenceXFF is the X-Forwarded-For walk written the obvious way, with strings.Split, to check
// the backwards scan against.
func referenceXFF(lines []string, peer netip.Addr, trusted []netip.Prefix) netip.Addr {
	var hops []string
	for _, line := range lines {
		hops = append(hops, strings.Split(line, ",")...)
	}
	last := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHost(strings.Trim(hops[i], " \t"), syntaxXFF)
		if !ok {
			return last
		}
		if !slices.ContainsFunc(trusted, func(p netip.Prefix) bool { return p.Contains(a) }) {
			return a
		}
		last = a
	}
	return last
}

// referenceNextSep is nextSep written as a plain state machine over every byte.
func referenceNextSep(s string, i int, sep byte) int {
	quoted := false
	for ; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == sep:
			return i
		}
	}
	return len(s)
}
