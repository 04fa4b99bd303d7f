package store

import (
	"context"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// staged dev's embedded miniredis has no INFO sections: there is no
// master identity to watch, and no error to log every few seconds.
func TestNodeIdentitiesEmbedded(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { rdb.Close() })
	ids, err := NewStore(rdb).NodeIdentities(context.Background())
	if err != nil || len(ids) != 0 {
		t.Fatalf("NodeIdentities on miniredis = %v, %v; want none, nil", ids, err)
	}
}
