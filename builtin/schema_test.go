package builtin

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/staged-dev/staged/internal/catalog"
	"github.com/staged-dev/staged/tasks"
)

// TestSchemasSayWhatChecksSay: the published schema of each built-in
// refuses, naming the same field, the limits its check refuses, so that a
// stock staged api (which has no pipeline code) answers 422 for them.
func TestSchemasSayWhatChecksSay(t *testing.T) {
	tests := []struct {
		p     *tasks.Pipeline
		input string
		field string
	}{
		{ChainPipeline(), `{"stages":0}`, "input.stages"},
		{ChainPipeline(), fmt.Sprintf(`{"stages":%d}`, MaxStages+1), "input.stages"},
		{SleepPipeline(), `{"stages":0}`, "input.stages"},
		{SleepPipeline(), fmt.Sprintf(`{"ms":%d}`, SleepMaxMS+1), "input.ms"},
		{SleepPipeline(), `{"ms":-1}`, "input.ms"},
		{TrainPipeline(), `{"samples":0}`, "input.samples"},
		{TrainPipeline(), fmt.Sprintf(`{"samples":%d}`, TrainMaxSamples+1), "input.samples"},
		{TrainPipeline(), fmt.Sprintf(`{"features":%d}`, TrainMaxFeatures+1), "input.features"},
		{TrainPipeline(), fmt.Sprintf(`{"epochs":%d}`, TrainMaxEpochs+1), "input.epochs"},
		{TrainPipeline(), `{"learning_rate":0}`, "input.learning_rate"},
		{TrainPipeline(), fmt.Sprintf(`{"learning_rate":%d.5}`, TrainMaxLearningRate), "input.learning_rate"},
	}
	for _, tt := range tests {
		t.Run(tt.p.Name+tt.input, func(t *testing.T) {
			if _, err := tt.p.Input.Normalize(json.RawMessage(tt.input)); err == nil {
				t.Fatalf("the check accepts %s", tt.input)
			}
			d := tt.p.Definition()
			ap, err := catalog.PipelineOf(&d)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ap.Input.Normalize(json.RawMessage(tt.input))
			var e *tasks.Error
			if !asError(err, &e) || e.Field != tt.field || e.Code != tasks.EUNPROCESSABLE {
				t.Errorf("schema validation of %s = %v, want a 422 naming %s", tt.input, err, tt.field)
			}
		})
	}
	for _, p := range Pipelines() {
		d := p.Definition()
		ap, err := catalog.PipelineOf(&d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ap.Input.Normalize(nil)
		want, _ := p.Input.Normalize(nil)
		var g, w map[string]any
		json.Unmarshal(got, &g)
		json.Unmarshal(want, &w)
		if err != nil || !reflect.DeepEqual(g, w) {
			t.Errorf("%s: schema defaults %s (%v), typed defaults %s", p.Name, got, err, want)
		}
	}
}

func asError(err error, e **tasks.Error) bool {
	var ok bool
	*e, ok = err.(*tasks.Error)
	return ok
}
