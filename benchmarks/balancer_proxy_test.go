package benchmarks

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/outgrow/outgrow/balancer"
)

// BenchmarkBalancerProxy: a GET through outgrow's balancer.Proxy (one backend, round robin)
// against a bare httputil.ReverseProxy (Rewrite with SetURL and SetXForwarded) to the same
// backend, on transports alike: the proxy's own overhead, per request.
func BenchmarkBalancerProxy(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer backend.Close()
	target, _ := url.Parse(backend.URL)
	transport := func() *http.Transport {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 256
		return t
	}

	bareTransport := transport()
	defer bareTransport.CloseIdleConnections()
	bare := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport: bareTransport,
	}
	bal, err := balancer.New(balancer.Config{Logger: quiet}, balancer.Backend{ID: backend.URL})
	if err != nil {
		b.Fatal(err)
	}
	ourTransport := transport()
	defer ourTransport.CloseIdleConnections()
	ours, err := balancer.NewProxy(bal, balancer.ProxyConfig{Transport: ourTransport})
	if err != nil {
		b.Fatal(err)
	}

	for _, c := range []struct {
		lib string
		h   http.Handler
	}{{"httputil", bare}, {"outgrow", ours}} {
		b.Run("lib="+c.lib, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest("GET", "http://example.com/items?id=1", nil)
					req.RemoteAddr = "198.51.100.7:4000"
					w := httptest.NewRecorder()
					c.h.ServeHTTP(w, req)
					if w.Code != http.StatusOK {
						b.Fatalf("status %d", w.Code)
					}
				}
			})
		})
	}
}
