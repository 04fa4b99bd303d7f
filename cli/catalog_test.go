package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/staged-dev/staged/tasks"
)

func customPipeline() *tasks.Pipeline {
	return &tasks.Pipeline{Name: "crawl", Stages: []tasks.Stage{{Name: "fetch",
		Run: func(context.Context, json.RawMessage, tasks.Progress) (any, error) { return nil, nil }}}}
}

// TestCustomProgramHelp: a team's program (cli.Main with its pipelines)
// answers --help for every subcommand the way staged does, without
// starting anything; dev and worker show the catalogue settings.
func TestCustomProgramHelp(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"help"}, {"dev", "--help"}, {"api", "-h"}, {"worker", "--help"}, {"submit", "-h"},
		{"status", "-h"}, {"watch", "-h"}, {"cancel", "-h"}, {"version"}, {"help", "worker"},
	} {
		var stdout, stderr bytes.Buffer
		code := runWith(context.Background(), []*tasks.Pipeline{customPipeline()}, args, env(nil), &stdout, &stderr)
		if code != exitOK || stdout.Len() == 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout.String(), stderr.String())
		}
		if (args[0] == "worker" || args[0] == "dev" || (len(args) > 1 && args[1] == "worker")) &&
			(!strings.Contains(stdout.String(), "-pipelines-only") || !strings.Contains(stdout.String(), "-orphan-after")) {
			t.Errorf("%v: no catalogue settings in %s", args, stdout.String())
		}
	}
}

func TestRestrict(t *testing.T) {
	reg := tasks.NewRegistry(customPipeline())
	if got, err := restrict(reg, nil); err != nil || got != reg {
		t.Errorf("no restriction: %v %v", got, err)
	}
	if got, err := restrict(reg, []string{"crawl", "crawl"}); err != nil || len(got.Names()) != 1 {
		t.Errorf("crawl: %v %v", got, err)
	}
	if _, err := restrict(reg, []string{"train"}); err == nil || !strings.Contains(err.Error(), `no pipeline "train"; it has crawl`) {
		t.Errorf("unknown name: %v", err)
	}
}

func TestLoadCatalogSettings(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string // error substring, "" for none
	}{
		{map[string]string{"STAGED_PIPELINES_ONLY": "train, crawl", "STAGED_HEARTBEAT": "100ms", "STAGED_CATALOG_TTL": "2s", "STAGED_ORPHAN_AFTER": "1s"}, ""},
		{map[string]string{"STAGED_PIPELINES_ONLY": " , "}, "names no pipeline"},
		{map[string]string{"STAGED_HEARTBEAT": "soon"}, "STAGED_HEARTBEAT"},
		{map[string]string{"STAGED_HEARTBEAT": "1s", "STAGED_CATALOG_TTL": "2s"}, "at least three heartbeats"},
	}
	for _, tt := range tests {
		fs := newFlagSet("worker", "", &bytes.Buffer{})
		addFlags(fs, flagHelp, setOnly, setHeartbeat, setCatalogTTL, setOrphanAfter)
		c, err := loadCatalog(newSource(fs, env(tt.env)))
		if tt.want == "" {
			if err != nil || len(c.only) != 2 || c.only[1] != "crawl" || c.heartbeat.Milliseconds() != 100 {
				t.Errorf("%v: %+v %v", tt.env, c, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err %v, want %q", tt.env, err, tt.want)
		}
	}
}
