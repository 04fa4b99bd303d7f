package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startArgs starts a redis-server with extra arguments, stopped at cleanup;
// it needs a real redis-server (the test is skipped without one, unless
// STAGED_TEST_REDIS=required, when it fails).
func startArgs(tb testing.TB, extra ...string) *Server {
	tb.Helper()
	bin := realServer(tb)
	s := &Server{tb: tb, dir: tb.TempDir()}
	port := FreePort(tb)
	s.Addr = "127.0.0.1:" + strconv.Itoa(port)
	s.args = append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", s.dir, "--save", "",
		"--appendonly", "no", "--daemonize", "no", "--logfile", s.dir + "/redis.log", "--maxmemory-policy", "noeviction"}, extra...)
	s.start(bin)
	tb.Cleanup(s.Kill)
	return s
}

func realServer(tb testing.TB) string {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if getenv("STAGED_TEST_REDIS") == "required" {
			tb.Fatalf("redis-server not found and STAGED_TEST_REDIS=required: install redis-server")
		}
		tb.Skip("redistest: this test needs redis-server (not installed)")
	}
	return bin
}

// Cluster is a Redis Cluster of masters without replicas, on loopback.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts n redis-server processes with cluster-enabled and
// joins them into one Cluster (redis-cli --cluster create). It returns once
// every node says the Cluster is ok, knows all n nodes, has every slot
// assigned and served, and maps the slots to the same n masters: the state
// a client's first CLUSTER SLOTS must see. On a loaded machine the join
// takes longer; nothing here waits a fixed time. They are stopped at cleanup.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	c := &Cluster{}
	var addrs []string
	for range n {
		s := startArgs(tb, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000")
		c.Nodes = append(c.Nodes, s)
		addrs = append(addrs, s.Addr)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		tb.Fatalf("redis-cli is needed to create a Cluster: %v", err)
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	ctx := context.Background()
	for _, s := range c.Nodes {
		rdb := redis.NewClient(&redis.Options{Addr: s.Addr})
		var last string
		deadline := time.Now().Add(60 * time.Second)
		for {
			ok, why := clusterReady(ctx, rdb, n)
			if ok {
				break
			}
			if why != last {
				tb.Logf("redistest: cluster node %s not ready yet: %s", s.Addr, why)
				last = why
			}
			if time.Now().After(deadline) {
				rdb.Close()
				tb.Fatalf("redistest: cluster node %s not ready after 60s: %s", s.Addr, why)
			}
			time.Sleep(50 * time.Millisecond)
		}
		rdb.Close()
	}
	return c
}

// clusterReady says whether the node rdb sees a whole Cluster of n
// masters, and if not, why.
func clusterReady(ctx context.Context, rdb *redis.Client, n int) (bool, string) {
	info, err := rdb.ClusterInfo(ctx).Result()
	if err != nil {
		return false, err.Error()
	}
	for _, want := range []string{"cluster_state:ok", "cluster_slots_assigned:16384", "cluster_slots_ok:16384",
		"cluster_known_nodes:" + strconv.Itoa(n), "cluster_size:" + strconv.Itoa(n)} {
		if !strings.Contains(info, want+"\r\n") && !strings.HasSuffix(strings.TrimSpace(info), want) {
			return false, "CLUSTER INFO lacks " + want
		}
	}
	slots, err := rdb.ClusterSlots(ctx).Result()
	if err != nil {
		return false, err.Error()
	}
	covered, masters := 0, map[string]bool{}
	for _, r := range slots {
		if len(r.Nodes) == 0 || r.Nodes[0].Addr == "" {
			return false, "CLUSTER SLOTS has a range without a master"
		}
		covered += r.End - r.Start + 1
		masters[r.Nodes[0].Addr] = true
	}
	if covered != 16384 || len(masters) != n {
		return false, fmt.Sprintf("CLUSTER SLOTS covers %d slots on %d masters", covered, len(masters))
	}
	return true, ""
}

// URL is the redis+cluster:// URL naming every node.
func (c *Cluster) URL() string {
	var addrs []string
	for _, s := range c.Nodes {
		addrs = append(addrs, s.Addr)
	}
	return "redis+cluster://" + strings.Join(addrs, ",")
}

// Client returns a go-redis ClusterClient, closed at cleanup.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	var addrs []string
	for _, s := range c.Nodes {
		addrs = append(addrs, s.Addr)
	}
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	tb.Cleanup(func() { rdb.Close() })
	return rdb
}

// StartReplica starts a redis-server replicating primary and waits until
// the link is up (master_link_status:up).
func StartReplica(tb testing.TB, primary *Server) *Server {
	tb.Helper()
	host, port, _ := strings.Cut(primary.Addr, ":")
	r := startArgs(tb, "--replicaof", host, port)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	Eventually(tb, 20*time.Second, r.Addr+" to replicate "+primary.Addr, func() bool {
		info, err := rdb.Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	return r
}

// Sentinels is a primary with one replica watched by three sentinels.
type Sentinels struct {
	Primary, Replica *Server
	Sentinels        []*Server
	Master           string // the name the sentinels know the primary by
}

// StartSentinel starts a primary, a replica and three sentinels (quorum 2)
// that fail over quickly, and waits until every sentinel knows the replica
// and the other sentinels.
func StartSentinel(tb testing.TB) *Sentinels {
	tb.Helper()
	st := &Sentinels{Master: "stagedmaster"}
	st.Primary = startArgs(tb)
	st.Replica = StartReplica(tb, st.Primary)
	host, port, _ := strings.Cut(st.Primary.Addr, ":")
	for range 3 {
		s := &Server{tb: tb, dir: tb.TempDir()}
		p := FreePort(tb)
		s.Addr = "127.0.0.1:" + strconv.Itoa(p)
		conf := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s/sentinel.log\n"+
			"sentinel monitor %s %s %s 2\nsentinel down-after-milliseconds %s 1000\n"+
			"sentinel failover-timeout %s 5000\nsentinel parallel-syncs %s 1\n",
			p, s.dir, s.dir, st.Master, host, port, st.Master, st.Master, st.Master)
		file := s.dir + "/sentinel.conf"
		if err := writeFile(file, conf); err != nil {
			tb.Fatal(err)
		}
		s.args = []string{file, "--sentinel"}
		s.start(realServer(tb))
		tb.Cleanup(s.Kill)
		st.Sentinels = append(st.Sentinels, s)
	}
	for _, s := range st.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr})
		Eventually(tb, 30*time.Second, "sentinel "+s.Addr+" to see the replica and 2 other sentinels", func() bool {
			m, err := sc.Master(context.Background(), st.Master).Result()
			return err == nil && m["num-slaves"] == "1" && m["num-other-sentinels"] == "2"
		})
		sc.Close()
	}
	return st
}

// URL is the redis-sentinel:// URL of the sentinels.
func (st *Sentinels) URL() string {
	var addrs []string
	for _, s := range st.Sentinels {
		addrs = append(addrs, s.Addr)
	}
	return "redis-sentinel://" + strings.Join(addrs, ",") + "/0?master=" + st.Master
}
