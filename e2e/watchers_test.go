package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
)

// Watcher benchmark settings.
const (
	watchersDefault = 1000
	// watchersIdle is how long the idle watchers are measured.
	watchersIdle = 3 * time.Second
	// watchersLimit bounds the whole run.
	watchersLimit = 3 * time.Minute
)

// TestWatchers is the 1,000-watcher benchmark of issue 4, run only with
// STAGED_BENCH_WATCHERS=1 (STAGED_BENCH_WATCHERS_N changes the count): one
// `staged api` process, N SSE connections to one job, measured from
// /proc: the API's resident memory (VmRSS) before, with N idle watchers,
// and at its peak during updates; its CPU time while idle and while the job
// writes its events, per event fanned out to all N. Every watcher must
// receive every event and the terminal one. The figures go to the test
// log (go test -v).
//
//	STAGED_BENCH_WATCHERS=1 go test ./e2e/ -run TestWatchers -count=1 -v
func TestWatchers(t *testing.T) {
	if os.Getenv("STAGED_BENCH_WATCHERS") == "" {
		t.Skip("a benchmark: set STAGED_BENCH_WATCHERS=1 to run it")
	}
	n := watchersDefault
	if v := os.Getenv("STAGED_BENCH_WATCHERS_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("STAGED_BENCH_WATCHERS_N=%q: want a positive count", v)
		}
	}
	raiseFDLimit(t, 2*n+1024) // the API process inherits it

	s := newStack(t, false)
	apiProc := s.startAPI()
	ctx, cancel := context.WithTimeout(context.Background(), watchersLimit)
	defer cancel()

	// The job: 5 stages × 2 s reporting every 50 ms, written at most every
	// 100 ms: about 100 events. No worker yet, so it stays queued while
	// the watchers connect and idle.
	id := s.submit(`{"type":"sleep","input":{"stages":5,"ms":2000}}`).ID
	for range 20 { // warm the API up
		s.mustGet(id)
	}
	redisPID := s.redisPID()
	base := sample(t, apiProc.pid())
	t.Logf("api pid %d before: RSS %.1f MB", apiProc.pid(), base.rssMB())

	tr := &http.Transport{
		MaxIdleConnsPerHost: -1, // streams only: nothing to reuse
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	ws := make([]*benchWatcher, n)
	var connected, finishedN atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range ws {
		ws[i] = &benchWatcher{url: s.baseURL + "/v1/jobs/" + id + "/events", hc: hc, connected: &connected, finished: &finishedN}
		wg.Add(1)
		go func() { defer wg.Done(); ws[i].run(ctx) }()
	}
	waitFor(t, time.Minute, fmt.Sprintf("%d watchers to get their first event", n), func() (bool, string) {
		c := connected.Load()
		return c == int64(n), fmt.Sprintf("%d connected", c)
	})
	connectTook := time.Since(start)
	idle0 := sample(t, apiProc.pid())
	r0 := sample(t, redisPID)
	time.Sleep(watchersIdle) // a measurement window, not a wait for a condition
	idle1 := sample(t, apiProc.pid())
	t.Logf("%d watchers connected in %v", n, connectTook.Round(time.Millisecond))

	// Run the job; sample the API's RSS while it fans out.
	runStart := sample(t, apiProc.pid())
	xr0 := s.commandCalls("xrange")
	s.startWorker()
	peak := runStart.rss
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-done:
			break wait
		case <-tick.C:
			if p := sample(t, apiProc.pid()); p.rss > peak {
				peak = p.rss
			}
		case <-ctx.Done():
			t.Fatalf("the watchers did not all finish within %v: %d of %d did", watchersLimit, finishedN.Load(), n)
		}
	}
	runEnd := sample(t, apiProc.pid())
	r1 := sample(t, redisPID)
	xranges := s.commandCalls("xrange") - xr0

	// Every watcher got every entry of the job's stream (after the stored
	// record it started with) and the terminal event.
	entries := s.xrange(id, "")
	final, err := api.DecodeJob([]byte(entries[len(entries)-1].rec))
	if err != nil || final.State != api.StateSucceeded || final.FinishedAt == nil {
		t.Fatalf("the job's last event: %v %+v", err, final)
	}
	var lat []time.Duration
	reconnects := 0
	for i, w := range ws {
		reconnects += w.reconnects
		switch {
		case w.err != nil:
			t.Errorf("watcher %d: %v", i, w.err)
		case !w.terminal:
			t.Errorf("watcher %d: no terminal event (%d events, last %s)", i, w.events, w.lastID)
		case w.lastID != entries[len(entries)-1].id || w.entries != len(entries):
			t.Errorf("watcher %d: %d stream entries up to %s, the stream has %d up to %s",
				i, w.entries, w.lastID, len(entries), entries[len(entries)-1].id)
		default:
			lat = append(lat, w.terminalAt.Sub(*final.FinishedAt))
		}
	}
	if t.Failed() {
		return
	}
	slices.Sort(lat)

	events := len(entries)
	busy := runEnd.cpu - runStart.cpu
	idle := idle1.cpu - idle0.cpu
	t.Logf("api RSS: %.1f MB before, %.1f MB with %d idle watchers (+%.1f MB, %.1f KB per watcher), %.1f MB peak during updates",
		base.rssMB(), idle1.rssMB(), n, idle1.rssMB()-base.rssMB(), float64(idle1.rss-base.rss)/float64(n), float64(peak)/1024)
	t.Logf("api CPU: %.3f s over %v with %d idle watchers; %.2f s for %d events over %v: %.1f ms per event fanned out to %d watchers (%.1f µs per delivery)",
		idle.Seconds(), watchersIdle, n, busy.Seconds(), events, runEnd.at.Sub(runStart.at).Round(time.Millisecond),
		busy.Seconds()*1000/float64(events), n, busy.Seconds()*1e6/float64(events*n))
	t.Logf("redis-server CPU meanwhile (idle + updates): %.2f s (%.1f ms per event); %d XRANGE calls during the updates (%.0f per event)",
		(r1.cpu - r0.cpu).Seconds(), (r1.cpu-r0.cpu).Seconds()*1000/float64(events), xranges, float64(xranges)/float64(events))
	t.Logf("terminal event latency after finished_at: p50 %v, p99 %v, max %v; reconnects %d",
		lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond), reconnects)
}

// benchWatcher is one SSE client of the benchmark: it reads its stream
// to the terminal event, reconnecting with Last-Event-ID if the server
// ends it early, and keeps only counts.
type benchWatcher struct {
	url       string
	hc        *http.Client
	connected *atomic.Int64 // counts watchers with a first event
	finished  *atomic.Int64 // counts watchers with the terminal event

	events     int    // events received, the first (stored record) included
	entries    int    // events with a stream entry id (not the 0-0 record)
	lastID     string // the last event id
	terminal   bool
	terminalAt time.Time
	reconnects int
	err        error
}

func (w *benchWatcher) run(ctx context.Context) {
	for attempt := 0; !w.terminal; attempt++ {
		if attempt > 0 {
			w.reconnects++
			if attempt > 20 {
				w.err = fmt.Errorf("gave up after %d reconnects", attempt-1)
				return
			}
			select {
			case <-ctx.Done():
				w.err = ctx.Err()
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
		if err := w.stream(ctx); err != nil && ctx.Err() != nil {
			w.err = err
			return
		}
	}
}

func (w *benchWatcher) stream(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if w.lastID != "" {
		req.Header.Set("Last-Event-ID", w.lastID)
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	var id, data string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && data != "":
			w.events++
			if w.events == 1 {
				w.connected.Add(1)
			}
			if id != "0-0" {
				w.entries++
			}
			w.lastID = id
			var r struct {
				State api.State `json:"state"`
			}
			if json.Unmarshal([]byte(data), &r) == nil && r.State.Terminal() {
				w.terminal, w.terminalAt = true, time.Now()
				w.finished.Add(1)
				return nil
			}
			id, data = "", ""
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		}
	}
}

// procSample is a process's resident memory (KB) and CPU time at a moment.
type procSample struct {
	at  time.Time
	rss int64 // VmRSS, KB
	cpu time.Duration
}

func (p procSample) rssMB() float64 { return float64(p.rss) / 1024 }

// sample reads pid's VmRSS from /proc/PID/status and its CPU time, all
// threads', utime+stime from /proc/PID/stat (in 10 ms ticks).
func sample(t *testing.T, pid int) procSample {
	t.Helper()
	p := procSample{at: time.Now()}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read /proc/%d/status: %v", pid, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			p.rss, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("read /proc/%d/stat: %v", pid, err)
	}
	// Fields after the command's closing parenthesis: state is field 3,
	// utime 14 and stime 15 (1-based), in clock ticks (USER_HZ, 100).
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	p.cpu = time.Duration(ut+st) * 10 * time.Millisecond
	return p
}

// redisPID is the private redis-server's process id (INFO server).
func (s *stack) redisPID() int {
	s.t.Helper()
	info, err := s.rdb.Info(context.Background(), "server").Result()
	if err != nil {
		s.t.Fatalf("INFO server: %v", err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "process_id:"); ok {
			pid, err := strconv.Atoi(v)
			if err == nil {
				return pid
			}
		}
	}
	s.t.Fatalf("INFO server has no process_id")
	return 0
}

// commandCalls is how many times Redis has run command name (INFO
// commandstats), 0 if never.
func (s *stack) commandCalls(name string) int64 {
	s.t.Helper()
	info, err := s.rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		s.t.Fatalf("INFO commandstats: %v", err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "cmdstat_"+name+":calls="); ok {
			v, _, _ = strings.Cut(v, ",")
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// raiseFDLimit raises this process's open-file limit to at least want
// (within the hard limit); child processes inherit it.
func raiseFDLimit(t *testing.T, want int) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	if lim.Cur >= uint64(want) {
		return
	}
	lim.Cur = min(uint64(want), lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("setrlimit RLIMIT_NOFILE %d: %v", lim.Cur, err)
	}
	if lim.Cur < uint64(want) {
		t.Fatalf("open-file limit %d (hard), want %d: raise it with ulimit -n", lim.Max, want)
	}
}
