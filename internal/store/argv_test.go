package store

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/staged-dev/staged/internal/redistest"
)

// echoScript returns its keys and arguments, so that a test can see what
// Redis received.
var echoScript = redis.NewScript(`
local out = {}
for _, k in ipairs(KEYS) do out[#out + 1] = k end
out[#out + 1] = '|'
for _, a in ipairs(ARGV) do out[#out + 1] = a end
return out
`)

// An evalArgs command reaches Redis as go-redis's EvalSha of the same
// values would: through the combiner and directly, past the room of each
// of its arrays, and after Redis lost the script (NOSCRIPT, then the
// script is loaded and the command sent again).
func TestEvalArgs(t *testing.T) {
	r := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()

	build := func() (*evalArgs, []string) {
		keys := []string{"k:a", "k:b"}
		a := newEvalArgs(echoScript, len(keys))
		want := append([]string{}, keys...)
		want = append(want, "|")
		for _, k := range keys {
			a.key(k)
		}
		// More of each kind than its array holds.
		for i := range 20 {
			a.str("s" + strconv.Itoa(i))
			a.int(int64(1000 + i))
			a.raw([]byte("r" + strconv.Itoa(i)))
			want = append(want, "s"+strconv.Itoa(i), strconv.Itoa(1000+i), "r"+strconv.Itoa(i))
		}
		a.str("")
		a.int(-7)
		return a, append(want, "", "-7")
	}
	check := func(name string, s *Store) {
		t.Helper()
		a, want := build()
		cmd, err := s.evalArgv(ctx, echoScript, a)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := cmd.StringSlice()
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: Redis received %q (%v), want %q", name, got, err, want)
		}
	}

	direct := NewStore(rdb)
	check("direct, script not loaded", direct)
	check("direct", direct)
	combined := NewStore(rdb)
	cctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	combined.StartCombiner(cctx)
	t.Cleanup(func() { combined.Close() })
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	check("combined, script not loaded", combined)
	check("combined", combined)
}

// Building a command of createScript's size boxes no argument: the
// struct is its one allocation.
func TestEvalArgsAllocations(t *testing.T) {
	id := strconv.Itoa(int(time.Now().UnixNano())) // not a constant, whose boxing is free
	rec := []byte(`{"id":"` + id + `"}`)
	n := testing.AllocsPerRun(100, func() {
		a := newEvalArgs(createScript, 7)
		for range 7 {
			a.key(id)
		}
		for i := range 10 {
			a.int(int64(1<<40 + i))
			a.str(id)
		}
		for range 4 {
			a.raw(rec)
		}
		_ = a.Argv()
	})
	if n > 1 {
		t.Fatalf("building a command of 35 arguments allocated %v times, want 1", n)
	}
}

func TestAppendIndexMember(t *testing.T) {
	id := "0b0e7f6c-5a3e-4d4f-9a53-6f1f2b1c0d9e"
	for _, ms := range []int64{0, 1, 42, 1764590000123, 9999999999999, 12345678901234, -1, -5000} {
		tm := time.UnixMilli(ms)
		want := fmt.Sprintf("%0*d:%s", msDigits, ms, id)
		if got := string(appendIndexMember([]byte("x"), tm, id)); got != "x"+want {
			t.Errorf("appendIndexMember(%d) = %q, want %q", ms, got, "x"+want)
		}
		if got := indexMember(tm, id); got != want {
			t.Errorf("indexMember(%d) = %q, want %q", ms, got, want)
		}
	}
}
