package store_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/internal/redistest"
	"github.com/staged-dev/staged/internal/store"
)

// redisCPU is the Redis server's CPU time so far (INFO cpu, user + sys).
func redisCPU(b *testing.B, rdb *redis.Client) time.Duration {
	b.Helper()
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var s float64
	for _, l := range strings.Split(info, "\r\n") {
		k, v, ok := strings.Cut(l, ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, _ := strconv.ParseFloat(v, 64)
			s += f
		}
	}
	return time.Duration(s * float64(time.Second))
}

// The Redis CPU of taking 16 tasks and claiming their jobs: the plain
// prefetch script then 16 pipelined claims (a Cluster's path), or the
// claiming dequeue alone (one node). Reports redis-µs/job; only the take
// and the claims are counted, not the jobs' creation.
func BenchmarkTakeAndClaim(b *testing.B) {
	for _, tt := range []struct {
		name string
		take bool
	}{{"prefetch+claims", false}, {"claiming-dequeue", true}} {
		b.Run(tt.name, func(b *testing.B) {
			ctx := context.Background()
			rdb := redistest.Start(b).Client()
			s := store.NewStore(rdb)
			r := &takeRig{t: b, rdb: rdb, s: s, q: "q1"}
			k0 := "asynq:{q1}:"
			dq := []any{"evalsha", "asynq's sha", 4, k0 + "pending", k0 + "paused", k0 + "active", k0 + "lease",
				time.Now().Add(time.Hour).Unix(), k0 + "t:"}
			prefetch := redis.NewScript(store.PrefetchLua)
			if err := store.ClaimScript.Load(ctx, rdb).Err(); err != nil {
				b.Fatal(err)
			}
			var cpu time.Duration
			jobs := 0
			for b.Loop() {
				b.StopTimer()
				for range 16 {
					r.pend(newJob(b, s, "").ID)
				}
				before := redisCPU(b, rdb)
				b.StartTimer()
				if tt.take {
					_, eval := s.TakeArgs(dq, 16, time.Minute)
					sha := append([]any{"evalsha", store.TakeSHA()}, eval[2:]...)
					err := rdb.Do(ctx, sha...).Err()
					if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
						err = rdb.Do(ctx, eval...).Err()
					}
					if err != nil {
						b.Fatal(err)
					}
				} else {
					res, err := prefetch.Run(ctx, rdb, []string{k0 + "pending", k0 + "paused", k0 + "active", k0 + "lease"},
						time.Now().Add(time.Hour).Unix(), k0+"t:", 16).StringSlice()
					if err != nil {
						b.Fatal(err)
					}
					cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
						for i := 0; i < len(res); i += 2 {
							store.ClaimIn(ctx, s, p, res[i], time.Minute)
						}
						return nil
					})
					if err != nil || len(cmds) != 16 {
						b.Fatal(len(cmds), err)
					}
					if v, _ := cmds[15].(*redis.Cmd).StringSlice(); len(v) < 2 || v[0] != "ok" {
						b.Fatalf("claim: %v", v)
					}
				}
				b.StopTimer()
				cpu += redisCPU(b, rdb) - before
				jobs += 16
				rdb.Del(ctx, k0+"active", k0+"lease")
				b.StartTimer()
			}
			b.ReportMetric(float64(cpu.Microseconds())/float64(jobs), "redis-µs/job")
		})
	}
}
