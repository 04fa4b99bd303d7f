package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

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

// A plain URL naming the primary keeps naming that node after a failover
// turns it into a replica: /readyz turns 503 and says to use a Sentinel
// URL, and submits answer 503, never 500.
func TestReadyzPrimaryTurnsReplica(t *testing.T) {
	binary(t)
	primary := redistest.Start(t)
	if primary.Embedded {
		t.Skip("needs redis-server")
	}
	replica := redistest.StartReplica(t, primary)
	prdb := primary.Client()
	s := &stack{t: t, redis: primary, rdb: prdb, http: &http.Client{Timeout: 15 * time.Second}}
	s.startAPI()
	submit := []byte(`{"type":"sleep","input":{"stages":1,"ms":0}}`)
	if r, err := s.do(http.MethodPost, "/v1/jobs", "application/json", submit); err != nil || r.status != http.StatusAccepted {
		t.Fatalf("submit before the failover: %v %v", r, err)
	}

	// The failover, by hand: the replica is promoted, the old primary
	// follows it.
	ctx := context.Background()
	if err := replica.Client().ReplicaOf(ctx, "no", "one").Err(); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(replica.Addr, ":")
	if err := prdb.ReplicaOf(ctx, host, port).Err(); err != nil {
		t.Fatal(err)
	}
	var body string
	s.waitFor(20*time.Second, "/readyz to answer 503 naming the replica", func() (bool, string) {
		r, err := s.do(http.MethodGet, "/readyz", "", nil)
		if err != nil {
			return false, err.Error()
		}
		body = string(r.body)
		return r.status == http.StatusServiceUnavailable && strings.Contains(body, "read-only replica"), fmt.Sprint(r.status, " ", body)
	})
	for _, w := range []string{"is a read-only replica (of " + replica.Addr + ")", "redis-sentinel://"} {
		if !strings.Contains(body, w) {
			t.Errorf("/readyz does not say %q: %s", w, body)
		}
	}
	for i := range 5 {
		r, err := s.do(http.MethodPost, "/v1/jobs", "application/json", submit)
		if err != nil {
			t.Fatal(err)
		}
		if r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), "replica") {
			t.Errorf("submit %d on the replica: %d %s, want 503 naming the replica", i, r.status, r.body)
		}
	}
}
