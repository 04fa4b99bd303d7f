package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is the private redis-server of a run.
type redisServer struct {
	addr, dir, version string
	cmd                *exec.Cmd
}

// startRedis starts redis-server on a free port in a temp dir, without
// persistence, and waits until it answers.
func startRedis(ctx context.Context, extra ...string) (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("no redis-server in PATH: install it (apt-get install redis-server) or pass -redis ADDR")
	}
	dir, err := os.MkdirTemp("", "staged-bench-redis-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	rs := &redisServer{addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir}
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log")}, extra...)
	rs.cmd = exec.Command(bin, args...)
	if err := rs.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("redis-server: %w", err)
	}
	c := redis.NewClient(&redis.Options{Addr: rs.addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err = c.Ping(ctx).Err(); err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			rs.stop()
			return nil, fmt.Errorf("redis-server on %s did not answer: %w", rs.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rs.version = redisVersion(ctx, c)
	return rs, nil
}

// startReplica starts a private redis-server replicating primary and
// waits until its link is up.
func startReplica(ctx context.Context, primary *redisServer) (*redisServer, error) {
	host, port, _ := strings.Cut(primary.addr, ":")
	rs, err := startRedis(ctx, "--replicaof", host, port)
	if err != nil {
		return nil, err
	}
	c := redis.NewClient(&redis.Options{Addr: rs.addr})
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := c.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			return rs, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			rs.stop()
			return nil, fmt.Errorf("replica on %s did not link to %s: %v", rs.addr, primary.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills the server and removes its directory.
func (rs *redisServer) stop() {
	if rs.cmd != nil && rs.cmd.Process != nil {
		rs.cmd.Process.Kill()
		rs.cmd.Wait()
	}
	os.RemoveAll(rs.dir)
}

// freePort returns a TCP port free on 127.0.0.1 right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func redisVersion(ctx context.Context, c redis.UniversalClient) string {
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v
		}
	}
	return "?"
}

// machine describes where the run happens, for the record.
func machine(ctx context.Context, c redis.UniversalClient) string {
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s), GOMAXPROCS %d, %s, Redis %s", runtime.NumCPU(), model,
		runtime.GOMAXPROCS(0), runtime.Version(), redisVersion(ctx, c))
}

// cmdStats is INFO commandstats: calls per command. Commands run by Lua
// scripts count too (Redis counts them like any other call).
type cmdStats map[string]int64

// readCmdStats reads INFO commandstats. The INFO call itself shows up in
// the next reading, not in this one.
func readCmdStats(ctx context.Context, c redis.UniversalClient) (cmdStats, error) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("INFO commandstats: %w", err)
	}
	st := cmdStats{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				st[strings.TrimPrefix(name, "cmdstat_")] = n
			}
		}
	}
	return st, nil
}

// sub returns the calls made between before and s, per command.
func (s cmdStats) sub(before cmdStats) cmdStats {
	d := cmdStats{}
	for k, v := range s {
		if n := v - before[k]; n != 0 {
			d[k] = n
		}
	}
	return d
}

func (s cmdStats) total() int64 {
	var t int64
	for _, v := range s {
		t += v
	}
	return t
}

// top formats the n most called commands with their calls divided by per,
// as "evalsha=3.00 hset=2.00 ...".
func (s cmdStats) top(n int, per float64) string {
	type kv struct {
		k string
		v int64
	}
	var all []kv
	for k, v := range s {
		if float64(v)/per >= 0.005 { // what would print as 0.00 is noise
			all = append(all, kv{k, v})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].v > all[j].v || all[i].v == all[j].v && all[i].k < all[j].k })
	var b strings.Builder
	for i, e := range all {
		if i == n {
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%.2f", e.k, float64(e.v)/per)
	}
	return b.String()
}

// monitorCount counts the commands Redis executes during d with MONITOR,
// split into those sent by clients (round trips) and those run inside Lua
// scripts; INFO commandstats cannot tell them apart.
func monitorCount(ctx context.Context, addr string, d time.Duration) (clients, lua int64, err error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		return 0, 0, err
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	line, err := r.ReadSlice('\n')
	if err != nil || !bytes.HasPrefix(line, []byte("+OK")) {
		return 0, 0, fmt.Errorf("MONITOR: %q %v", line, err)
	}
	conn.SetReadDeadline(time.Now().Add(d))
	for ctx.Err() == nil {
		line, err := r.ReadSlice('\n')
		fromLua, ok := monitorSource(line)        // before the buffer is reused
		for errors.Is(err, bufio.ErrBufferFull) { // a long line: its start is enough
			_, err = r.ReadSlice('\n')
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return clients, lua, nil
			}
			return clients, lua, err
		}
		switch {
		case !ok:
		case fromLua:
			lua++
		default:
			clients++
		}
	}
	return clients, lua, ctx.Err()
}

// monitorSource tells a MONITOR line of a script's command
// ("+1700000000.123456 [0 lua] ...") from a client's ("[0 127.0.0.1:5555]").
func monitorSource(line []byte) (fromLua, ok bool) {
	i := bytes.IndexByte(line, '[')
	j := bytes.IndexByte(line, ']')
	if i < 0 || j < i {
		return false, false
	}
	return bytes.HasSuffix(line[i:j], []byte(" lua")), true
}

// redisCPU returns the CPU seconds (user + system) redis-server has used,
// from INFO cpu.
func redisCPU(ctx context.Context, c redis.UniversalClient) (float64, error) {
	info, err := c.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("INFO cpu: %w", err)
	}
	var sum float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, _ := strconv.ParseFloat(v, 64)
			sum += f
		}
	}
	return sum, nil
}

// meter reads what a phase costs: Redis commands (INFO commandstats),
// Redis CPU (INFO cpu), this process's CPU (getrusage) and its heap
// allocations (runtime/metrics; unlike CPU, the machine's load does not
// move them).
type meter struct {
	cmds       cmdStats
	redisCPU   float64
	procCPU    float64
	allocs     uint64 // heap allocations of this process, objects
	allocBytes uint64 // and bytes
	memory     int64  // Redis used_memory, bytes
}

func readMeter(ctx context.Context, c redis.UniversalClient) (meter, error) {
	cpu, err := redisCPU(ctx, c)
	if err != nil {
		return meter{}, err
	}
	st, err := readCmdStats(ctx, c)
	if err != nil {
		return meter{}, err
	}
	mem, err := redisMemory(ctx, c)
	if err != nil {
		return meter{}, err
	}
	objs, nb := processAllocs()
	return meter{cmds: st, redisCPU: cpu, procCPU: processCPU(), allocs: objs, allocBytes: nb, memory: mem}, nil
}

// redisMemory returns used_memory from INFO memory.
func redisMemory(ctx context.Context, c redis.UniversalClient) (int64, error) {
	info, err := c.Info(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("INFO memory: %w", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("INFO memory: no used_memory")
}

// since returns the costs between m0 and m, less the three INFO calls of
// the reading m0 (which show up in m).
func (m meter) since(m0 meter) meter {
	d := m.cmds.sub(m0.cmds)
	if d["info"] -= 3; d["info"] <= 0 {
		delete(d, "info")
	}
	return meter{cmds: d, redisCPU: m.redisCPU - m0.redisCPU, procCPU: m.procCPU - m0.procCPU,
		allocs: m.allocs - m0.allocs, allocBytes: m.allocBytes - m0.allocBytes, memory: m.memory - m0.memory}
}

// processAllocs returns the heap allocations of this process so far:
// objects and bytes (runtime/metrics, cumulative; tiny objects are
// counted by the block they share).
func processAllocs() (objects, nbytes uint64) {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}, {Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

// processCPU returns this process's user + system CPU seconds.
func processCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
