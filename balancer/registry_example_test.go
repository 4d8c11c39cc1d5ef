package balancer_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/outgrow/outgrow/balancer"
)

// Instances register themselves; a balancer watching the registry follows them. Swap the
// MemoryStore for balancer.NewRedisStore(rdb, balancer.RedisConfig{}) to share the registry
// between the instances of a service.
func ExampleRegistry() {
	store, err := balancer.NewMemoryStore(balancer.MemoryConfig{})
	if err != nil {
		log.Fatal(err)
	}
	joined := make(chan string)
	reg, err := balancer.NewRegistry(store, balancer.RegistryConfig{
		Service: "api",
		Hooks: balancer.RegistryHooks{
			OnJoin: func(_ context.Context, b balancer.Backend) { joined <- b.ID },
		},
	})
	if err != nil {
		log.Fatal(err)
	}

	// The balancing side: Watch keeps b's set in step with the registry until ctx ends.
	b, _ := balancer.New(balancer.Config{})
	ctx, stop := context.WithCancel(context.Background())
	watching := make(chan error)
	go func() { watching <- reg.Watch(ctx, b) }()

	// The instance side: register at startup, Close at shutdown (after draining).
	me, err := reg.Register(ctx, balancer.Backend{ID: "10.0.0.7:8080"})
	if err != nil {
		log.Fatal(err) // the registry's store is down
	}
	fmt.Println("joined:", <-joined)
	p, _ := b.Pick(nil)
	fmt.Println("picked:", p.ID())
	p.Done()

	closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := me.Close(closeCtx); err != nil {
		log.Print(err) // it expires after RegistryConfig.TTL instead
	}
	stop()
	fmt.Println("watch:", <-watching)
	// Output:
	// joined: 10.0.0.7:8080
	// picked: 10.0.0.7:8080
	// watch: <nil>
}
