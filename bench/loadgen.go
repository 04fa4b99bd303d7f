package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The load generator: -c goroutines, each with one keep-alive connection,
// sending the same prebuilt HTTP/1.1 request back to back and reading each
// response (Content-Length or chunked) before the next. It is lean on
// purpose (no net/http client), so that on a small machine most of the CPU
// is left to the server under test. Requests finishing during -warmup are
// not counted. It prints one JSON line.

// loadSpec is one load generator run.
type loadSpec struct {
	Method, URL, Body string
	Conns             int
	Duration, Warmup  time.Duration
	// Max stops the run after that many requests (the probe included);
	// 0 means no limit.
	Max int64
}

// loadResult is what the load generator measured.
type loadResult struct {
	Requests int64            `json:"requests"`
	RPS      float64          `json:"rps"`
	P50      float64          `json:"p50_ms"`
	P90      float64          `json:"p90_ms"`
	P99      float64          `json:"p99_ms"`
	Max      float64          `json:"max_ms"`
	Errors   int64            `json:"errors"`
	Status   map[string]int64 `json:"status"`
	// Total counts every answered request, warm-up and probe included, to
	// divide costs measured over the whole run by.
	Total   int64   `json:"requests_total"`
	Conns   int     `json:"conns"`
	Seconds float64 `json:"seconds"`
}

// ok returns the requests answered with a status of the given class (2 for 2xx).
func (l *loadResult) ok() int64 {
	var n int64
	for s, c := range l.Status {
		if len(s) == 3 && s[0] == '2' {
			n += c
		}
	}
	return n
}

func loadgenMain(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench loadgen", flag.ContinueOnError)
	var s loadSpec
	fs.StringVar(&s.Method, "method", "GET", "HTTP method")
	fs.StringVar(&s.URL, "url", "", "http://host:port/path (required)")
	fs.StringVar(&s.Body, "body", "", "request body, sent as application/json")
	fs.IntVar(&s.Conns, "c", 50, "connections")
	fs.DurationVar(&s.Duration, "d", 10*time.Second, "measured duration")
	fs.DurationVar(&s.Warmup, "warmup", time.Second, "load before the measured duration")
	fs.Int64Var(&s.Max, "n", 0, "stop after this many requests (0: no limit)")
	tags := fs.String("tag", "", "k=v,k=v: string fields added to the JSON line (run.sh labels the peers' lines)")
	pid := fs.Int("pid", 0, "the server's process id: report its CPU per request (from /proc)")
	raddr := fs.String("redis", "", "the server's Redis: report its commands and CPU per request")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx := context.Background()
	var rdb *redis.Client
	var m0 meter
	if *raddr != "" {
		rdb = redis.NewClient(&redis.Options{Addr: *raddr})
		defer rdb.Close()
		var err error
		if m0, err = readMeter(ctx, rdb); err != nil {
			return err
		}
	}
	cpu0 := pidCPU(*pid)
	res, err := loadgen(ctx, s)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(res)
	var out map[string]any
	json.Unmarshal(b, &out)
	per := float64(res.Total)
	if *pid > 0 {
		out["api_cpu_us_per_req"] = round3((pidCPU(*pid) - cpu0) * 1e6 / per)
	}
	if rdb != nil {
		m1, err := readMeter(ctx, rdb)
		if err != nil {
			return err
		}
		d := m1.since(m0)
		out["redis_cpu_us_per_req"] = round3(d.redisCPU * 1e6 / per)
		out["redis_cmds_per_req"] = round3(float64(d.cmds.total()) / per)
		out["top_cmds_per_req"] = d.cmds.top(8, per)
	}
	for _, kv := range strings.Split(*tags, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	return json.NewEncoder(stdout).Encode(out)
}

// pidCPU returns the user + system CPU seconds of process pid, from
// /proc/PID/stat (in clock ticks of 1/100 s); 0 when pid is 0 or unknown.
func pidCPU(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses: state is
	// field 3, utime 14, stime 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

// runLoadgen runs the load generator in a child process (this binary's
// "loadgen" subcommand) and returns its result.
func runLoadgen(ctx context.Context, s loadSpec) (*loadResult, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, "loadgen", "-method", s.Method, "-url", s.URL, "-body", s.Body,
		"-c", strconv.Itoa(s.Conns), "-d", s.Duration.String(), "-warmup", s.Warmup.String(),
		"-n", strconv.FormatInt(s.Max, 10))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	var r loadResult
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("loadgen output %q: %w", out, err)
	}
	return &r, nil
}

// conn is one keep-alive connection of the load generator.
type lgConn struct {
	addr string
	req  []byte
	c    net.Conn
	r    *bufio.Reader
}

func loadgen(ctx context.Context, s loadSpec) (*loadResult, error) {
	u, err := url.Parse(s.URL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("-url %q: want http://host:port/path", s.URL)
	}
	if s.Conns < 1 || s.Duration <= 0 {
		return nil, errors.New("-c and -d must be positive")
	}
	req := buildRequest(s.Method, u, s.Body)
	// Check once that the target answers, so a wrong URL fails loudly.
	probe := &lgConn{addr: u.Host, req: req}
	if _, err := probe.do(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", s.Method, s.URL, err)
	}
	probe.close()

	start := time.Now()
	from, until := start.Add(s.Warmup), start.Add(s.Warmup+s.Duration)
	type part struct {
		lat    []time.Duration
		status map[int]int64
		errs   int64
		total  int64
	}
	parts := make([]part, s.Conns)
	var sent atomic.Int64
	sent.Store(1) // the probe
	var wg sync.WaitGroup
	for i := range parts {
		wg.Add(1)
		go func(p *part) {
			defer wg.Done()
			p.status = map[int]int64{}
			p.lat = make([]time.Duration, 0, 1<<14)
			c := &lgConn{addr: u.Host, req: req}
			defer c.close()
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(until) || s.Max > 0 && sent.Add(1) > s.Max {
					return
				}
				code, err := c.do()
				t1 := time.Now()
				if err == nil {
					p.total++
				}
				if t1.Before(from) || t1.After(until) {
					continue
				}
				if err != nil {
					p.errs++
					c.close()
					continue
				}
				p.status[code]++
				p.lat = append(p.lat, t1.Sub(t0))
			}
		}(&parts[i])
	}
	wg.Wait()
	// With -n the run may end early: rates are over the measured window.
	end := time.Now()
	if end.After(until) {
		end = until
	}
	window := end.Sub(from)
	if window <= 0 {
		return nil, errors.New("the run ended during the warm-up: raise -n or lower -warmup")
	}
	res := &loadResult{Status: map[string]int64{}, Conns: s.Conns, Seconds: round3(window.Seconds()), Total: 1}
	var all []time.Duration
	for _, p := range parts {
		all = append(all, p.lat...)
		res.Errors += p.errs
		res.Total += p.total
		for code, n := range p.status {
			res.Status[strconv.Itoa(code)] += n
		}
	}
	res.Requests = int64(len(all))
	res.RPS = round3(float64(len(all)) / window.Seconds())
	p50, p99, mx := percentiles(all)
	res.P50, res.P99, res.Max = round3(ms(p50)), round3(ms(p99)), round3(ms(mx))
	if len(all) > 0 {
		res.P90 = round3(ms(all[len(all)*90/100]))
	}
	return res, nil
}

func buildRequest(method string, u *url.URL, body string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: staged-bench\r\nAccept: */*\r\n", method, u.RequestURI(), u.Host)
	if body != "" || method == "POST" || method == "PUT" {
		fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.Bytes()
}

func (c *lgConn) close() {
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
}

// do sends the request and reads the whole response; it returns the status.
func (c *lgConn) do() (int, error) {
	if c.c == nil {
		nc, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
		if err != nil {
			return 0, err
		}
		c.c = nc
		if c.r == nil {
			c.r = bufio.NewReaderSize(nc, 16<<10)
		} else {
			c.r.Reset(nc)
		}
	}
	c.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.c.Write(c.req); err != nil {
		return 0, err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length, chunked, closing := -1, false, false
	for {
		h, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(h) <= 2 {
			break
		}
		k, v, _ := bytes.Cut(h, []byte(":"))
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			length, _ = strconv.Atoi(string(v))
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(v, []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			closing = bytes.EqualFold(v, []byte("close"))
		}
	}
	switch {
	case chunked:
		err = c.discardChunked()
	case length >= 0:
		_, err = c.r.Discard(length)
	default:
		return code, errors.New("response without Content-Length or chunked body")
	}
	if err != nil {
		return 0, err
	}
	if closing {
		c.close()
	}
	return code, nil
}

func (c *lgConn) discardChunked() error {
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		hex, _, _ := bytes.Cut(bytes.TrimSpace(line), []byte(";"))
		n, err := strconv.ParseInt(string(hex), 16, 64)
		if err != nil {
			return fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 {
			for { // trailers, up to the empty line
				t, err := c.r.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(t) <= 2 {
					return nil
				}
			}
		}
		if _, err := c.r.Discard(int(n) + 2); err != nil {
			return err
		}
	}
}
