package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/internal/store"
)

// shardWatch reads a ShardSub's output in the background and answers
// whether a channel got a message with a payload, or a (re)subscription.
type shardWatch struct {
	msgs chan *redis.Message
	subs chan string
}

func watchShardSub(p *store.ShardSub) *shardWatch {
	w := &shardWatch{msgs: make(chan *redis.Message, 1024), subs: make(chan string, 1024)}
	go func() {
		for m := range p.C() {
			switch m := m.(type) {
			case *redis.Message:
				w.msgs <- m
			case *redis.Subscription:
				if m.Kind == "ssubscribe" {
					w.subs <- m.Channel
				}
			}
		}
		close(w.msgs)
	}()
	return w
}

// waitSubscribed waits until every channel of chs was (re)subscribed.
func (w *shardWatch) waitSubscribed(t *testing.T, chs ...string) {
	t.Helper()
	left := map[string]bool{}
	for _, ch := range chs {
		left[ch] = true
	}
	deadline := time.After(30 * time.Second)
	for len(left) > 0 {
		select {
		case ch := <-w.subs:
			delete(left, ch)
		case <-deadline:
			t.Fatalf("not (re)subscribed within 30s: %v", left)
		}
	}
}

// waitMessage waits for payload on ch, skipping other messages.
func (w *shardWatch) waitMessage(t *testing.T, ch, payload string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case m := <-w.msgs:
			if m.Channel == ch && m.Payload == payload {
				return
			}
		case <-deadline:
			t.Fatalf("no message %q on %s within 30s", payload, ch)
		}
	}
}

// channelsOn returns n shard channels whose slots (all different) are on
// master addr.
func channelsOn(t *testing.T, ctx context.Context, cc *redis.ClusterClient, addr string, n int) []string {
	t.Helper()
	var out []string
	for i := 0; len(out) < n; i++ {
		ch := store.EventsShardChannel("j" + strconv.Itoa(i))
		node, err := cc.MasterForKey(ctx, ch)
		if err != nil {
			t.Fatal(err)
		}
		if node.Options().Addr == addr {
			out = append(out, ch)
		}
	}
	return out
}

// TestShardSub subscribes to shard channels on every master of a 3-master
// Cluster, two of them in different slots of one master, and keeps
// receiving what is SPUBLISHed on them across a restart of that master
// (go-redis's own resubscription would send both in one SSUBSCRIBE,
// refused with CROSSSLOT) and across a move of a channel's slot to
// another master (Redis unsubscribes the old master's subscribers).
func TestShardSub(t *testing.T) {
	ctx := context.Background()
	c := redistest.StartCluster(t, 3)
	cc := c.Client(t)
	if sharded, err := store.ShardedPubSub(ctx, cc); err != nil || !sharded {
		t.Fatalf("ShardedPubSub on a Redis 7 Cluster = %v, %v; want true", sharded, err)
	}
	if sharded, err := store.ShardedPubSub(ctx, c.Nodes[0].Client()); err != nil || sharded {
		t.Fatalf("ShardedPubSub on one server = %v, %v; want false", sharded, err)
	}
	for _, k := range []string{"staged:ev:{a}", "asynq:{default}:pending", "{}x", "plain", "a{b}c{d}", store.WakeShardChannel("crit")} {
		want := clusterKeySlot(t, ctx, c.Nodes[0].Client(), k)
		if got := store.Slot(k); int64(got) != want {
			t.Errorf("Slot(%q) = %d, CLUSTER KEYSLOT says %d", k, got, want)
		}
	}
	p := store.NewShardSub(cc, slog.New(slog.NewTextHandler(testWriter{t}, nil)), store.EventsChannel)
	defer p.Close()
	w := watchShardSub(p)

	first := c.Nodes[0]
	two := channelsOn(t, ctx, cc, first.Addr, 2)
	var chs []string
	chs = append(chs, two...)
	for _, n := range c.Nodes[1:] {
		chs = append(chs, channelsOn(t, ctx, cc, n.Addr, 1)...)
	}
	p.SSubscribe(chs...)
	w.waitSubscribed(t, chs...)
	publishAll := func(round string) {
		t.Helper()
		for _, ch := range chs {
			if err := cc.SPublish(ctx, ch, round).Err(); err != nil {
				t.Fatalf("SPUBLISH %s: %v", ch, err)
			}
			w.waitMessage(t, ch, round)
		}
	}
	publishAll("before")

	// Every master holds only its own channels' subscriptions.
	for _, n := range c.Nodes {
		num := numShardSubs(t, ctx, n.Client(), chs)
		for _, ch := range chs {
			node, _ := cc.MasterForKey(ctx, ch)
			want := int64(0)
			if node.Options().Addr == n.Addr {
				want = 1
			}
			if num[ch] != want {
				t.Errorf("PUBSUB SHARDNUMSUB %s on %s = %d, want %d", ch, n.Addr, num[ch], want)
			}
		}
	}

	// A restart of the master holding two slots' channels.
	first.Restart()
	w.waitSubscribed(t, two...)
	redistest.Eventually(t, 30*time.Second, "the Cluster to be ok again", func() bool {
		info, err := first.Client().ClusterInfo(ctx).Result()
		return err == nil && strings.Contains(info, "cluster_state:ok")
	})
	publishAll("after restart")

	// Move the slot of the first channel to the next master.
	slot := clusterKeySlot(t, ctx, first.Client(), two[0])
	target := c.Nodes[1]
	targetID, err := target.Client().ClusterMyID(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*redistest.Server{target, first, c.Nodes[2]} {
		if err := n.Client().Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", targetID).Err(); err != nil {
			t.Fatalf("CLUSTER SETSLOT %d NODE %s on %s: %v", slot, targetID, n.Addr, err)
		}
	}
	w.waitSubscribed(t, two[0])
	redistest.Eventually(t, 30*time.Second, two[0]+" to be subscribed on its new master", func() bool {
		return numShardSubs(t, ctx, target.Client(), two[:1])[two[0]] == 1
	})
	publishAll("after the move")

	p.SUnsubscribe(chs...)
	redistest.Eventually(t, 30*time.Second, "every subscription to end", func() bool {
		for _, n := range c.Nodes {
			for ch, k := range numShardSubs(t, ctx, n.Client(), chs) {
				if k != 0 {
					t.Logf("%s still has %d subscribers on %s", ch, k, n.Addr)
					return false
				}
			}
		}
		return true
	})
}

// numShardSubs is PUBSUB SHARDNUMSUB of channels on one node (a node
// answers for the channels of its own slots only; others count 0).
func numShardSubs(t *testing.T, ctx context.Context, rdb *redis.Client, chs []string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, ch := range chs {
		res, err := rdb.Do(ctx, "PUBSUB", "SHARDNUMSUB", ch).Slice()
		if err != nil {
			t.Fatalf("PUBSUB SHARDNUMSUB: %v", err)
		}
		if len(res) == 2 {
			n, _ := res[1].(int64)
			out[ch] = n
		}
	}
	return out
}

func clusterKeySlot(t *testing.T, ctx context.Context, rdb *redis.Client, key string) int64 {
	t.Helper()
	slot, err := rdb.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(fmt.Errorf("CLUSTER KEYSLOT %s: %w", key, err))
	}
	return slot
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
