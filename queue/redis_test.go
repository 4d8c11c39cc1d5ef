package queue

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outgrow/outgrow/internal/redistest"
)

// redisStoreCases lists a RedisStore per Redis backend of the environment (miniredis always,
// real servers when configured), each on a fresh key prefix. Their clock is frozen and moved
// by advance (the store's test clock), which works alike on servers whose time cannot be faked.
func redisStoreCases() []storeCase {
	var out []storeCase
	for _, k := range redistest.Kinds() {
		if k == redistest.Memory {
			continue
		}
		out = append(out, storeCase{
			name: "redis-" + string(k),
			make: func(t *testing.T) Store {
				s := newRedisStore(t, k, RedisConfig{})
				s.advance(0) // a frozen clock, moved by advance only
				return s
			},
			advance: func(s Store) func(time.Duration) { return s.(*RedisStore).advance },
		})
	}
	return out
}

// newRedisStore returns a RedisStore on a fresh backend of kind k, under the test's prefix.
func newRedisStore(t *testing.T, k redistest.Kind, cfg RedisConfig) *RedisStore {
	t.Helper()
	b := redistest.Open(t, k)
	cfg.Prefix = b.Prefix
	s, err := NewRedisStore(b.Client, cfg)
	require.NoError(t, err)
	return s
}

// advance moves the store's clock by d, freezing it first at the time of the first call.
func (s *RedisStore) advance(d time.Duration) {
	s.fake.CompareAndSwap(0, time.Now().UnixMilli())
	s.fake.Add(d.Milliseconds())
}
