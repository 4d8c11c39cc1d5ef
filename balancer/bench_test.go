package balancer

import (
	"fmt"
	"testing"
)

// BenchmarkPick: Pick and Done over 10 backends, in parallel, for each algorithm.
func BenchmarkPick(b *testing.B) {
	for _, alg := range []Algorithm{RoundRobin, WeightedRoundRobin, LeastConnections, IPHash, PowerOfTwo, Random} {
		b.Run("alg="+alg.String(), func(b *testing.B) {
			set := make([]Backend, 10)
			for i := range set {
				set[i] = Backend{ID: fmt.Sprintf("10.0.0.%d:8080", i+1), Weight: 1 + i%3}
			}
			bal := newBalancer(b, Config{Algorithm: alg}, set...)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := requestFrom("192.0.2.1")
				for pb.Next() {
					p, err := bal.Pick(r)
					if err != nil {
						b.Fatal(err)
					}
					p.Done()
				}
			})
		})
	}
}
