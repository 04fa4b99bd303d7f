package cli

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/client"
)

func TestParseQueues(t *testing.T) {
	tests := []struct {
		name    string
		v       string
		want    []Queue
		wantErr string // substring of the error; "" for none
	}{
		{name: "weights, in order", v: "critical=6,default=3,low=1",
			want: []Queue{{"critical", 6}, {"default", 3}, {"low", 1}}},
		{name: "bare names weigh 1", v: "default,low=2,bulk",
			want: []Queue{{"default", 1}, {"low", 2}, {"bulk", 1}}},
		{name: "one queue", v: "default=1", want: []Queue{{"default", 1}}},
		{name: "spaces and empty entries", v: " critical = 2 , ,default,", want: []Queue{{"critical", 2}, {"default", 1}}},
		{name: "no default queue", v: "high=2,low", want: []Queue{{"high", 2}, {"low", 1}}},
		{name: "name characters and length", v: "a_b-9," + strings.Repeat("q", 64), want: []Queue{{"a_b-9", 1}, {strings.Repeat("q", 64), 1}}},
		{name: "largest weight", v: "default=100", want: []Queue{{"default", 100}}},

		{name: "empty", v: "", wantErr: "STAGED_QUEUES: no queues: use name=weight,... as in critical=6,default=3,low=1, or leave it unset for default=1"},
		{name: "only commas", v: " , ,", wantErr: "STAGED_QUEUES: no queues"},
		{name: "weight zero", v: "default=0", wantErr: `STAGED_QUEUES: queue "default": weight "0" is not a whole number from 1 to 100`},
		{name: "weight negative", v: "default=-1", wantErr: `queue "default": weight "-1" is not a whole number`},
		{name: "weight not a number", v: "critical=high,default", wantErr: `queue "critical": weight "high" is not a whole number`},
		{name: "weight fractional", v: "default=1.5", wantErr: `weight "1.5"`},
		{name: "weight empty", v: "default=", wantErr: `queue "default": weight "" is not`},
		{name: "weight too large", v: "default=101", wantErr: `weight "101" is not a whole number from 1 to 100`},
		{name: "duplicate", v: "default=2,low,default", wantErr: `STAGED_QUEUES: queue "default" appears twice`},
		{name: "duplicate, both bare", v: "low,low", wantErr: `queue "low" appears twice`},
		{name: "bad name, upper case", v: "default,Critical=2", wantErr: `STAGED_QUEUES: entry 2 ("Critical=2"): a queue name is 1 to 64 characters of a-z, 0-9, _ and -`},
		{name: "bad name, space", v: "big queue", wantErr: `entry 1 ("big queue"): a queue name`},
		{name: "bad name, colon", v: "asynq:x", wantErr: "a queue name is"},
		{name: "bad name, empty", v: "=3", wantErr: `entry 1 ("=3"): a queue name`},
		{name: "bad name, too long", v: strings.Repeat("q", 65), wantErr: "a queue name is 1 to 64"},
		{name: "too many queues", v: manyQueues(65), wantErr: "STAGED_QUEUES: 65 queues: at most 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseQueues("STAGED_QUEUES", tt.v)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q (got %v)", err, tt.wantErr, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("queues = %v, want %v", got, tt.want)
			}
		})
	}
}

func manyQueues(n int) string {
	var names []string
	for i := range n {
		names = append(names, "q"+strconv.Itoa(i))
	}
	return strings.Join(names, ",")
}

// TestLoadServeQueues: STAGED_QUEUES and --queues reach Config.Queues,
// and from there the server's names and the worker's weights.
func TestLoadServeQueues(t *testing.T) {
	tests := []struct {
		name        string
		env         map[string]string
		args        []string
		want        []Queue
		wantNames   []string
		wantWeights map[string]int
		wantErr     string
	}{
		{name: "unset", want: []Queue{{"default", 1}}, wantNames: []string{"default"}, wantWeights: map[string]int{"default": 1}},
		{name: "blank env is unset", env: map[string]string{"STAGED_QUEUES": "  "}, want: []Queue{{"default", 1}}},
		{name: "env", env: map[string]string{"STAGED_QUEUES": "critical=6,default=3,low=1"},
			want:        []Queue{{"critical", 6}, {"default", 3}, {"low", 1}},
			wantNames:   []string{"critical", "default", "low"},
			wantWeights: map[string]int{"critical": 6, "default": 3, "low": 1}},
		{name: "flag wins over env", env: map[string]string{"STAGED_QUEUES": "nonsense=x"}, args: []string{"--queues", "critical=2,default"},
			want: []Queue{{"critical", 2}, {"default", 1}}},
		{name: "bad env", env: map[string]string{"STAGED_QUEUES": "default=0"}, wantErr: `STAGED_QUEUES: queue "default": weight "0"`},
		{name: "bad flag", args: []string{"--queues", "default,default"}, wantErr: `--queues: queue "default" appears twice`},
		{name: "empty flag", args: []string{"--queues="}, wantErr: "--queues: no queues"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadServeT(t, tt.env, tt.args...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Queues, tt.want) {
				t.Errorf("Queues = %v, want %v", c.Queues, tt.want)
			}
			if tt.wantNames != nil && !reflect.DeepEqual(queueNames(c.Queues), tt.wantNames) {
				t.Errorf("queueNames = %v, want %v", queueNames(c.Queues), tt.wantNames)
			}
			if tt.wantWeights != nil && !reflect.DeepEqual(queueWeights(c.Queues), tt.wantWeights) {
				t.Errorf("queueWeights = %v, want %v", queueWeights(c.Queues), tt.wantWeights)
			}
		})
	}
}

// TestServeBadQueues: dev, api and worker refuse a bad STAGED_QUEUES at
// start with exit 3 and a message naming the variable (or the flag).
func TestServeBadQueues(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"api", map[string]string{"STAGED_QUEUES": "critical=0"}, []string{"api"}, `STAGED_QUEUES: queue "critical": weight "0"`},
		{"worker", map[string]string{"STAGED_QUEUES": "Critical"}, []string{"worker"}, `STAGED_QUEUES: entry 1 ("Critical")`},
		{"dev", map[string]string{"STAGED_QUEUES": "a,a"}, []string{"dev"}, `STAGED_QUEUES: queue "a" appears twice`},
		{"flag", nil, []string{"worker", "--queues", "x=many"}, `--queues: queue "x": weight "many"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runT(t, context.Background(), tt.env, tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d\n%s", code, exitUsage, errOut)
			}
			if !strings.Contains(errOut, "invalid settings") || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr %q does not name the setting: want %q", errOut, tt.wantErr)
			}
		})
	}
}

// TestDevQueues: staged dev gives STAGED_QUEUES to its API and its worker
// alike: a job on a configured non-default queue runs, an unconfigured
// queue is refused with 422.
func TestDevQueues(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack in-process")
	}
	d := startDev(t, map[string]string{"STAGED_QUEUES": "critical=2,default=1"})
	ctx, base, stderr := d.ctx, d.base, d.stderr

	c := client.New(base)
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	j, err := c.Submit(wctx, "chain", map[string]any{"data": "q", "stages": 1}, &client.SubmitOptions{Queue: "critical"})
	if err != nil {
		t.Fatalf("submit on critical: %v\n%s", err, stderr.String())
	}
	if got, err := c.Wait(wctx, j.ID, 20*time.Second); err != nil || got.State != api.StateSucceeded || got.Queue != "critical" {
		t.Errorf("job on critical: %+v, %v\n%s", got, err, stderr.String())
	}
	_, err = c.Submit(wctx, "chain", nil, &client.SubmitOptions{Queue: "low"})
	var p *client.Problem
	if !errors.As(err, &p) || p.Status != http.StatusUnprocessableEntity || p.Field != "queue" ||
		!strings.Contains(p.Detail, "critical, default") {
		t.Errorf("submit on low: %v, want a 422 listing the queues", err)
	}
	d.stop()
}
