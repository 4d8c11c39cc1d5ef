package clientip_test

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/clientip"
)

// newRequest builds a request as the server would hand it to a handler. Header lines are added in
// order, one http.Header value per line, as when a header is repeated on the wire.
func newRequest(remoteAddr string, xff, forwarded []string) *http.Request {
	req := &http.Request{RemoteAddr: remoteAddr, Header: http.Header{}}
	for _, v := range xff {
		req.Header.Add("X-Forwarded-For", v)
	}
	for _, v := range forwarded {
		req.Header.Add("Forwarded", v)
	}
	return req
}

func mustNew(t testing.TB, cfg clientip.Config) *clientip.Resolver {
	t.Helper()
	r, err := clientip.New(cfg)
	require.NoError(t, err, "New(%+v)", cfg)
	return r
}

func prefixes(s ...string) []netip.Prefix {
	ps := make([]netip.Prefix, len(s))
	for i, v := range s {
		ps[i] = netip.MustParsePrefix(v)
	}
	return ps
}

// trustedProxies is the proxy fleet most tests sit behind.
var trustedProxies = prefixes("10.0.0.0/8", "2001:db8:ffff::/48")

func TestAddrRemoteAddrForms(t *testing.T) {
	t.Parallel()
	r := mustNew(t, clientip.Config{})
	tests := []struct {
		remote string
		want   string
	}{
		{"192.0.2.1:1234", "192.0.2.1"},
		{"192.0.2.1:0", "192.0.2.1"},
		{"192.0.2.1:65535", "192.0.2.1"},
		{"192.0.2.1", "192.0.2.1"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"[2001:db8::1]", "2001:db8::1"},
		{"2001:db8::1", "2001:db8::1"},
		{"[::1]:80", "::1"},
		{"[fe80::1%eth0]:80", "fe80::1"},
		{"fe80::1%eth0", "fe80::1"},
		{"[fe80::1%7]:80", "fe80::1"},
		{"[fe80::1%odd,name]:80", "fe80::1"}, // the server names the interface; any zone is accepted
		{"[::ffff:192.0.2.1]:80", "192.0.2.1"},
		{"::ffff:1.2.3.4", "1.2.3.4"},
		{"[::ffff:1.2.3.4%eth0]:80", "1.2.3.4"},
	}
	for _, tt := range tests {
		got, err := r.Addr(newRequest(tt.remote, nil, nil))
		require.NoError(t, err, "RemoteAddr %q", tt.remote)
		assert.Equal(t, netip.MustParseAddr(tt.want), got, "RemoteAddr %q", tt.remote)
		assert.Empty(t, got.Zone(), "RemoteAddr %q", tt.remote)
	}
}

func TestAddrRemoteAddrErrors(t *testing.T) {
	t.Parallel()
	r := mustNew(t, clientip.Config{TrustedProxies: trustedProxies})
	for _, remote := range []string{
		"",
		"@",
		"/tmp/app.sock",
		"garbage",
		"example.com:80",
		" 192.0.2.1:80",
		"192.0.2.1:",
		"192.0.2.1:http",
		"192.0.2.1:65536",
		"192.0.2.1:-1",
		"192.0.2.1%eth0",
		"256.0.0.1:80",
		"01.2.3.4:80",
		"[2001:db8::1",
		"[2001:db8::1]x",
		"[2001:db8::1]:",
		"[192.0.2.1]:80",
		"[fe80::1%]:80",
		"[]:80",
		"unknown",
		"_hidden",
	} {
		// A trusted-looking header must not rescue a request whose peer is unknown.
		got, err := r.Addr(newRequest(remote, []string{"203.0.113.7"}, nil))
		require.ErrorIs(t, err, clientip.ErrNoClientIP, "RemoteAddr %q", remote)
		assert.False(t, got.IsValid(), "RemoteAddr %q", remote)

		_, err = r.Prefix(newRequest(remote, nil, nil))
		require.ErrorIs(t, err, clientip.ErrNoClientIP, "Prefix, RemoteAddr %q", remote)

		dst := []byte("k:")
		dst, err = r.AppendKey(dst, newRequest(remote, nil, nil))
		require.ErrorIs(t, err, clientip.ErrNoClientIP, "AppendKey, RemoteAddr %q", remote)
		assert.Equal(t, "k:", string(dst), "AppendKey must leave dst unchanged on error")
	}
}

func TestAddrNilAndZeroResolver(t *testing.T) {
	t.Parallel()
	var nilResolver *clientip.Resolver
	for name, r := range map[string]*clientip.Resolver{"nil": nilResolver, "zero": {}} {
		// Behaves like New(Config{}): the header is ignored and IPv6 is grouped by /56.
		req := newRequest("[2001:db8:ab00:12::1]:80", []string{"198.51.100.1"}, nil)
		got, err := r.Addr(req)
		require.NoError(t, err, name)
		assert.Equal(t, netip.MustParseAddr("2001:db8:ab00:12::1"), got, name)

		key, err := r.AppendKey(nil, req)
		require.NoError(t, err, name)
		assert.Equal(t, "2001:db8:ab00::/56", string(key), name)

		key, err = r.AppendKey(nil, newRequest("192.0.2.1:80", nil, nil))
		require.NoError(t, err, name)
		assert.Equal(t, "192.0.2.1", string(key), name)

		_, err = r.Addr(nil)
		require.ErrorIs(t, err, clientip.ErrNoClientIP, name)
	}
}

func TestSpoofedHeaderFromUntrustedPeerIsIgnored(t *testing.T) {
	t.Parallel()
	spoofXFF := []string{"1.2.3.4", "10.0.0.2"}
	spoofFwd := []string{"for=1.2.3.4", "for=10.0.0.2"}
	for _, cfg := range []clientip.Config{
		{}, // trust nobody
		{Header: "Forwarded"},
		{TrustedProxies: trustedProxies},
		{TrustedProxies: trustedProxies, Header: "Forwarded"},
	} {
		r := mustNew(t, cfg)
		for _, remote := range []string{"203.0.113.9:5000", "[2001:db8:1::9]:5000", "[::ffff:203.0.113.9]:1"} {
			want, err := mustNew(t, clientip.Config{}).Addr(newRequest(remote, nil, nil))
			require.NoError(t, err)
			got, err := r.Addr(newRequest(remote, spoofXFF, spoofFwd))
			require.NoError(t, err, "cfg %+v, RemoteAddr %q", cfg, remote)
			assert.Equal(t, want, got, "cfg %+v, RemoteAddr %q", cfg, remote)
		}
	}
}

// headerCase is one request behind a trusted peer and the address that must be chosen.
type headerCase struct {
	name   string
	remote string // default "10.0.0.1:5555", a trusted proxy
	xff    []string
	fwd    []string
	want   string
}

func runHeaderCases(t *testing.T, r *clientip.Resolver, tests []headerCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			remote := tt.remote
			if remote == "" {
				remote = "10.0.0.1:5555"
			}
			req := newRequest(remote, tt.xff, tt.fwd)
			got, err := r.Addr(req)
			require.NoError(t, err)
			assert.Equal(t, netip.MustParseAddr(tt.want), got,
				"RemoteAddr %q, X-Forwarded-For %q, Forwarded %q", remote, tt.xff, tt.fwd)
		})
	}
}

func TestAddrXForwardedFor(t *testing.T) {
	t.Parallel()
	r := mustNew(t, clientip.Config{TrustedProxies: trustedProxies})
	many := make([]string, 40)
	for i := range many {
		many[i] = "10.0.0.9"
	}
	runHeaderCases(t, r, []headerCase{
		{name: "absent", want: "10.0.0.1"},
		{name: "empty line", xff: []string{""}, want: "10.0.0.1"},
		{name: "one hop", xff: []string{"203.0.113.7"}, want: "203.0.113.7"},
		{name: "rightmost untrusted wins", xff: []string{"1.1.1.1, 198.51.100.1, 203.0.113.7"}, want: "203.0.113.7"},
		{name: "trusted chain", xff: []string{"203.0.113.7, 10.0.0.2, 10.0.0.3"}, want: "203.0.113.7"},
		{name: "lines merged", xff: []string{"1.1.1.1, 203.0.113.7", "10.0.0.2"}, want: "203.0.113.7"},
		{name: "lines merged in order", xff: []string{"203.0.113.7", "198.51.100.1"}, want: "198.51.100.1"},
		{name: "trusted in both lines", xff: []string{"198.51.100.1, 10.0.0.4", "10.0.0.3, 10.0.0.2"}, want: "198.51.100.1"},
		{name: "garbage left of client", xff: []string{"<script>, , unknown, 203.0.113.7, 10.0.0.2"}, want: "203.0.113.7"},
		{name: "leading comma", xff: []string{", 203.0.113.7"}, want: "203.0.113.7"},
		{name: "garbage rightmost", xff: []string{"203.0.113.7, garbage"}, want: "10.0.0.1"},
		{name: "empty rightmost", xff: []string{"203.0.113.7, "}, want: "10.0.0.1"},
		{name: "empty last line", xff: []string{"203.0.113.7", ""}, want: "10.0.0.1"},
		{name: "garbage after trusted hop", xff: []string{"203.0.113.7, unknown, 10.0.0.2"}, want: "10.0.0.2"},
		{name: "all trusted", xff: []string{"10.0.0.5, 10.0.0.2"}, want: "10.0.0.5"},
		{name: "all trusted across lines", xff: []string{"10.0.0.5", "10.0.0.2"}, want: "10.0.0.5"},
		{name: "all trusted after garbage", xff: []string{"garbage, 10.0.0.5, 10.0.0.2"}, want: "10.0.0.5"},
		{name: "long trusted chain", xff: []string{"203.0.113.7, " + strings.Join(many, ",")}, want: "203.0.113.7"},
		{name: "ports", xff: []string{"203.0.113.7:4711, 10.0.0.2:80"}, want: "203.0.113.7"},
		{name: "bracketed v6 with port", xff: []string{"[2001:db8::7]:4711"}, want: "2001:db8::7"},
		{name: "bracketed v6", xff: []string{"[2001:db8::7]"}, want: "2001:db8::7"},
		{name: "bare v6", xff: []string{"2001:db8::7, 2001:db8:ffff::2"}, want: "2001:db8::7"},
		{name: "spaces and tabs", xff: []string{"  203.0.113.7\t,\t10.0.0.2  "}, want: "203.0.113.7"},
		{name: "no spaces", xff: []string{"203.0.113.7,10.0.0.2"}, want: "203.0.113.7"},
		{name: "mapped hop unmapped", xff: []string{"::ffff:203.0.113.7"}, want: "203.0.113.7"},
		{name: "mapped trusted hop skipped", xff: []string{"203.0.113.7, ::ffff:10.0.0.2"}, want: "203.0.113.7"},
		{name: "zoned hop", xff: []string{"[fe80::1%eth0]:80"}, want: "fe80::1"},
		{name: "zone with odd characters", xff: []string{"[fe80::1%e/0]"}, want: "10.0.0.1"},
		{name: "obfuscated port is Forwarded only", xff: []string{"203.0.113.7:_p"}, want: "10.0.0.1"},
		{name: "port out of range", xff: []string{"203.0.113.7:65536"}, want: "10.0.0.1"},
		{name: "v4 in brackets", xff: []string{"[203.0.113.7]"}, want: "10.0.0.1"},
		{name: "Forwarded ignored", fwd: []string{"for=203.0.113.7"}, want: "10.0.0.1"},
		{name: "Forwarded ignored next to XFF", xff: []string{"198.51.100.1"}, fwd: []string{"for=203.0.113.7"}, want: "198.51.100.1"},
		{name: "v6 trusted peer", remote: "[2001:db8:ffff::1]:443", xff: []string{"2001:db8:1::5, 2001:db8:ffff::2"}, want: "2001:db8:1::5"},
		{name: "mapped trusted peer", remote: "[::ffff:10.0.0.1]:443", xff: []string{"203.0.113.7"}, want: "203.0.113.7"},
		{name: "zoned trusted peer", remote: "[2001:db8:ffff::1%eth0]:443", xff: []string{"203.0.113.7"}, want: "203.0.113.7"},
	})
}

func TestAddrForwarded(t *testing.T) {
	t.Parallel()
	// The header name is matched case-insensitively.
	r := mustNew(t, clientip.Config{TrustedProxies: trustedProxies, Header: "forwarded"})
	long := make([]string, 12) // more elements than the stack buffer holds
	for i := range long {
		long[i] = "for=10.0.0.9"
	}
	long[0] = "for=203.0.113.7"
	runHeaderCases(t, r, []headerCase{
		{name: "absent", want: "10.0.0.1"},
		{name: "RFC example", fwd: []string{"for=192.0.2.60;proto=http;by=203.0.113.43"}, want: "192.0.2.60"},
		{name: "quoted v6 with port", fwd: []string{`For="[2001:db8:cafe::17]:4711"`}, want: "2001:db8:cafe::17"},
		{name: "quoted v6", fwd: []string{`for="[2001:db8:cafe::17]"`}, want: "2001:db8:cafe::17"},
		{name: "quoted v4 with port", fwd: []string{`for="192.0.2.43:47011"`}, want: "192.0.2.43"},
		{name: "obfuscated port", fwd: []string{`for="[2001:db8::1]:_p0rt-1"`}, want: "2001:db8::1"},
		{name: "bad obfuscated port", fwd: []string{`for="192.0.2.43:_p/x"`}, want: "10.0.0.1"},
		{name: "rightmost element", fwd: []string{"for=192.0.2.43, for=198.51.100.17"}, want: "198.51.100.17"},
		{name: "trusted element skipped", fwd: []string{"for=192.0.2.43, for=10.0.0.7"}, want: "192.0.2.43"},
		{name: "lines merged", fwd: []string{"for=192.0.2.43", "for=10.0.0.7;proto=https"}, want: "192.0.2.43"},
		{name: "lines merged in order", fwd: []string{"for=192.0.2.43", "for=198.51.100.17"}, want: "198.51.100.17"},
		{name: "mixed case names", fwd: []string{"FOR=192.0.2.60;PROTO=http;By=10.0.0.1"}, want: "192.0.2.60"},
		{name: "for not first", fwd: []string{"proto=https;host=example.com;fOr=192.0.2.60"}, want: "192.0.2.60"},
		{name: "escapes", fwd: []string{`for="\[2001:db8::1\]:4\711"`}, want: "2001:db8::1"},
		{name: "escaped digit", fwd: []string{`for="192.0.2.\60"`}, want: "192.0.2.60"},
		{name: "quoted comma elsewhere", fwd: []string{`for=192.0.2.43;by="a,b", for=198.51.100.17`}, want: "198.51.100.17"},
		{name: "quoted for= inside another value", fwd: []string{`for=198.51.100.17;host="x,for=10.0.0.9;y"`}, want: "198.51.100.17"},
		{name: "escaped quote inside value", fwd: []string{`for=198.51.100.17;host="a\",for=1.1.1.1"`}, want: "198.51.100.17"},
		{name: "spaces", fwd: []string{"for=192.0.2.43 ,\tfor=10.0.0.7 ; proto=http "}, want: "192.0.2.43"},
		{name: "empty pairs", fwd: []string{"for=192.0.2.43;;proto=http;"}, want: "192.0.2.43"},
		{name: "unknown", fwd: []string{"for=unknown"}, want: "10.0.0.1"},
		{name: "quoted unknown", fwd: []string{`for="UNKNOWN"`}, want: "10.0.0.1"},
		{name: "unknown rightmost", fwd: []string{"for=192.0.2.43, for=unknown"}, want: "10.0.0.1"},
		{name: "unknown after trusted", fwd: []string{"for=192.0.2.43, for=unknown, for=10.0.0.7"}, want: "10.0.0.7"},
		{name: "unknown left of client", fwd: []string{"for=unknown, for=192.0.2.43"}, want: "192.0.2.43"},
		{name: "obfuscated", fwd: []string{"for=_hidden"}, want: "10.0.0.1"},
		{name: "quoted obfuscated", fwd: []string{`for="_gazonk", for=10.0.0.7`}, want: "10.0.0.7"},
		{name: "all trusted", fwd: []string{"for=10.0.0.5, for=10.0.0.7"}, want: "10.0.0.5"},
		{name: "long chain", fwd: []string{strings.Join(long, ", ")}, want: "203.0.113.7"},
		{name: "element without for", fwd: []string{"proto=https;by=10.0.0.1"}, want: "10.0.0.1"},
		{name: "element without for rightmost", fwd: []string{"for=192.0.2.43, by=10.0.0.2"}, want: "10.0.0.1"},
		{name: "duplicate for", fwd: []string{"for=192.0.2.43;for=198.51.100.17"}, want: "10.0.0.1"},
		{name: "pair without value", fwd: []string{"for=192.0.2.43;secure"}, want: "10.0.0.1"},
		{name: "space before equals", fwd: []string{"for =192.0.2.43"}, want: "10.0.0.1"},
		{name: "unterminated quote", fwd: []string{`for="192.0.2.43`}, want: "10.0.0.1"},
		{name: "text after quote", fwd: []string{`for="192.0.2.43"x`}, want: "10.0.0.1"},
		{name: "empty value", fwd: []string{`for=""`}, want: "10.0.0.1"},
		{name: "v4 in brackets", fwd: []string{`for="[192.0.2.43]"`}, want: "10.0.0.1"},
		{name: "trailing comma", fwd: []string{"for=192.0.2.43,"}, want: "10.0.0.1"},
		{name: "XFF ignored", xff: []string{"203.0.113.7"}, want: "10.0.0.1"},
		{name: "XFF ignored next to Forwarded", xff: []string{"203.0.113.7"}, fwd: []string{"for=192.0.2.43"}, want: "192.0.2.43"},
		{name: "v6 trusted peer", remote: "[2001:db8:ffff::1]:443", fwd: []string{`for="[2001:db8:1::5]", for="[2001:db8:ffff::2]:80"`}, want: "2001:db8:1::5"},
	})
}

func TestPrefixAndAppendKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		cfg        clientip.Config
		remote     string
		wantPrefix string
		wantKey    string
	}{
		{"v4 default keeps the address", clientip.Config{}, "192.0.2.1:80", "192.0.2.1/32", "192.0.2.1"},
		{"mapped v4 keyed as v4", clientip.Config{}, "[::ffff:192.0.2.1]:80", "192.0.2.1/32", "192.0.2.1"},
		{"v4 /24", clientip.Config{IPv4Prefix: 24}, "10.1.2.3:80", "10.1.2.0/24", "10.1.2.0/24"},
		{"v4 /16", clientip.Config{IPv4Prefix: 16}, "10.1.2.3:80", "10.1.0.0/16", "10.1.0.0/16"},
		{"v4 /1", clientip.Config{IPv4Prefix: 1}, "192.0.2.1:80", "128.0.0.0/1", "128.0.0.0/1"},
		{"v6 default /56", clientip.Config{}, "[2001:db8:ab00:ff:1:2:3:4]:80", "2001:db8:ab00::/56", "2001:db8:ab00::/56"},
		{"v6 /64", clientip.Config{IPv6Prefix: 64}, "[2001:db8:ab00:ff:1:2:3:4]:80", "2001:db8:ab00:ff::/64", "2001:db8:ab00:ff::/64"},
		{"v6 /128", clientip.Config{IPv6Prefix: 128}, "[2001:db8::1]:80", "2001:db8::1/128", "2001:db8::1/128"},
		{"zoned v6", clientip.Config{}, "[fe80::1%eth0]:80", "fe80::/56", "fe80::/56"},
	}
	for _, tt := range tests {
		r := mustNew(t, tt.cfg)
		req := newRequest(tt.remote, nil, nil)
		p, err := r.Prefix(req)
		require.NoError(t, err, tt.name)
		assert.Equal(t, netip.MustParsePrefix(tt.wantPrefix), p, tt.name)

		key, err := r.AppendKey([]byte("rl:"), req)
		require.NoError(t, err, tt.name)
		assert.Equal(t, "rl:"+tt.wantKey, string(key), tt.name)
	}
}

func TestKeysGroupRotatingIPv6(t *testing.T) {
	t.Parallel()
	r := mustNew(t, clientip.Config{})
	key := func(remote string) string {
		k, err := r.AppendKey(nil, newRequest(remote, nil, nil))
		require.NoError(t, err, remote)
		p, err := r.Prefix(newRequest(remote, nil, nil))
		require.NoError(t, err, remote)
		if p.Addr().Is6() {
			require.Equal(t, p.String(), string(k), "Prefix and AppendKey agree for %q", remote)
		}
		return string(k)
	}
	// One subscriber's /56: every address it rotates through lands on the same key.
	same := key("[2001:db8:ab00::1]:1")
	for _, remote := range []string{
		"[2001:db8:ab00::2]:2",
		"[2001:db8:ab00:ff:dead:beef:1:2]:3",
		"[2001:db8:ab00:1:a:b:c:d]:4",
		"[2001:db8:ab00:80::]:5",
	} {
		assert.Equal(t, same, key(remote), remote)
	}
	// Neighbouring /56s are other subscribers.
	for _, remote := range []string{"[2001:db8:ab00:100::1]:1", "[2001:db8:ab01::1]:1", "[2001:db8:aaff:ff00::1]:1"} {
		assert.NotEqual(t, same, key(remote), remote)
	}
	// Full IPv4 addresses by default: neighbours differ.
	assert.NotEqual(t, key("192.0.2.1:1"), key("192.0.2.2:1"))
	assert.Equal(t, key("192.0.2.1:1"), key("192.0.2.1:2"))

	r24 := mustNew(t, clientip.Config{IPv4Prefix: 24})
	k1, err := r24.AppendKey(nil, newRequest("198.51.100.1:1", nil, nil))
	require.NoError(t, err)
	k2, err := r24.AppendKey(nil, newRequest("198.51.100.254:1", nil, nil))
	require.NoError(t, err)
	k3, err := r24.AppendKey(nil, newRequest("198.51.101.1:1", nil, nil))
	require.NoError(t, err)
	assert.Equal(t, "198.51.100.0/24", string(k1))
	assert.Equal(t, string(k1), string(k2))
	assert.NotEqual(t, string(k1), string(k3))
}

func TestKeyUsesForwardedClient(t *testing.T) {
	t.Parallel()
	r := mustNew(t, clientip.Config{TrustedProxies: trustedProxies})
	key, err := r.AppendKey(nil, newRequest("10.0.0.1:80", []string{"2001:db8:ab00:12::7, 10.0.0.2"}, nil))
	require.NoError(t, err)
	assert.Equal(t, "2001:db8:ab00::/56", string(key))
}

func TestNewValidation(t *testing.T) {
	t.Parallel()
	bad := []struct {
		cfg  clientip.Config
		want string
	}{
		{clientip.Config{IPv4Prefix: -1}, "clientip: IPv4Prefix -1 out of range 1..32"},
		{clientip.Config{IPv4Prefix: 33}, "clientip: IPv4Prefix 33 out of range 1..32"},
		{clientip.Config{IPv6Prefix: -8}, "clientip: IPv6Prefix -8 out of range 1..128"},
		{clientip.Config{IPv6Prefix: 129}, "clientip: IPv6Prefix 129 out of range 1..128"},
		{clientip.Config{IPv6Prefix: 200}, "clientip: IPv6Prefix 200 out of range 1..128"},
		{clientip.Config{Header: "X-Real-IP"}, `clientip: Header "X-Real-IP"`},
		{clientip.Config{Header: "X-Forwarded-For "}, `clientip: Header "X-Forwarded-For "`},
		{clientip.Config{Header: "X-Forwarded"}, `clientip: Header "X-Forwarded"`},
		{clientip.Config{TrustedProxies: []netip.Prefix{{}}}, "clientip: TrustedProxies[0] is not a valid prefix"},
		{
			clientip.Config{TrustedProxies: []netip.Prefix{
				netip.MustParsePrefix("10.0.0.0/8"),
				netip.PrefixFrom(netip.MustParseAddr("10.0.0.0"), 33),
			}},
			"clientip: TrustedProxies[1] is not a valid prefix",
		},
	}
	for _, tt := range bad {
		r, err := clientip.New(tt.cfg)
		require.Error(t, err, "New(%+v)", tt.cfg)
		assert.Contains(t, err.Error(), tt.want, "New(%+v)", tt.cfg)
		assert.Nil(t, r, "New(%+v)", tt.cfg)
	}

	for _, cfg := range []clientip.Config{
		{},
		{Header: "x-forwarded-for"},
		{Header: "X-FORWARDED-FOR"},
		{Header: "FORWARDED"},
		{IPv4Prefix: 1, IPv6Prefix: 1},
		{IPv4Prefix: 32, IPv6Prefix: 128},
		{TrustedProxies: prefixes("0.0.0.0/0", "::/0", "192.0.2.1/32")},
	} {
		r, err := clientip.New(cfg)
		require.NoError(t, err, "New(%+v)", cfg)
		require.NotNil(t, r, "New(%+v)", cfg)
	}
}

func TestNewNormalisesTrustedProxies(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{
		netip.MustParsePrefix("10.1.2.3/8"),            // host bits set: stored masked
		netip.MustParsePrefix("::ffff:172.16.0.0/108"), // IPv4-mapped: matches IPv4 peers in 172.16/12
	}
	r := mustNew(t, clientip.Config{TrustedProxies: trusted})
	trusted[0] = netip.MustParsePrefix("192.0.2.0/24") // New must not alias the caller's slice

	for _, remote := range []string{"10.200.0.1:80", "172.31.0.1:80", "[::ffff:172.16.0.1]:80"} {
		got, err := r.Addr(newRequest(remote, []string{"203.0.113.7"}, nil))
		require.NoError(t, err, remote)
		assert.Equal(t, netip.MustParseAddr("203.0.113.7"), got, "peer %q is trusted", remote)
	}
	got, err := r.Addr(newRequest("192.0.2.1:80", []string{"203.0.113.7"}, nil))
	require.NoError(t, err)
	assert.Equal(t, netip.MustParseAddr("192.0.2.1"), got, "peer outside the configured prefixes")
}

func TestZeroAllocs(t *testing.T) {
	r := mustNew(t, clientip.Config{TrustedProxies: trustedProxies})
	untrustedV4 := newRequest("203.0.113.9:5555", []string{"1.2.3.4"}, nil)
	untrustedV6 := newRequest("[fe80::1%eth0]:5555", []string{"1.2.3.4"}, nil)
	forwarded := newRequest("10.0.0.1:5555", []string{"203.0.113.7, 10.0.0.3, 10.0.0.2"}, nil)
	buf := make([]byte, 0, 64)

	for name, fn := range map[string]func(){
		"Addr v4 RemoteAddr only":    func() { _, _ = r.Addr(untrustedV4) },
		"Addr v6 zoned RemoteAddr":   func() { _, _ = r.Addr(untrustedV6) },
		"Prefix RemoteAddr only":     func() { _, _ = r.Prefix(untrustedV6) },
		"AppendKey v4":               func() { _, _ = r.AppendKey(buf[:0], untrustedV4) },
		"AppendKey v6":               func() { _, _ = r.AppendKey(buf[:0], untrustedV6) },
		"Addr 3-hop X-Forwarded-For": func() { _, _ = r.Addr(forwarded) },
	} {
		assert.Zero(t, testing.AllocsPerRun(100, fn), name)
	}

	fr := mustNew(t, clientip.Config{TrustedProxies: trustedProxies, Header: "Forwarded"})
	fwd := newRequest("10.0.0.1:5555", nil, []string{`for=203.0.113.7;proto=https, for="[2001:db8:ffff::3]:80", for=10.0.0.2`})
	assert.Zero(t, testing.AllocsPerRun(100, func() { _, _ = fr.Addr(fwd) }), "Addr 3-element Forwarded")
}

func TestTrustsPeer(t *testing.T) {
	r, err := clientip.New(clientip.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Header: "forwarded"})
	require.NoError(t, err)
	for addr, want := range map[string]bool{"10.1.2.3:80": true, "[::ffff:10.1.2.3]:80": true, "192.0.2.1:80": false, "@": false} {
		req, _ := http.NewRequest("GET", "/", nil)
		req.RemoteAddr = addr
		assert.Equal(t, want, r.TrustsPeer(req), addr)
	}
	assert.False(t, r.TrustsPeer(nil))
	var none *clientip.Resolver
	assert.False(t, none.TrustsPeer(&http.Request{RemoteAddr: "10.0.0.1:1"}))
	assert.Equal(t, "Forwarded", r.Header())
	assert.Equal(t, "X-Forwarded-For", none.Header())
}
