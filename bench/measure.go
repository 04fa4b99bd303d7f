package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/redis/go-redis/v9"
)

// measureMain runs a command (a peer) with its output passed through, and
// then prints one JSON line with what it cost per item: Redis commands and
// Redis CPU (INFO) and the command's own CPU (user + system), divided by -n,
// plus the -tag fields. run.sh measures the peers this way.
//
//	bench measure -redis ADDR -n 20000 -tag peer=x,mode=y -- cmd args...
func measureMain(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench measure", flag.ContinueOnError)
	addr := fs.String("redis", "127.0.0.1:6379", "Redis address")
	n := fs.Int("n", 1, "items (jobs) to divide the costs by")
	tags := fs.String("tag", "", "k=v,k=v: string fields added to the JSON line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 || *n < 1 {
		return errors.New("usage: bench measure -redis ADDR -n N [-tag k=v,...] -- command args...")
	}
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: *addr})
	defer c.Close()
	m0, err := readMeter(ctx, c)
	if err != nil {
		return err
	}
	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	cmd.Stdout, cmd.Stderr = stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return err
	}
	m1, err := readMeter(ctx, c)
	if err != nil {
		return err
	}
	d, per := m1.since(m0), float64(*n)
	ps := cmd.ProcessState
	out := map[string]any{
		"redis_cmds_per_job":   round3(float64(d.cmds.total()) / per),
		"redis_cpu_us_per_job": round3(d.redisCPU * 1e6 / per),
		"proc_cpu_us_per_job":  round3((ps.UserTime() + ps.SystemTime()).Seconds() * 1e6 / per),
		"top_cmds_per_job":     d.cmds.top(8, per),
	}
	for _, kv := range strings.Split(*tags, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			out[k] = v
		}
	}
	return json.NewEncoder(stdout).Encode(out)
}
