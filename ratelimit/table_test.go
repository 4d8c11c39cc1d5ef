package ratelimit

import (
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// TestTableMatchesMap: random sets, deletes, sweeps and evictions agree with a Go map, with hashes
// crowded into few home slots so that probe runs wrap and deletions shift entries back.
func TestTableMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var tb table
	model := map[uint64]int64{}
	for step := range 200_000 {
		h := uint64(rng.IntN(300)) << 1 // small hash space: long probe runs; 0 included
		switch op := rng.IntN(20); {
		case op < 10:
			v := int64(1 + rng.IntN(1000))
			tb.set(h, v)
			model[fix(h)] = v
		case op < 17:
			tb.delete(h)
			delete(model, fix(h))
		case op < 18 && step%50 == 0:
			now := int64(rng.IntN(1000))
			tb.sweep(now)
			for k, v := range model {
				if v <= now {
					delete(model, k)
				}
			}
		case op < 19 && tb.n > 0:
			now := int64(rng.IntN(1000))
			before := tb.n
			evicted, live := tb.evictOne(rng.Uint64, now, 16)
			require.Equal(t, before-1, tb.n)
			gone := 0
			for k, v := range model {
				if tb.get(k) == 0 {
					gone++
					require.Equal(t, live, v > now, "evicted a live key only if the sample had no fresh one")
					require.Equal(t, k, evicted, "evictOne names the key it removed")
					delete(model, k)
				}
			}
			require.Equal(t, 1, gone)
		default:
			require.Equal(t, model[fix(h)], tb.get(h))
		}
		require.Equal(t, len(model), tb.n)
		require.LessOrEqual(t, 16*tb.n, 13*max(len(tb.slots), minTable))
	}
	for k, v := range model {
		require.Equal(t, v, tb.get(k))
	}
}

// TestShardLayout: shards and per-shard counters fill whole cache lines, so parallel decisions on
// different shards never write to the same line.
func TestShardLayout(t *testing.T) {
	require.Equal(t, uintptr(128), unsafe.Sizeof(memShard{}))
	require.Equal(t, uintptr(64), unsafe.Sizeof(memCount{}))
}
