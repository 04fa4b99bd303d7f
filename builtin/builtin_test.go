package builtin

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/staged-dev/staged/tasks"
)

func names(st []tasks.Stage) []string {
	var ns []string
	for _, s := range st {
		ns = append(ns, s.Name)
	}
	return ns
}

func TestRegister(t *testing.T) {
	var r tasks.Registry
	Register(&r)
	if got, want := r.Names(), []string{"chain", "sleep", "train"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("registered %v, want %v", got, want)
	}
	wantStages := map[string][]string{
		"chain": {"stage1", "stage2", "stage3", "stage4"},
		"sleep": {"stage1", "stage2", "stage3", "stage4"},
		"train": {"prepare", "preprocess", "train", "package"},
	}
	for _, p := range r.All() {
		if got := names(p.Stages); !reflect.DeepEqual(got, wantStages[p.Name]) {
			t.Errorf("%s: stages %v, want %v", p.Name, got, wantStages[p.Name])
		}
		if p.Description == "" || p.Input == nil || len(p.Input.Fields) == 0 {
			t.Errorf("%s: no description or input spec", p.Name)
		}
		for _, f := range p.Input.Fields {
			if f.Description == "" {
				t.Errorf("%s: input field %s has no doc", p.Name, f.Name)
			}
		}
		// The stages built for the default input are the ones listed.
		built := stagesFor(t, p, p.Input.Defaults)
		if !reflect.DeepEqual(names(built), names(p.Stages)) {
			t.Errorf("%s: default input builds %v, Stages lists %v", p.Name, names(built), names(p.Stages))
		}
		if err := (&tasks.Pipeline{Name: p.Name, Stages: built}).Validate(); err != nil {
			t.Errorf("%s: built stages: %v", p.Name, err)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("registering the built-ins twice did not panic")
		}
	}()
	Register(&r)
}

func TestInput(t *testing.T) {
	big := strings.Repeat("x", ChainMaxData)
	tests := []struct {
		name      string
		pipeline  *tasks.Pipeline
		input     string
		want      string // the normalised input, when it is accepted
		wantCode  string
		wantField string
	}{
		{"sleep defaults", SleepPipeline(), `{}`, `{"stages":4,"ms":1000}`, "", ""},
		{"sleep no input", SleepPipeline(), ``, `{"stages":4,"ms":1000}`, "", ""},
		{"sleep null", SleepPipeline(), `null`, `{"stages":4,"ms":1000}`, "", ""},
		{"sleep some", SleepPipeline(), `{"ms": 0}`, `{"stages":4,"ms":0}`, "", ""},
		{"sleep max", SleepPipeline(), `{"stages": 100, "ms": 3600000}`, `{"stages":100,"ms":3600000}`, "", ""},
		{"sleep stages 0", SleepPipeline(), `{"stages": 0}`, "", tasks.EUNPROCESSABLE, "input.stages"},
		{"sleep stages 101", SleepPipeline(), `{"stages": 101}`, "", tasks.EUNPROCESSABLE, "input.stages"},
		{"sleep ms -1", SleepPipeline(), `{"ms": -1}`, "", tasks.EUNPROCESSABLE, "input.ms"},
		{"sleep ms too long", SleepPipeline(), `{"ms": 3600001}`, "", tasks.EUNPROCESSABLE, "input.ms"},
		{"sleep ms string", SleepPipeline(), `{"ms": "1"}`, "", tasks.EINVALID, "input.ms"},
		{"sleep unknown", SleepPipeline(), `{"seconds": 1}`, "", tasks.EINVALID, "input.seconds"},
		{"sleep array", SleepPipeline(), `[4]`, "", tasks.EINVALID, "input"},

		{"chain defaults", ChainPipeline(), `{}`, `{"data":"x","stages":4}`, "", ""},
		{"chain some", ChainPipeline(), `{"data": "hi"}`, `{"data":"hi","stages":4}`, "", ""},
		{"chain 64 KiB", ChainPipeline(), `{"data": "` + big + `"}`, `{"data":"` + big + `","stages":4}`, "", ""},
		{"chain data too long", ChainPipeline(), `{"data": "x` + big + `"}`, "", tasks.EUNPROCESSABLE, "input.data"},
		{"chain stages 0", ChainPipeline(), `{"stages": 0}`, "", tasks.EUNPROCESSABLE, "input.stages"},
		{"chain stages 101", ChainPipeline(), `{"stages": 101}`, "", tasks.EUNPROCESSABLE, "input.stages"},
		{"chain data number", ChainPipeline(), `{"data": 1}`, "", tasks.EINVALID, "input.data"},
		{"chain unknown", ChainPipeline(), `{"date": "x"}`, "", tasks.EINVALID, "input.date"},

		{"train defaults", TrainPipeline(), `{}`, `{"samples":20000,"features":16,"epochs":1000,"learning_rate":0.1,"seed":42}`, "", ""},
		{"train some", TrainPipeline(), `{"seed": -7, "epochs": 5}`, `{"samples":20000,"features":16,"epochs":5,"learning_rate":0.1,"seed":-7}`, "", ""},
		{"train limits", TrainPipeline(), `{"samples": 1000000, "features": 10, "epochs": 100000, "learning_rate": 10, "seed": 9223372036854775807}`,
			`{"samples":1000000,"features":10,"epochs":100000,"learning_rate":10,"seed":9223372036854775807}`, "", ""},
		{"train samples 0", TrainPipeline(), `{"samples": 0}`, "", tasks.EUNPROCESSABLE, "input.samples"},
		{"train samples too many", TrainPipeline(), `{"samples": 1000001, "features": 1}`, "", tasks.EUNPROCESSABLE, "input.samples"},
		{"train features 0", TrainPipeline(), `{"features": 0}`, "", tasks.EUNPROCESSABLE, "input.features"},
		{"train features too many", TrainPipeline(), `{"features": 1001, "samples": 10}`, "", tasks.EUNPROCESSABLE, "input.features"},
		{"train too many cells", TrainPipeline(), `{"samples": 1000000, "features": 11}`, "", tasks.EUNPROCESSABLE, "input.samples"},
		{"train epochs 0", TrainPipeline(), `{"epochs": 0}`, "", tasks.EUNPROCESSABLE, "input.epochs"},
		{"train epochs too many", TrainPipeline(), `{"epochs": 100001}`, "", tasks.EUNPROCESSABLE, "input.epochs"},
		{"train learning_rate 0", TrainPipeline(), `{"learning_rate": 0}`, "", tasks.EUNPROCESSABLE, "input.learning_rate"},
		{"train learning_rate negative", TrainPipeline(), `{"learning_rate": -0.1}`, "", tasks.EUNPROCESSABLE, "input.learning_rate"},
		{"train learning_rate too big", TrainPipeline(), `{"learning_rate": 10.5}`, "", tasks.EUNPROCESSABLE, "input.learning_rate"},
		{"train epochs fraction", TrainPipeline(), `{"epochs": 1.5}`, "", tasks.EINVALID, "input.epochs"},
		{"train seed too big", TrainPipeline(), `{"seed": 9223372036854775808}`, "", tasks.EINVALID, "input.seed"},
		{"train unknown", TrainPipeline(), `{"rate": 1}`, "", tasks.EINVALID, "input.rate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.pipeline.Input.Normalize(json.RawMessage(tt.input))
			if tt.wantCode == "" {
				if err != nil || string(got) != tt.want {
					t.Fatalf("Normalize: %s, %v; want %s", got, err, tt.want)
				}
				if _, err := tt.pipeline.StagesFor(got); err != nil {
					t.Errorf("StagesFor(%s): %v", got, err)
				}
				return
			}
			var e *tasks.Error
			if !errors.As(err, &e) || e.Code != tt.wantCode || e.Field != tt.wantField {
				t.Fatalf("Normalize: %s, %v; want a %s error on %s", got, err, tt.wantCode, tt.wantField)
			}
			name := strings.TrimPrefix(tt.wantField, "input.")
			if !strings.Contains(e.Message, name) {
				t.Errorf("message %q does not name %s", e.Message, name)
			}
		})
	}
}

// TestBuildRechecks shows Build refuses an input that bypassed Normalize:
// out of range, or (decoded strictly, by tasks.BuildOf) with a field the
// pipeline does not know.
func TestBuildRechecks(t *testing.T) {
	tests := []struct {
		p     *tasks.Pipeline
		input string
		want  string
	}{
		{SleepPipeline(), `{"stages": 1000, "ms": 1}`, tasks.EUNPROCESSABLE},
		{ChainPipeline(), `{"stages": 1000, "data": ""}`, tasks.EUNPROCESSABLE},
		{SleepPipeline(), `{"stages": 1, "ms": 1, "data": ""}`, tasks.EINVALID},
		{ChainPipeline(), `{"stages": 1, "ms": 1, "data": ""}`, tasks.EINVALID},
	}
	for _, tt := range tests {
		if _, err := tt.p.StagesFor(json.RawMessage(tt.input)); tasks.ErrorCode(err) != tt.want {
			t.Errorf("%s: Build of %s: %v, want %s", tt.p.Name, tt.input, err, tt.want)
		}
	}
}

// stageName is "stage" and k, for every k (the table up to MaxStages too).
func TestStageName(t *testing.T) {
	for k := -1; k <= MaxStages+2; k++ {
		if got, want := stageName(k), fmt.Sprintf("stage%d", k); got != want {
			t.Errorf("stageName(%d) = %q, want %q", k, got, want)
		}
	}
}
