package clientip_test

import (
	"testing"

	"github.com/outgrow/outgrow/internal/clientip"
)

func BenchmarkAddr(b *testing.B) {
	r := mustNew(b, clientip.Config{TrustedProxies: trustedProxies})
	req := newRequest("203.0.113.9:5555", []string{"1.2.3.4"}, nil) // untrusted peer: header not read
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Addr(req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAddrForwarded(b *testing.B) {
	r := mustNew(b, clientip.Config{TrustedProxies: trustedProxies})
	req := newRequest("10.0.0.1:5555", []string{"203.0.113.7, 10.0.0.3, 10.0.0.2"}, nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Addr(req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAddrRFC7239 is BenchmarkAddrForwarded with the same three hops in a Forwarded header.
func BenchmarkAddrRFC7239(b *testing.B) {
	r := mustNew(b, clientip.Config{TrustedProxies: trustedProxies, Header: "Forwarded"})
	req := newRequest("10.0.0.1:5555", nil, []string{`for=203.0.113.7;proto=https, for="10.0.0.3:80", for=10.0.0.2`})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Addr(req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendKey(b *testing.B) {
	r := mustNew(b, clientip.Config{TrustedProxies: trustedProxies})
	for _, bc := range []struct{ name, remote string }{
		{"v4", "203.0.113.9:5555"},
		{"v6", "[2001:db8:ab00:12:3456:789a:bcde:f012]:5555"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := newRequest(bc.remote, nil, nil)
			buf := make([]byte, 0, 64)
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = r.AppendKey(buf[:0], req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
