package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// latency submits -latency-n jobs one at a time, irregularly spaced (the
// peers' 37+i*13%200 ms), to an idle worker with staged's default settings,
// and reads from each finished record how long it took from created_at
// (set by the API before it writes anything) to stages[0].started_at (set
// by the worker as the first stage starts).
func latency(ctx context.Context, e *env) (*result, error) {
	a, err := e.startAPI(ctx)
	if err != nil {
		return nil, err
	}
	defer a.stop()
	w, err := e.startWorker(0)
	if err != nil {
		return nil, err
	}
	defer w.stop()
	settle := 2 * time.Second
	if e.o.latencyN < 10 {
		settle = 500 * time.Millisecond // smoke runs
	}
	if err := sleepCtx(ctx, settle); err != nil {
		return nil, err
	}
	body := e.submitBody()
	var starts, finishes []time.Duration
	for i := range e.o.latencyN {
		if err := sleepCtx(ctx, time.Duration(37+i*13%200)*time.Millisecond); err != nil {
			return nil, err
		}
		_, raw, err := postJob(ctx, a.url+"/v1/jobs?wait=10s", body)
		if err != nil {
			return nil, err
		}
		var rec struct {
			State     string    `json:"state"`
			CreatedAt time.Time `json:"created_at"`
			Stages    []struct {
				StartedAt *time.Time `json:"started_at"`
			} `json:"stages"`
			FinishedAt *time.Time `json:"finished_at"`
		}
		if err := json.Unmarshal(raw, &rec); err != nil {
			return nil, fmt.Errorf("record %s: %w", raw, err)
		}
		if len(rec.Stages) == 0 || rec.Stages[0].StartedAt == nil || rec.FinishedAt == nil {
			return nil, fmt.Errorf("job not finished within 10s (state %s): %s", rec.State, raw)
		}
		starts = append(starts, rec.Stages[0].StartedAt.Sub(rec.CreatedAt))
		finishes = append(finishes, rec.FinishedAt.Sub(rec.CreatedAt))
	}
	p50, p99, mx := percentiles(starts)
	f50, f99, _ := percentiles(finishes)
	r := newResult("latency")
	r.set("p50_ms", ms(p50))
	r.set("p99_ms", ms(p99))
	r.set("max_ms", ms(mx))
	r.set("n", e.o.latencyN)
	r.set("finish_p50_ms", ms(f50))
	r.set("finish_p99_ms", ms(f99))
	return r, nil
}

// idle measures the Redis commands per second of an idle API, then of an
// idle worker (staged's defaults), each alone: INFO commandstats over the
// window (commands inside Lua scripts included), and MONITOR's split into
// round trips from clients and commands run by scripts.
func idle(ctx context.Context, e *env) (*result, error) {
	r := newResult("idle")
	a, err := e.startAPI(ctx)
	if err != nil {
		return nil, err
	}
	err = e.idleWindow(ctx, r, "api", 1*time.Second)
	if serr := a.stop(); err == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	w, err := e.startWorker(0)
	if err != nil {
		return nil, err
	}
	err = e.idleWindow(ctx, r, "worker", 2*time.Second)
	if serr := w.stop(); err == nil {
		err = serr
	}
	return r, err
}

// idleWindow waits settle, then measures one idle part into r.
func (e *env) idleWindow(ctx context.Context, r *result, part string, settle time.Duration) error {
	if err := sleepCtx(ctx, settle); err != nil {
		return err
	}
	before, err := readCmdStats(ctx, e.ctl)
	if err != nil {
		return err
	}
	t0 := time.Now()
	clients, lua, err := monitorCount(ctx, e.addr, e.o.idleWindow)
	if err != nil {
		return fmt.Errorf("MONITOR: %w", err)
	}
	after, err := readCmdStats(ctx, e.ctl)
	if err != nil {
		return err
	}
	secs := time.Since(t0).Seconds()
	d := after.sub(before)
	d["info"]--
	delete(d, "monitor")
	r.set(part+"_cmds_per_s", float64(d.total())/secs)
	r.set(part+"_round_trips_per_s", float64(clients)/e.o.idleWindow.Seconds())
	r.set(part+"_lua_cmds_per_s", float64(lua)/e.o.idleWindow.Seconds())
	r.set(part+"_top_cmds_per_s", d.top(6, secs))
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
