package cache

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// GetOrLoad racing Close starts no flight after Close (no race on the WaitGroup).
func TestLoadRacingClose(t *testing.T) {
	var late atomic.Int32
	for i := range 300 {
		s, _ := NewMemoryStore(MemoryConfig{})
		c, _ := New[string](s, Config{})
		var closed atomic.Bool
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				_, _ = c.GetOrLoad(context.Background(), fmt.Sprint(i, g), func(ctx context.Context, k string) (string, error) {
					if closed.Load() {
						late.Add(1)
					}
					time.Sleep(time.Millisecond)
					return "v", nil
				})
			})
		}
		_ = c.Close()
		closed.Store(true)
		wg.Wait()
		time.Sleep(2 * time.Millisecond)
	}
	if n := late.Load(); n > 0 {
		t.Fatalf("%d loaders ran after Close returned", n)
	}
}
