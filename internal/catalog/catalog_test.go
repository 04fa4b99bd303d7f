package catalog

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/tasks"
)

func pipeline(name string, stages ...string) *tasks.Pipeline {
	p := &tasks.Pipeline{Name: name, Description: "test " + name}
	for _, s := range stages {
		p.Stages = append(p.Stages, tasks.Stage{Name: s, Run: func(context.Context, json.RawMessage, tasks.Progress) (any, error) { return nil, nil }})
	}
	return p
}

// TestPublishLoadExpire: a worker's definitions and instance are in the
// catalogue while it beats; two definitions of one name sort the live,
// newest one first; Stop removes the instance at once; every key has a TTL
// and the catalogue is empty once the TTLs pass with no worker.
func TestPublishLoadExpire(t *testing.T) {
	r := redistest.Start(t)
	rdb := r.Client()
	ctx := context.Background()

	v1 := NewPublisher(rdb, tasks.NewRegistry(pipeline("crawl", "fetch", "parse"), pipeline("train", "a")),
		PublisherConfig{Heartbeat: 100 * time.Millisecond, DefinitionTTL: 2 * time.Second})
	v1.Start(ctx)
	snap, err := Load(ctx, rdb, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.Names(); len(got) != 2 || got[0] != "crawl" || got[1] != "train" {
		t.Fatalf("names = %v", got)
	}
	es, _ := snap.Entries("crawl")
	if len(es) != 1 || es[0].Workers != 1 || len(snap.Instances) != 1 || snap.Instances[0].ID != v1.ID() {
		t.Fatalf("entries %+v, instances %+v", es, snap.Instances)
	}
	if p, err := es[0].Pipeline(); err != nil || len(p.Stages) != 2 {
		t.Fatalf("pipeline = %+v, %v", p, err)
	}

	// A rolling deploy: v2 changes crawl's stages. New jobs go to v2.
	v2 := NewPublisher(rdb, tasks.NewRegistry(pipeline("crawl", "fetch", "parse", "store")),
		PublisherConfig{Heartbeat: 100 * time.Millisecond, DefinitionTTL: 2 * time.Second})
	v2.Start(ctx)
	snap, _ = Load(ctx, rdb, snap)
	es, _ = snap.Entries("crawl")
	if len(es) != 2 || len(es[0].Def.Stages) != 3 || es[0].Workers != 1 || es[1].Workers != 1 || snap.WorkersOf("crawl") != 2 {
		t.Fatalf("after v2: %+v %+v", es[0], es[1])
	}
	v2.Stop()
	snap, _ = Load(ctx, rdb, snap)
	es, _ = snap.Entries("crawl")
	if len(es) != 2 || len(es[0].Def.Stages) != 2 || es[0].Workers != 1 || es[1].Workers != 0 {
		t.Fatalf("after v2 stopped, the live v1 should come first: %+v %+v", es[0], es[1])
	}

	for _, k := range rdb.Keys(ctx, "staged:catalog:*").Val() {
		if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 {
			t.Errorf("key %s has no TTL (%v)", k, ttl)
		}
	}
	v1.Stop()
	snap, _ = Load(ctx, rdb, snap)
	if snap.WorkersOf("crawl") != 0 || len(snap.Instances) != 0 || len(snap.Names()) != 2 {
		t.Fatalf("after all stopped: workers %d, instances %d, names %v", snap.WorkersOf("crawl"), len(snap.Instances), snap.Names())
	}
	redistest.Eventually(t, 10*time.Second, "the catalogue keys expire", func() bool {
		return len(rdb.Keys(ctx, "staged:catalog:*").Val()) == 0
	})
	if snap, _ = Load(ctx, rdb, snap); len(snap.Names()) != 0 {
		t.Errorf("names after expiry = %v", snap.Names())
	}
}

// TestCacheLearnsAtOnce: a Cache that runs learns a new worker's pipeline
// from the change notification, long before its periodic refresh.
func TestCacheLearnsAtOnce(t *testing.T) {
	r := redistest.Start(t)
	rdb := r.Client()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := NewCache(rdb, time.Hour, nil)
	if s, err := c.Get(ctx, 0); err != nil || len(s.Names()) != 0 {
		t.Fatalf("empty catalogue: %v %v", s, err)
	}
	go c.Run(ctx)
	// Run subscribes asynchronously: publish until the cache has heard.
	p := NewPublisher(rdb, tasks.NewRegistry(pipeline("crawl", "a")), PublisherConfig{Heartbeat: time.Hour})
	redistest.Eventually(t, 5*time.Second, "the cache learns crawl", func() bool {
		p.Publish(ctx, true)
		s, _ := c.Get(ctx, 0)
		return s.WorkersOf("crawl") == 1
	})
	p.Stop()
	redistest.Eventually(t, 5*time.Second, "the cache sees the worker go", func() bool {
		s, _ := c.Get(ctx, 0)
		return s.WorkersOf("crawl") == 0
	})
}

func TestQueueName(t *testing.T) {
	q := QueueName("default", "my {crawl}:x", "0123456789abcdef")
	if q != "default:my__crawl__x:01234567" {
		t.Errorf("QueueName = %q", q)
	}
	if queue, name, d8, ok := ParseQueueName(q); !ok || queue != "default" || name != "my__crawl__x" || d8 != "01234567" {
		t.Errorf("ParseQueueName = %s %s %s %v", queue, name, d8, ok)
	}
	if _, _, _, ok := ParseQueueName("default"); ok {
		t.Error("a plain queue parsed")
	}
}

// TestSafeNameFast: a name with nothing to replace skips the regexp (one
// allocation for QueueName's concatenation, where the regexp takes four
// more), and isSafeName agrees with unsafeChars on every byte.
func TestSafeNameFast(t *testing.T) {
	for c := 0; c < 256; c++ {
		s := "a" + string([]byte{byte(c)})
		if got, want := isSafeName(s), !unsafeChars.MatchString(s); got != want {
			t.Errorf("isSafeName(%q) = %v, want %v", s, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { QueueName("default", "sleep-v2.x_Y", "0123456789abcdef") }); n > 1 {
		t.Errorf("QueueName of a safe name: %v allocations, want 1", n)
	}
}
