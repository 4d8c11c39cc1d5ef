package balancer_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"

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

// A reverse proxy in front of two backends, with health checks; a request that cannot reach
// one backend goes to the other.
func ExampleProxy() {
	backend := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, name)
		}))
	}
	blue, green := backend("blue"), backend("green")
	defer blue.Close()
	defer green.Close()

	b, _ := balancer.New(balancer.Config{}, balancer.Backend{ID: blue.URL}, balancer.Backend{ID: green.URL})
	checker, _ := balancer.NewChecker(b, balancer.CheckConfig{}) // GET /api/health every 30s
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = checker.Run(ctx) }() // until ctx ends
	proxy, err := balancer.NewProxy(b, balancer.ProxyConfig{})
	if err != nil {
		log.Fatal(err)
	}
	front := httptest.NewServer(proxy)
	defer front.Close()

	green.Close() // green dies: its requests go to blue
	seen := map[string]int{}
	for range 4 {
		resp, err := http.Get(front.URL)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen[fmt.Sprint(resp.StatusCode, " ", string(body))]++
	}
	fmt.Println(seen)
	// Output: map[200 blue:4]
}
