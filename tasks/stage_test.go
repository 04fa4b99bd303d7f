package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/staged-dev/staged/tasks"
)

type point struct {
	X int `json:"x"`
	Y int `json:"y"`
}

type sum struct {
	Sum int `json:"sum"`
}

func add(_ context.Context, p point, _ tasks.Progress) (sum, error) { return sum{p.X + p.Y}, nil }

type nop struct{}

func (nop) Report(float64, any) {}

func TestStageOfDecodes(t *testing.T) {
	s := tasks.StageOf("add", add)
	out, err := s.Run(context.Background(), json.RawMessage(`{"x": 2, "y": 3}`), nop{})
	if err != nil {
		t.Fatal(err)
	}
	if out != (sum{5}) {
		t.Errorf("output %#v, want sum{5}", out)
	}
}

// A stage's input is decoded strictly: the error is permanent, invalid,
// and names the stage and the field.
func TestStageOfStrict(t *testing.T) {
	tests := []struct {
		in, field, want string
	}{
		{`{"x": 1, "z": 2}`, "in.z", `stage add: unknown field "z"`},
		{`{"x": "1"}`, "in.x", "stage add: field x must be integer, not string"},
		{`[1, 2]`, "in", "stage add: its input must be object, not array"},
		{`{"x": 1} {}`, "in", "stage add: its input is not a valid tasks_test.point"},
		{`{"x": `, "in", "stage add: its input is not a valid tasks_test.point"},
		{``, "in", "stage add: its input is empty"},
	}
	s := tasks.StageOf("add", add)
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := s.Run(context.Background(), json.RawMessage(tt.in), nop{})
			if !tasks.IsPermanent(err) {
				t.Fatalf("error %v, want a permanent error", err)
			}
			if tasks.ErrorCode(err) != tasks.EINVALID {
				t.Errorf("code %q, want %q", tasks.ErrorCode(err), tasks.EINVALID)
			}
			var e *tasks.Error
			if !errors.As(err, &e) || e.Field != tt.field {
				t.Errorf("field of %v, want %q", err, tt.field)
			}
			if msg := tasks.ErrorMessage(err); !strings.Contains(msg, tt.want) {
				t.Errorf("message %q, want it to contain %q", msg, tt.want)
			}
		})
	}
}

func TestStageOfKeepsErrors(t *testing.T) {
	boom := tasks.Permanent(tasks.Errorf(tasks.EUNPROCESSABLE, "boom"))
	s := tasks.StageOf("fail", func(context.Context, point, tasks.Progress) (sum, error) { return sum{1}, boom })
	out, err := s.Run(context.Background(), json.RawMessage(`{}`), nop{})
	if err != boom || out != nil {
		t.Errorf("Run = %v, %v; want nil, the stage's error", out, err)
	}
}

func double(_ context.Context, s sum, _ tasks.Progress) (sum, error) { return sum{2 * s.Sum}, nil }

func untyped(_ context.Context, in json.RawMessage, _ tasks.Progress) (any, error) { return in, nil }

// Registration refuses typed stages that do not chain, naming both ends.
func TestRegisterChecksTheChain(t *testing.T) {
	tests := []struct {
		name   string
		p      *tasks.Pipeline
		refuse string // "" = accepted
	}{
		{"chains", &tasks.Pipeline{Name: "ok", Input: tasks.InputOf(point{}, nil),
			Stages: []tasks.Stage{tasks.StageOf("add", add), tasks.StageOf("double", double)}}, ""},
		{"untyped in between", &tasks.Pipeline{Name: "mixed",
			Stages: []tasks.Stage{tasks.StageOf("double", double), {Name: "any", Run: untyped}, tasks.StageOf("add", add)}}, ""},
		{"raw message in", &tasks.Pipeline{Name: "raw",
			Stages: []tasks.Stage{tasks.StageOf("add", add), tasks.StageOf("raw",
				func(context.Context, json.RawMessage, tasks.Progress) (int, error) { return 0, nil })}}, ""},
		{"no input spec", &tasks.Pipeline{Name: "free", Stages: []tasks.Stage{tasks.StageOf("add", add)}}, ""},
		{"stage to stage", &tasks.Pipeline{Name: "broken",
			Stages: []tasks.Stage{tasks.StageOf("add", add), tasks.StageOf("add2", add)}},
			`pipeline "broken": stage "add2" takes tasks_test.point but the output of stage "add" is tasks_test.sum`},
		{"input to stage 1", &tasks.Pipeline{Name: "wronginput", Input: tasks.InputOf(sum{}, nil),
			Stages: []tasks.Stage{tasks.StageOf("add", add)}},
			`pipeline "wronginput": stage "add" takes tasks_test.point but the pipeline's input (InputOf) is tasks_test.sum`},
		{"built stages", &tasks.Pipeline{Name: "built", Input: tasks.InputOf(point{}, nil),
			Stages: []tasks.Stage{tasks.StageOf("add", add)},
			Build: func(json.RawMessage) ([]tasks.Stage, error) {
				return []tasks.Stage{tasks.StageOf("double", double)}, nil
			}},
			`pipeline "built": stage "double" takes tasks_test.sum but the pipeline's input (InputOf) is tasks_test.point`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := (&tasks.Registry{}).Register(tt.p)
			switch {
			case tt.refuse == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.refuse != "" && err == nil:
				t.Fatal("accepted")
			case tt.refuse != "" && !strings.Contains(err.Error(), tt.refuse):
				t.Errorf("error %q, want it to contain %q", err, tt.refuse)
			}
		})
	}
}

// A built stage list that does not chain is refused at submit too.
func TestStagesForChecksTheChain(t *testing.T) {
	p := &tasks.Pipeline{Name: "built", Input: tasks.InputOf(point{}, nil),
		Stages: []tasks.Stage{tasks.StageOf("add", add)},
		Build: func(in json.RawMessage) ([]tasks.Stage, error) {
			if string(in) == `{"x":1,"y":0}` {
				return []tasks.Stage{tasks.StageOf("add", add), tasks.StageOf("add2", add)}, nil
			}
			return []tasks.Stage{tasks.StageOf("add", add)}, nil
		}}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.StagesFor(json.RawMessage(`{"x":1,"y":0}`)); tasks.ErrorCode(err) != tasks.EINTERNAL ||
		!strings.Contains(err.Error(), `stage "add2" takes tasks_test.point`) {
		t.Errorf("StagesFor of a broken build: %v", err)
	}
}

// BuildOf decodes the input strictly, as StageOf does, naming the field.
func TestBuildOf(t *testing.T) {
	build := tasks.BuildOf(func(p point) ([]tasks.Stage, error) {
		st := make([]tasks.Stage, p.X)
		for i := range st {
			st[i] = tasks.StageOf("double"+strings.Repeat("'", i), double)
		}
		return st, nil
	})
	st, err := build(json.RawMessage(`{"x": 2}`))
	if err != nil || len(st) != 2 {
		t.Fatalf("build = %d stages, %v; want 2", len(st), err)
	}
	_, err = build(json.RawMessage(`{"x": 2, "n": 1}`))
	var e *tasks.Error
	if !errors.As(err, &e) || e.Code != tasks.EINVALID || e.Field != "input.n" {
		t.Errorf("build with an unknown field: %v", err)
	}
}
