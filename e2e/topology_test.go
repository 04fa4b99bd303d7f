package e2e

import (
	"strings"
	"testing"

	"github.com/staged-dev/staged/internal/redistest"
)

// A plain redis:// URL naming a Cluster node, or a read-only replica, is
// refused at start by api and worker, with a message that says what to use.
func TestRefusesWrongRedisNode(t *testing.T) {
	binary(t)
	cluster := redistest.StartCluster(t, 3)
	primary := redistest.Start(t)
	if primary.Embedded {
		t.Skip("needs redis-server")
	}
	replica := redistest.StartReplica(t, primary)
	tests := []struct {
		name, url string
		want      []string
	}{
		{"cluster node", "redis://" + cluster.Nodes[1].Addr + "/0",
			[]string{"is a node of a Redis Cluster", "use redis+cluster://" + cluster.Nodes[1].Addr}},
		{"replica", replica.URL(),
			[]string{"is a read-only replica (of " + primary.Addr + ")", "redis-sentinel://"}},
	}
	for _, tt := range tests {
		for _, mode := range []string{"api", "worker"} {
			t.Run(tt.name+"/"+mode, func(t *testing.T) {
				p := startProc(t, mode, []string{"STAGED_REDIS_URL=" + tt.url, "STAGED_ADDR=127.0.0.1:0", "STAGED_METRICS_ADDR=off"}, mode)
				if code := p.waitExit(exitLimit); code == 0 {
					t.Fatalf("staged %s on %s exited 0", mode, tt.url)
				}
				out := p.out.String()
				for _, w := range tt.want {
					if !strings.Contains(out, w) {
						t.Errorf("output does not say %q:\n%s", w, out)
					}
				}
			})
		}
	}
}
