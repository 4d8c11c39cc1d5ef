package redistest

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

// KillSubscriptions closes, with CLIENT KILL ID, the pub/sub connections of the clients named
// name (their Options.ClientName) and returns how many it closed: on admin's one server, or on
// every node of a Cluster. It touches no other connection, since the servers are shared with
// other tests (CLIENT KILL TYPE would close theirs too).
func KillSubscriptions(t testing.TB, admin redis.UniversalClient, name string) int {
	t.Helper()
	var killed atomic.Int32
	kill := func(ctx context.Context, r *redis.Client) error {
		list, err := r.ClientList(ctx).Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(list, "\n") {
			if strings.Contains(line, " name="+name+" ") && strings.Contains(line, " sub=1 ") {
				id := strings.TrimPrefix(strings.Fields(line)[0], "id=")
				if err := r.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
					return err
				}
				killed.Add(1)
			}
		}
		return nil
	}
	ctx := context.Background()
	var err error
	switch r := admin.(type) {
	case *redis.ClusterClient:
		err = r.ForEachShard(ctx, kill) // concurrently: hence the atomic count
	case *redis.Client:
		err = kill(ctx, r)
	default:
		t.Fatalf("redistest: KillSubscriptions on a %T", admin)
	}
	if err != nil {
		t.Fatalf("redistest: killing the subscriptions of %q: %v", name, err)
	}
	return int(killed.Load())
}
