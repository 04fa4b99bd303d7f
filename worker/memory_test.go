package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/builtin"
	"github.com/staged-dev/staged/internal/store"
	"github.com/staged-dev/staged/tasks"
)

// Memory targets of issue 12: a finished default chain job takes at most
// 4 KB of Redis, and any built-in job at most 64 KiB whatever its stage
// count and duration, finished or (sampled while it runs) live. Measured
// with MEMORY USAGE of each of the job's keys.
func TestMemoryPerJob(t *testing.T) {
	if testing.Short() {
		t.Skip("runs jobs for ~15 s")
	}
	reg := tasks.NewRegistry()
	builtin.Register(reg)
	h := newHarness(t)
	if h.srv.Embedded {
		t.Skip("MEMORY USAGE needs a real redis-server")
	}
	h.reg, h.finalOnly = reg, true
	h.store.KeepAllEvents = false
	cfg := h.config()
	cfg.Concurrency = 8
	h.start(cfg)
	ctx := context.Background()
	usage := func(id string) int64 {
		var n int64
		for _, k := range []string{store.JobKey(id), store.EventsKey(id), store.LeaseKey(id)} {
			m, err := h.rdb.MemoryUsage(ctx, k, 0).Result()
			if err == nil {
				n += m
			}
		}
		return n
	}
	jobs := []struct {
		name, typ, input string
		limit            int64
	}{
		{"default chain", "chain", `{}`, 4000},
		{"default sleep", "sleep", `{}`, 64 << 10},
		{"default train", "train", `{}`, 64 << 10},
		{"100-stage chain", "chain", `{"stages":100}`, 64 << 10},
		{"100-stage sleep 0ms", "sleep", `{"stages":100,"ms":0}`, 64 << 10},
		// Slow stages that report often: ~2 progress writes per stage.
		{"100-stage sleep 110ms", "sleep", `{"stages":100,"ms":110}`, 64 << 10},
	}
	ids := make([]string, len(jobs))
	peak := make([]int64, len(jobs))
	var wg sync.WaitGroup
	for i, jb := range jobs {
		ids[i] = submitNormalized(t, h, jb.typ, jb.input)
		wg.Add(1)
		go func() { // sample the live job's size until it finishes
			defer wg.Done()
			for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); {
				peak[i] = max(peak[i], usage(ids[i]))
				if h.job(ids[i]).State.Terminal() {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	var report strings.Builder
	for i, jb := range jobs {
		j := h.wait(ids[i], api.StateSucceeded, time.Minute)
		n := usage(ids[i])
		hash, _ := h.rdb.MemoryUsage(ctx, store.JobKey(ids[i]), 0).Result()
		rec, _ := h.rdb.HStrLen(ctx, store.JobKey(ids[i]), "rec").Result()
		fmt.Fprintf(&report, "%-24s finished %6d B (hash %6d B, record %6d B), live peak %6d B (%d stages)\n",
			jb.name, n, hash, rec, peak[i], len(j.Stages))
		if n > jb.limit {
			t.Errorf("%s: finished job takes %d bytes of Redis, want at most %d", jb.name, n, jb.limit)
		}
		// A live chain keeps every stage's output (its data, growing
		// stage by stage) for a resume; that is the author's data.
		if peak[i] > 64<<10 && jb.typ != "chain" {
			t.Errorf("%s: live job took %d bytes of Redis, want at most %d", jb.name, peak[i], 64<<10)
		}
		if outs := outFields(t, h, ids[i]); len(outs) > 0 {
			t.Errorf("%s: succeeded job keeps its checkpoints %v", jb.name, outs)
		}
		if n, _ := h.rdb.Exists(ctx, store.EventsKey(ids[i])).Result(); n != 0 {
			t.Errorf("%s: finished job still has its event stream", jb.name)
		}
		if evs, err := h.store.Events(ctx, ids[i], "0", 10); err != nil || len(evs) != 1 || !strings.Contains(string(evs[0].Data), `"succeeded"`) {
			t.Errorf("%s: events of the finished job = %d, %v; want its final record", jb.name, len(evs), err)
		}
	}
	t.Logf("MEMORY USAGE per job (job hash + event stream):\n%s", report.String())
}

func outFields(t *testing.T, h *harness, id string) []string {
	keys, err := h.rdb.HKeys(context.Background(), store.JobKey(id)).Result()
	if err != nil {
		t.Fatal(err)
	}
	var outs []string
	for _, k := range keys {
		if strings.HasPrefix(k, "out:") {
			outs = append(outs, k)
		}
	}
	return outs
}

// submitNormalized submits a job the way the API does: input defaults
// applied, stages built from the input.
func submitNormalized(t *testing.T, h *harness, typ, input string) string {
	t.Helper()
	p := h.reg.Get(typ)
	in, err := p.Input.Normalize(json.RawMessage(input))
	if err != nil {
		t.Fatal(err)
	}
	stages, err := p.StagesFor(in)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	j := store.NewJobWith(typ, stages, "", time.Now().UTC())
	j.Digest = p.Digest() // routed to the workers with this definition
	if _, err := h.store.Create(ctx, j, "", in, api.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := store.Enqueue(ctx, h.client, j, 1, 0, time.Minute, 0); err != nil {
		t.Fatal(err)
	}
	return j.ID
}
