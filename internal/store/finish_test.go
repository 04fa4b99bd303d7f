package store_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/internal/store"
)

// activeTask enqueues an asynq task for job id on queue q and moves it to
// the active list as asynq's dequeue does (v0.26 key layout), returning its
// id.
func activeTask(t *testing.T, rdb redis.UniversalClient, q, id string) string {
	t.Helper()
	ctx := context.Background()
	c := asynq.NewClientFromRedisClient(rdb)
	info, err := c.Enqueue(asynq.NewTask("t", []byte("{}")), asynq.Queue(q), asynq.TaskID(id), asynq.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	p := "asynq:{" + q + "}:"
	if err := rdb.LMove(ctx, p+"pending", p+"active", "RIGHT", "LEFT").Err(); err != nil {
		t.Fatal(err)
	}
	rdb.ZAdd(ctx, p+"lease", redis.Z{Score: float64(time.Now().Add(30 * time.Second).Unix()), Member: info.ID})
	rdb.HSet(ctx, p+"t:"+info.ID, "state", "active")
	return info.ID
}

// cmdCalls is how many times Redis ran command cmd (INFO commandstats,
// with those run by scripts).
func cmdCalls(t *testing.T, rdb redis.UniversalClient, cmd string) int64 {
	t.Helper()
	for _, l := range strings.Split(rdb.Info(context.Background(), "commandstats").Val(), "\n") {
		if rest, ok := strings.CutPrefix(l, "cmdstat_"+cmd+":calls="); ok {
			n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
			return n
		}
	}
	return 0
}

// A succeeded job's final write on a single node completes its asynq task
// as asynq's MarkAsComplete does: asynqmon sees it completed, with its
// result and completion time, and the processed counters count it. Given
// the task's message (TaskEnd.Msg, from the dequeue), the write does not
// read it.
func TestFinalSaveCompletesTask(t *testing.T) {
	for _, known := range []bool{false, true} {
		t.Run(map[bool]string{false: "read-msg", true: "given-msg"}[known], func(t *testing.T) {
			testFinalSaveCompletesTask(t, known)
		})
	}
}

func testFinalSaveCompletesTask(t *testing.T, known bool) {
	ctx := context.Background()
	srv := redistest.Start(t)
	rdb := srv.Client()
	s := store.NewStore(rdb)
	j := newJob(t, s, "acme")
	tid := activeTask(t, rdb, "q1", j.ID)
	c, err := s.Claim(ctx, j.ID, 1, time.Minute)
	if err != nil || c.Outcome != store.ClaimOK {
		t.Fatalf("claim: %v %v", c, err)
	}
	msg := ""
	if known {
		msg = rdb.HGet(ctx, "asynq:{q1}:t:"+tid, "msg").Val()
	}
	j.State = api.StateSucceeded
	before := time.Now().Add(-time.Second)
	hgets := cmdCalls(t, rdb, "hget")
	res, err := s.Save(ctx, j, c.Token, store.SaveArgs{TTL: time.Minute,
		Task: &store.TaskEnd{Queue: "q1", ID: tid, Result: []byte(`{"state":"succeeded"}`), Complete: true, Retention: time.Hour, Msg: msg}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.TaskCompleted {
		t.Fatal("TaskCompleted = false, want true")
	}
	if n := cmdCalls(t, rdb, "hget") - hgets; known && n != 0 {
		t.Errorf("the write given the task's message ran HGET %d times, want 0", n)
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	ti, err := insp.GetTaskInfo("q1", tid)
	if err != nil {
		t.Fatal(err)
	}
	if ti.State != asynq.TaskStateCompleted || string(ti.Result) != `{"state":"succeeded"}` || ti.CompletedAt.Before(before) {
		t.Errorf("task: state %v, result %q, completed at %v; want completed, the result, now", ti.State, ti.Result, ti.CompletedAt)
	}
	if ti.Retention != time.Hour || string(ti.Payload) != "{}" || ti.Type != "t" {
		t.Errorf("task message changed: retention %v, payload %q, type %q", ti.Retention, ti.Payload, ti.Type)
	}
	qi, err := insp.GetQueueInfo("q1")
	if err != nil {
		t.Fatal(err)
	}
	if qi.Active != 0 || qi.Completed != 1 || qi.Processed != 1 || qi.ProcessedTotal != 1 || qi.Failed != 0 {
		t.Errorf("queue: active %d, completed %d, processed %d (total %d), failed %d; want 0, 1, 1 (1), 0",
			qi.Active, qi.Completed, qi.Processed, qi.ProcessedTotal, qi.Failed)
	}
	if n := rdb.ZCard(ctx, "asynq:{q1}:lease").Val(); n != 0 {
		t.Errorf("asynq lease set holds %d tasks, want 0", n)
	}
	// Sent again (its reply lost), the write finds its own completion and
	// counts nothing twice.
	res, err = s.Save(ctx, j, c.Token, store.SaveArgs{TTL: time.Minute,
		Task: &store.TaskEnd{Queue: "q1", ID: tid, Result: []byte(`{"state":"succeeded"}`), Complete: true, Retention: time.Hour, Msg: msg}})
	if err != nil || !res.TaskCompleted {
		t.Errorf("the write sent again: completed %v, err %v; want true, nil", res.TaskCompleted, err)
	}
	if qi, _ := insp.GetQueueInfo("q1"); qi.Processed != 1 || qi.Completed != 1 {
		t.Errorf("the write sent again counted twice: processed %d, completed %d", qi.Processed, qi.Completed)
	}
	day := "asynq:{q1}:processed:" + time.Now().UTC().Format("2006-01-02")
	if ttl := rdb.TTL(ctx, day).Val(); ttl < 80*24*time.Hour {
		t.Errorf("TTL of %s = %v, want about 90 days", day, ttl)
	}

	// A task no longer active (asynq's recoverer moved it) is left alone
	// but for its result; asynq's own completion then fails as before.
	j2 := newJob(t, s, "acme")
	tid2 := activeTask(t, rdb, "q1", j2.ID)
	rdb.LRem(ctx, "asynq:{q1}:active", 0, tid2)
	c2, _ := s.Claim(ctx, j2.ID, 1, time.Minute)
	msg2 := ""
	if known {
		msg2 = rdb.HGet(ctx, "asynq:{q1}:t:"+tid2, "msg").Val()
	}
	j2.State = api.StateSucceeded
	res, err = s.Save(ctx, j2, c2.Token, store.SaveArgs{TTL: time.Minute,
		Task: &store.TaskEnd{Queue: "q1", ID: tid2, Result: []byte("r2"), Complete: true, Retention: time.Hour, Msg: msg2}})
	if err != nil || res.TaskCompleted {
		t.Fatalf("save of a task not active: completed %v, err %v; want false, nil", res.TaskCompleted, err)
	}
	if r := rdb.HGet(ctx, "asynq:{q1}:t:"+tid2, "result").Val(); r != "r2" {
		t.Errorf("result of a task not active = %q, want r2", r)
	}
	if qi, _ := insp.GetQueueInfo("q1"); qi.Processed != 1 || qi.Completed != 1 {
		t.Errorf("a task not active was counted: processed %d, completed %d", qi.Processed, qi.Completed)
	}
}

// On a Cluster the task's slot is not the job's: the final write sets its
// result in a command of its own and leaves the completion to asynq.
func TestFinalSaveTaskOnCluster(t *testing.T) {
	ctx := context.Background()
	cl := redistest.StartCluster(t, 3)
	rdb := cl.Client(t)
	s := store.NewStore(rdb)
	j := newJob(t, s, "acme")
	tid := activeTask(t, rdb, "q1", j.ID)
	c, err := s.Claim(ctx, j.ID, 1, time.Minute)
	if err != nil || c.Outcome != store.ClaimOK {
		t.Fatalf("claim: %v %v", c, err)
	}
	j.State = api.StateSucceeded
	res, err := s.Save(ctx, j, c.Token, store.SaveArgs{TTL: time.Minute,
		Task: &store.TaskEnd{Queue: "q1", ID: tid, Result: []byte("r"), Complete: true, Retention: time.Hour}})
	if err != nil || res.TaskCompleted {
		t.Fatalf("save: completed %v, err %v; want false, nil", res.TaskCompleted, err)
	}
	if r := rdb.HGet(ctx, "asynq:{q1}:t:"+tid, "result").Val(); r != "r" {
		t.Errorf("task result = %q, want r", r)
	}
	if n := rdb.LLen(ctx, "asynq:{q1}:active").Val(); n != 1 {
		t.Errorf("active tasks = %d, want 1 (asynq completes it)", n)
	}
	if got, err := s.Get(ctx, j.ID, ""); err != nil || got.State != api.StateSucceeded {
		t.Errorf("record: %v, %v; want succeeded", got, err)
	}
}

// A finished job that never had an event stream gets its final event id
// without one being created, after every id the job had before (here a
// previous run's final id from the future), so that SSE resumes exactly.
func TestFinalEventIDWithoutStream(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client()
	s := store.NewStore(rdb)
	j := newJob(t, s, "acme")
	c, _ := s.Claim(ctx, j.ID, 1, time.Minute)
	rdb.HSet(ctx, store.JobKey(j.ID), "eid", "99999999999999-7")
	xadds := func() string {
		for _, l := range strings.Split(rdb.Info(ctx, "commandstats").Val(), "\n") {
			if strings.HasPrefix(l, "cmdstat_xadd:") {
				return l
			}
		}
		return ""
	}
	before := xadds()
	j.State = api.StateSucceeded
	res, err := s.Save(ctx, j, c.Token, store.SaveArgs{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if res.EventID != "99999999999999-8" {
		t.Errorf("final event id %q, want 99999999999999-8", res.EventID)
	}
	if after := xadds(); after != before {
		t.Errorf("the final write created a stream: %q, then %q", before, after)
	}
	evs, err := s.Events(ctx, j.ID, "99999999999999-7", 10)
	if err != nil || len(evs) != 1 || evs[0].ID != res.EventID {
		t.Fatalf("events after the previous id: %v, %v; want the final one", evs, err)
	}

	// Without an earlier id, it is the time's: at any time, and at the
	// start of a second (the milliseconds' leading zeros), which the loop
	// waits for on the server's clock.
	for i := range 2 {
		j2 := newJob(t, s, "acme")
		c2, _ := s.Claim(ctx, j2.ID, 1, time.Minute)
		j2.State = api.StateSucceeded
		for deadline := time.Now().Add(3 * time.Second); i == 1; {
			if now, err := rdb.Time(ctx).Result(); err != nil || now.Nanosecond() < 5e6 || time.Now().After(deadline) {
				break
			}
		}
		t0 := time.Now().Add(-time.Second).UnixMilli()
		res, err = s.Save(ctx, j2, c2.Token, store.SaveArgs{TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		t1 := time.Now().Add(time.Second).UnixMilli()
		ms, seq, _ := strings.Cut(res.EventID, "-")
		if n, err := strconv.ParseInt(ms, 10, 64); err != nil || len(ms) != 13 || n < t0 || n > t1 || seq != "0" {
			t.Fatalf("final event id %q, want <now ms>-0", res.EventID)
		}
	}
}

// A succeeded write drops the checkpoints it is told of (SaveArgs.
// Checkpoints), without looking for others; with none given, all of them.
func TestFinalSaveDropsCheckpoints(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Start(t).Client()
	s := store.NewStore(rdb)
	for _, known := range []bool{true, false} {
		j := newJob(t, s, "acme")
		c, _ := s.Claim(ctx, j.ID, 1, time.Minute)
		if _, err := s.Save(ctx, j, c.Token, store.SaveArgs{Fields: map[string][]byte{"out:0": []byte("a"), "out:1": []byte("b")}}); err != nil {
			t.Fatal(err)
		}
		j.State = api.StateSucceeded
		a := store.SaveArgs{TTL: time.Minute}
		if known {
			a.Checkpoints = []string{"out:0"}
		}
		if _, err := s.Save(ctx, j, c.Token, a); err != nil {
			t.Fatal(err)
		}
		got := rdb.HMGet(ctx, store.JobKey(j.ID), "out:0", "out:1").Val()
		if got[0] != nil || (got[1] != nil) != known {
			t.Errorf("known %v: out:0, out:1 = %v; want nil, %v", known, got, map[bool]string{true: "b", false: "nil"}[known])
		}
	}
}

// The final write of a job's first owner knows without looking (EXISTS)
// whether the job has an event stream: none while the claim's mark (ns)
// is there, which the owner's first write to the stream drops. A later
// owner (a takeover) looks, and deletes the stream an earlier one made.
func TestFinalSaveKnowsItsStream(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	rdb := srv.Client()
	s := store.NewStore(rdb)
	exists := func() int64 {
		if srv.Embedded { // miniredis has no commandstats: the counts are not checked
			return 0
		}
		return redistest.CommandCalls(t, rdb, "exists")
	}
	finish := func(j *api.Job, token int64) string {
		t.Helper()
		j.State = api.StateSucceeded
		res, err := s.Save(ctx, j, token, store.SaveArgs{TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if n := rdb.XLen(ctx, store.EventsKey(j.ID)).Val(); n != 0 { // XLEN: not an EXISTS
			t.Fatalf("job %s: the stream stays after the final write (%d entries)", j.ID, n)
		}
		return res.EventID
	}

	// No write before the final one: no stream, and no look for one.
	j := newJob(t, s, "acme")
	c, _ := s.Claim(ctx, j.ID, 1, time.Minute)
	if c.Token != 1 || rdb.HGet(ctx, store.JobKey(j.ID), "ns").Val() != "1" {
		t.Fatalf("the first claim (token %d) did not mark the job as streamless", c.Token)
	}
	before := exists()
	finish(c.Job, c.Token)
	if n := exists() - before; n != 0 {
		t.Errorf("the first owner's final write looked for the stream (%d EXISTS)", n)
	}

	// A running write makes the stream and drops the mark; the final write
	// appends to it (its id follows the stream's) and deletes it.
	j = newJob(t, s, "acme")
	c, _ = s.Claim(ctx, j.ID, 1, time.Minute)
	c.Job.State = api.StateRunning
	run, err := s.Save(ctx, c.Job, c.Token, store.SaveArgs{})
	if err != nil {
		t.Fatal(err)
	}
	if rdb.HExists(ctx, store.JobKey(j.ID), "ns").Val() {
		t.Fatalf("the mark stays after the stream was made")
	}
	if id := finish(c.Job, c.Token); !idAfter(id, run.EventID) {
		t.Errorf("final id %s does not follow the running write's %s", id, run.EventID)
	}

	// A takeover's owner (token 3) looks for the stream the first owner made.
	j = newJob(t, s, "acme")
	c, _ = s.Claim(ctx, j.ID, 1, time.Minute)
	c.Job.State = api.StateRunning
	run, _ = s.Save(ctx, c.Job, c.Token, store.SaveArgs{})
	rdb.Del(ctx, store.LeaseKey(j.ID))
	h, err := s.Handoff(ctx, j.ID, 0)
	if err != nil || h.Outcome != store.HandoffOK {
		t.Fatalf("takeover: %v %+v", err, h)
	}
	c2, _ := s.Claim(ctx, j.ID, h.Gen, time.Minute)
	before = exists()
	if id := finish(c2.Job, c2.Token); !idAfter(id, run.EventID) {
		t.Errorf("final id %s does not follow the first owner's %s", id, run.EventID)
	}
	if n := exists() - before; n != 1 && !srv.Embedded {
		t.Errorf("a later owner's final write: %d EXISTS, want 1", n)
	}
}

// idAfter reports whether stream id a sorts after b.
func idAfter(a, b string) bool {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	if len(am) != len(bm) {
		return len(am) > len(bm)
	}
	if am != bm {
		return am > bm
	}
	x, _ := strconv.Atoi(as)
	y, _ := strconv.Atoi(bs)
	return x > y
}
