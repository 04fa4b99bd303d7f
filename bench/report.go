package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// reportMain reads the JSON lines of a run (staged's scenarios and the
// peers' results, in any order, other lines ignored) from the files given,
// or stdin, and prints each target of issue 14 with its ratio and PASS or
// MISS; with several rounds, each figure is the median of its rounds. A
// missed target is not an error: benchmarks are not tests.
func reportMain(args []string, stdout io.Writer) error {
	var lines []map[string]any
	read := func(r io.Reader) error {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			t := strings.TrimSpace(sc.Text())
			if !strings.HasPrefix(t, "{") {
				continue
			}
			var m map[string]any
			if json.Unmarshal([]byte(t), &m) == nil {
				lines = append(lines, m)
			}
		}
		return sc.Err()
	}
	if len(args) == 0 {
		if err := read(os.Stdin); err != nil {
			return err
		}
	}
	for _, name := range args {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		err = read(f)
		f.Close()
		if err != nil {
			return err
		}
	}
	if len(lines) == 0 {
		return errors.New("report: no JSON lines")
	}
	printReport(stdout, lines)
	return nil
}

// find returns the median of field over the lines whose fields match all
// of where (several rounds of a run give several lines), and how many there
// were.
func find(lines []map[string]any, field string, where ...string) (float64, bool) {
	var vs []float64
	for _, m := range lines {
		ok := true
		for j := 0; j+1 < len(where); j += 2 {
			if fmt.Sprint(m[where[j]]) != where[j+1] {
				ok = false
				break
			}
		}
		if v, isNum := m[field].(float64); ok && isNum {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return 0, false
	}
	sort.Float64s(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2], true
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2, true
}

// target is one line of the report.
type target struct {
	name string
	// staged's figure and the reference (a peer's figure, or a fixed bound).
	got, ref     float64
	gotOK, refOK bool
	// ratio: got/ref must be >= need; else got must be <= ref (a bound).
	ratio bool
	need  float64
	unit  string
}

func printReport(w io.Writer, lines []map[string]any) {
	st := func(scen, field string) (float64, bool) { return find(lines, field, "scenario", scen) }
	ref := func(field string, where ...string) (float64, bool) { return find(lines, field, where...) }
	var ts []target
	add := func(name string, got float64, gotOK bool, r float64, rOK, ratio bool, need float64, unit string) {
		ts = append(ts, target{name: name, got: got, gotOK: gotOK, ref: r, refOK: rOK, ratio: ratio, need: need, unit: unit})
	}
	drain, dOK := st("drain", "jobs_per_s")
	bull, bOK := ref("process_per_s", "peer", "bullmq", "mode", "worker", "stages", "4")
	add("drain vs BullMQ 4-progress drain", drain, dOK, bull, bOK, true, 1.0, "jobs/s")
	add("… the bar beyond", drain, dOK, bull, bOK, true, 1.3, "jobs/s")
	raw4, r4OK := ref("process_per_s", "peer", "asynq-raw", "mode", "worker", "stages", "4")
	add("drain vs asynq-raw 4 status writes", drain, dOK, raw4, r4OK, true, 1.0, "jobs/s")
	dr, drOK := st("drain", "redis_cpu_us_per_job")
	ds, dsOK := st("drain", "submit_redis_cpu_us_per_job")
	bcpu, bcOK := ref("redis_cpu_us_per_job", "peer", "bullmq", "mode", "worker-redis", "stages", "4")
	add("Redis CPU/job (submit+drain) vs BullMQ", dr+ds, drOK && dsOK, bcpu, bcOK, false, 0, "µs, at most BullMQ's")
	sub, sOK := st("submit", "req_per_s")
	psub, psOK := ref("rps", "peer", "asynq-raw", "mode", "http-submit")
	add("submit vs minimal Echo submit", sub, sOK, psub, psOK, true, 0.9, "req/s, limiter on")
	pol, pOK := st("poll", "req_per_s")
	ppol, ppOK := ref("rps", "peer", "asynq-raw", "mode", "http-poll")
	add("poll vs minimal Echo status", pol, pOK, ppol, ppOK, true, 0.95, "req/s, limiter on")
	l50, l50OK := st("latency", "p50_ms")
	b50, b50OK := ref("p50_ms", "peer", "bullmq", "mode", "latency")
	add("submit-to-start p50 vs BullMQ p50", l50, l50OK, b50, b50OK, false, 0, "ms, at most BullMQ's")
	l99, l99OK := st("latency", "p99_ms")
	add("submit-to-start p99", l99, l99OK, 20, true, false, 0, "ms")
	idle, iOK := st("idle", "worker_cmds_per_s")
	add("idle worker Redis commands", idle, iOK, 500, true, false, 0, "cmds/s")
	e2, e2OK := st("e2e", "jobs_per_s")
	be2, be2OK := ref("process_per_s", "peer", "bullmq", "mode", "e2e")
	add("e2e (HTTP submit + drain) vs BullMQ add+process", e2, e2OK, be2, be2OK, true, 1.0, "jobs/s")

	fmt.Fprintf(w, "\n%-36s %12s %12s %8s %8s  %s\n", "target (issue 14)", "staged", "reference", "ratio", "need", "verdict")
	for _, t := range ts {
		got, rf, ratio, need, verdict := "-", "-", "-", "", "n/a"
		if t.gotOK {
			got = fmt.Sprintf("%.1f", t.got)
		}
		if t.refOK {
			rf = fmt.Sprintf("%.1f", t.ref)
		}
		if t.ratio {
			need = fmt.Sprintf(">=%.2f", t.need)
		} else {
			need = fmt.Sprintf("<=%.4g", t.ref)
		}
		if t.gotOK && t.refOK {
			pass := t.got <= t.ref
			if t.ratio {
				r := t.got / t.ref
				ratio = fmt.Sprintf("%.2f", r)
				pass = r >= t.need
			}
			verdict = "MISS"
			if pass {
				verdict = "PASS"
			}
		}
		fmt.Fprintf(w, "%-36s %12s %12s %8s %8s  %s  (%s)\n", t.name, got, rf, ratio, need, verdict, t.unit)
	}
	// Costs: CPU per job or request, which machine noise moves far less
	// than rates do.
	fmt.Fprintln(w, "\ncost per item (CPU microseconds; steadier than rates on a shared machine):")
	fmt.Fprintf(w, "  %-44s %10s %10s %8s\n", "", "staged", "peer", "ratio")
	cost := func(label string, a float64, aOK bool, b float64, bOK bool) {
		if !aOK && !bOK {
			return
		}
		sa, sb, r := "-", "-", "-"
		if aOK {
			sa = fmt.Sprintf("%.1f", a)
		}
		if bOK {
			sb = fmt.Sprintf("%.1f", b)
		}
		if aOK && bOK && b > 0 {
			r = fmt.Sprintf("%.2f", a/b)
		}
		fmt.Fprintf(w, "  %-44s %10s %10s %8s\n", label, sa, sb, r)
	}
	for _, p := range []struct{ label, peer, stages string }{
		{"Redis CPU/job, submit+drain vs asynq-raw 0", "asynq-raw", "0"},
		{"Redis CPU/job, submit+drain vs asynq-raw 4", "asynq-raw", "4"},
		{"Redis CPU/job, submit+drain vs BullMQ 4", "bullmq", "4"},
	} {
		v, ok := ref("redis_cpu_us_per_job", "peer", p.peer, "mode", "worker-redis", "stages", p.stages)
		cost(p.label, dr+ds, drOK && dsOK, v, ok)
	}
	dc, dcOK := st("drain", "redis_cmds_per_job")
	dsc, dscOK := st("drain", "submit_redis_cmds_per_job")
	v, ok := ref("redis_cmds_per_job", "peer", "asynq-raw", "mode", "worker-redis", "stages", "4")
	cost("Redis commands/job vs asynq-raw 4 (count)", dc+dsc, dcOK && dscOK, v, ok)
	wc, wcOK := st("drain", "worker_cpu_us_per_job")
	sc, scOK := st("drain", "submit_client_cpu_us_per_job")
	for _, p := range []struct{ label, peer, stages string }{
		{"process CPU/job, submit+drain vs asynq-raw 0", "asynq-raw", "0"},
		{"process CPU/job, submit+drain vs asynq-raw 4", "asynq-raw", "4"},
		{"process CPU/job, submit+drain vs BullMQ 4", "bullmq", "4"},
	} {
		v, ok := ref("proc_cpu_us_per_job", "peer", p.peer, "mode", "worker-redis", "stages", p.stages)
		cost(p.label, wc+sc, wcOK && scOK, v, ok)
	}
	for _, m := range []string{"submit", "poll"} {
		a, aOK := st(m, "api_cpu_us_per_req")
		b, bOK := ref("api_cpu_us_per_req", "peer", "asynq-raw", "mode", "http-"+m)
		cost("API process CPU/request, "+m, a, aOK, b, bOK)
		a, aOK = st(m, "redis_cpu_us_per_req")
		b, bOK = ref("redis_cpu_us_per_req", "peer", "asynq-raw", "mode", "http-"+m)
		cost("Redis CPU/request, "+m, a, aOK, b, bOK)
	}

	// Context: the other peer figures of the run.
	fmt.Fprintln(w, "\nreference points of this run:")
	for _, c := range []struct {
		label, field string
		where        []string
	}{
		{"asynq-raw drain, 4 status writes (jobs/s)", "process_per_s", []string{"peer", "asynq-raw", "mode", "worker", "stages", "4"}},
		{"BullMQ drain, 4 progress updates (jobs/s)", "process_per_s", []string{"peer", "bullmq", "mode", "worker", "stages", "4"}},
		{"asynq-raw latency p50, default interval (ms)", "p50_ms", []string{"peer", "asynq-raw", "mode", "latency", "interval", "0s"}},
		{"asynq-raw latency p50, 20ms interval (ms)", "p50_ms", []string{"peer", "asynq-raw", "mode", "latency", "interval", "20ms"}},
		{"BullMQ latency p50 (ms)", "p50_ms", []string{"peer", "bullmq", "mode", "latency"}},
		{"BullMQ latency p99 (ms)", "p99_ms", []string{"peer", "bullmq", "mode", "latency"}},
		{"BullMQ e2e, add + process (jobs/s)", "process_per_s", []string{"peer", "bullmq", "mode", "e2e"}},
		{"asynq-raw no-op drain (jobs/s)", "process_per_s", []string{"peer", "asynq-raw", "mode", "worker", "stages", "0"}},
		{"staged e2e, HTTP submit + worker (jobs/s)", "jobs_per_s", []string{"scenario", "e2e"}},
		{"staged drain, Redis commands per job", "redis_cmds_per_job", []string{"scenario", "drain"}},
	} {
		if v, ok := ref(c.field, c.where...); ok {
			fmt.Fprintf(w, "  %-48s %10.1f\n", c.label, v)
		}
	}
}
