package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// submitBody is the submit of the submit, poll and e2e scenarios: a sleep
// job of 0 ms stages, on the bench queue.
func (e *env) submitBody() string {
	return fmt.Sprintf(`{"type":"sleep","input":{"stages":%d,"ms":0},"queue":%q}`, e.o.stages, benchQueue)
}

// loadSpec returns the load of the HTTP scenarios on url.
func (e *env) loadSpec(method, url, body string) loadSpec {
	return loadSpec{Method: method, URL: url, Body: body, Conns: e.o.conns, Duration: e.o.duration, Warmup: e.o.warmup}
}

// setLoad copies a load generator's figures into r.
func setLoad(r *result, l *loadResult) {
	r.set("req_per_s", l.RPS)
	r.set("p50_ms", l.P50)
	r.set("p90_ms", l.P90)
	r.set("p99_ms", l.P99)
	r.set("max_ms", l.Max)
	r.set("requests", l.Requests)
	r.set("errors", l.Errors)
	r.set("conns", l.Conns)
	r.set("seconds", l.Seconds)
	b, _ := json.Marshal(l.Status)
	r.set("status", string(b))
}

// submit drives POST /v1/jobs with no worker running.
func submit(ctx context.Context, e *env) (*result, error) {
	return loadAPI(ctx, e, "submit", func(a *apiServer) (loadSpec, error) {
		return e.loadSpec("POST", a.url+"/v1/jobs", e.submitBody()), nil
	})
}

// poll drives GET /v1/jobs/{id} of a queued job.
func poll(ctx context.Context, e *env) (*result, error) {
	return loadAPI(ctx, e, "poll", func(a *apiServer) (loadSpec, error) {
		id, _, err := postJob(ctx, a.url+"/v1/jobs", e.submitBody())
		return e.loadSpec("GET", a.url+"/v1/jobs/"+id, ""), err
	})
}

// loadAPI starts an API, drives it with the load generator as spec says,
// and measures what each request cost the API process (CPU, profiled into
// name-api.pprof) and Redis (commands, CPU).
func loadAPI(ctx context.Context, e *env, name string, spec func(*apiServer) (loadSpec, error)) (*result, error) {
	a, err := e.startAPI(ctx)
	if err != nil {
		return nil, err
	}
	defer a.stop()
	s, err := spec(a)
	if err != nil {
		return nil, err
	}
	m0, err := readMeter(ctx, e.ctl)
	if err != nil {
		return nil, err
	}
	stopProf, err := profile(e.o.profileDir, name+"-api.pprof")
	if err != nil {
		return nil, err
	}
	l, err := runLoadgen(ctx, s)
	stopProf()
	if err != nil {
		return nil, err
	}
	m1, err := readMeter(ctx, e.ctl)
	if err != nil {
		return nil, err
	}
	r := newResult(name)
	setLoad(r, l)
	if l.ok() != l.Requests || l.Errors > 0 {
		return r, fmt.Errorf("%s: %d errors, statuses %v", name, l.Errors, l.Status)
	}
	d, per := m1.since(m0), float64(l.Total)
	r.set("api_cpu_us_per_req", d.procCPU*1e6/per)
	r.set("api_allocs_per_req", float64(d.allocs)/per)
	r.set("redis_cpu_us_per_req", d.redisCPU*1e6/per)
	r.set("redis_cmds_per_req", float64(d.cmds.total())/per)
	r.set("top_cmds_per_req", d.cmds.top(8, per))
	return r, nil
}

// e2e submits -n jobs over HTTP (-c connections) with a worker running,
// and counts the jobs finished per second from the first submit until the
// last one is finished.
func e2e(ctx context.Context, e *env) (*result, error) {
	a, err := e.startAPI(ctx)
	if err != nil {
		return nil, err
	}
	defer a.stop()
	w, err := e.startWorker(e.o.concurr)
	if err != nil {
		return nil, err
	}
	defer w.stop()
	base, err := e.processed(ctx)
	if err != nil {
		return nil, err
	}
	spec := e.loadSpec("POST", a.url+"/v1/jobs", e.submitBody())
	spec.Warmup, spec.Duration, spec.Max = 0, 10*time.Minute, int64(e.o.n)
	m0, err := readMeter(ctx, e.ctl)
	if err != nil {
		return nil, err
	}
	stopProf, err := profile(e.o.profileDir, "e2e.pprof") // the API and the worker
	if err != nil {
		return nil, err
	}
	defer stopProf()
	t0 := time.Now()
	l, err := runLoadgen(ctx, spec)
	if err != nil {
		return nil, err
	}
	submitted := time.Since(t0)
	if l.ok() != l.Requests || l.Errors > 0 {
		return nil, fmt.Errorf("e2e: %d errors, statuses %v", l.Errors, l.Status)
	}
	jobs := l.Total // every request was a 202: one job each, the probe's too
	if _, err := e.waitProcessed(ctx, base+jobs, 2*time.Minute+time.Duration(jobs)*5*time.Millisecond); err != nil {
		return nil, err
	}
	elapsed := time.Since(t0)
	m1, err := readMeter(ctx, e.ctl)
	if err != nil {
		return nil, err
	}
	d, per := m1.since(m0), float64(jobs)
	r := newResult("e2e")
	r.set("jobs_per_s", float64(jobs)/elapsed.Seconds())
	r.set("jobs", jobs)
	r.set("seconds", elapsed.Seconds())
	r.set("submit_req_per_s", l.RPS)
	r.set("submit_p50_ms", l.P50)
	r.set("submit_p99_ms", l.P99)
	r.set("submits_s", submitted.Seconds())
	r.set("drain_after_submits_s", (elapsed - submitted).Seconds())
	// Where the time goes: the API and the worker share this process (the
	// load generator is a child process, not counted); Redis's figures
	// include the bench's polls of asynq's processed counter.
	r.set("process_cpu_us_per_job", d.procCPU*1e6/per)
	r.set("redis_cpu_us_per_job", d.redisCPU*1e6/per)
	r.set("redis_cmds_per_job", float64(d.cmds.total())/per)
	r.set("conns", e.o.conns)
	r.set("concurrency", e.o.concurr)
	return r, nil
}

// postJob submits one job and returns its id and the answer's body.
func postJob(ctx context.Context, url, body string) (string, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewBufferString(body))
	if err != nil {
		return "", nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", nil, err
	}
	if resp.StatusCode/100 != 2 {
		return "", b, fmt.Errorf("POST %s: %s: %s", url, resp.Status, b)
	}
	var rec struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.ID == "" {
		return "", b, fmt.Errorf("POST %s: no id in %s", url, b)
	}
	return rec.ID, b, nil
}
