package redisurl

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// MisuseError says the URL reaches Redis but the wrong kind of node: a
// Cluster node through a plain URL, or a read-only replica. Processes
// refuse to start on it and /readyz reports it.
type MisuseError struct{ Msg string }

func (e *MisuseError) Error() string { return e.Msg }

// Topology is what Check learned about the Redis behind a URL.
type Topology struct {
	// Replicas is the number of replicas connected to the primary (for a
	// Cluster, the fewest any master has), for deciding on WAIT.
	Replicas int
}

// Check asks the Redis behind c what it is (INFO replication and cluster;
// one round trip per node). A plain URL naming a Cluster node or a replica
// is a *MisuseError whose message says which URL to use. Other errors are
// Redis being unreachable. Servers that do not know INFO's sections (the
// embedded miniredis) pass.
func Check(ctx context.Context, c *Conn, rdb redis.UniversalClient) (Topology, error) {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		t := Topology{Replicas: -1}
		err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			info, err := m.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			n := connectedReplicas(info)
			if t.Replicas < 0 || n < t.Replicas {
				t.Replicas = n
			}
			return nil
		})
		t.Replicas = max(t.Replicas, 0)
		return t, err
	}
	info, err := rdb.Info(ctx, "replication", "cluster").Result()
	if err != nil {
		var re redis.Error
		if errors.As(err, &re) {
			return Topology{}, nil // miniredis and other servers without these sections
		}
		return Topology{}, err
	}
	if c.Kind == Single && field(info, "cluster_enabled") == "1" {
		host := c.Options.Addrs[0]
		return Topology{}, &MisuseError{Msg: fmt.Sprintf("%s is a node of a Redis Cluster: use redis+cluster://%s (add more nodes after a comma; rediss+cluster:// for TLS) so that staged follows the Cluster's slots", c.Shown, host)}
	}
	if field(info, "role") == "slave" {
		primary := field(info, "master_host") + ":" + field(info, "master_port")
		return Topology{}, &MisuseError{Msg: fmt.Sprintf("%s is a read-only replica (of %s): point STAGED_REDIS_URL at the primary, or with Sentinel use redis-sentinel://SENTINEL:26379,.../0?master=NAME so that staged follows failovers", c.Shown, primary)}
	}
	return Topology{Replicas: connectedReplicas(info)}, nil
}

func connectedReplicas(info string) int {
	n := 0
	fmt.Sscan(field(info, "connected_slaves"), &n)
	return n
}

// field returns the value of "name:value" in an INFO reply.
func field(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}
