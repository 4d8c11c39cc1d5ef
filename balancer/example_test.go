package balancer_test

import (
	"fmt"
	"log"

	"github.com/outgrow/outgrow/balancer"
)

// Weighted round robin spreads a backend's share through each cycle.
func Example() {
	b, err := balancer.New(balancer.Config{Algorithm: balancer.WeightedRoundRobin},
		balancer.Backend{ID: "big", Weight: 3}, balancer.Backend{ID: "small"})
	if err != nil {
		log.Fatal(err)
	}
	counts := map[string]int{}
	for range 8 {
		p, _ := b.Pick(nil)
		counts[p.ID()]++
		p.Done()
	}
	fmt.Println(counts)
	// Output: map[big:6 small:2]
}

// A backend marked down gets no picks until it is up again; a draining one gets none either,
// while its requests in flight finish.
func ExampleBalancer_SetUp() {
	b, _ := balancer.New(balancer.Config{}, balancer.Backend{ID: "a"}, balancer.Backend{ID: "b"})
	_ = b.SetUp("a", false) // its health check failed
	for range 3 {
		p, _ := b.Pick(nil)
		fmt.Print(p.ID(), " ")
		p.Done()
	}
	fmt.Println()
	// Output: b b b
}
