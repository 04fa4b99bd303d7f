package builtin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/staged-dev/staged/stagedtest"
	"github.com/staged-dev/staged/tasks"
)

// smallTrain is an input that trains in a few milliseconds.
const smallTrain = `{"samples": 2000, "features": 5, "epochs": 60, "learning_rate": 0.3, "seed": 7}`

func decodeResult(t *testing.T, raw json.RawMessage) TrainResult {
	t.Helper()
	var r TrainResult
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("result %s: %v", raw, err)
	}
	return r
}

func TestTrainDefaults(t *testing.T) {
	p := TrainPipeline()
	start := time.Now()
	job := run(t, p, `{}`)
	res := decodeResult(t, job.Output)
	t.Logf("default train job: %v", time.Since(start))

	d, m := trainDefaults, res.Metrics
	if m.Accuracy <= 0.8 {
		t.Errorf("accuracy %v on the defaults, want > 0.8", m.Accuracy)
	}
	if m.Samples != d.Samples || m.Features != d.Features || m.Epochs != d.Epochs ||
		m.LearningRate != d.LearningRate || m.Seed != d.Seed {
		t.Errorf("metrics %+v do not echo the defaults %+v", m, d)
	}
	if m.Positives < d.Samples*4/10 || m.Positives > d.Samples*6/10 {
		t.Errorf("%d positives of %d samples: classes unbalanced", m.Positives, d.Samples)
	}
	if n := len(res.Model.Weights); n != d.Features || len(res.Model.Means) != n || len(res.Model.Stds) != n {
		t.Errorf("model has %d weights, %d means, %d stds; want %d each", n, len(res.Model.Means), len(res.Model.Stds), d.Features)
	}
	if len(res.DataDigest) != 64 {
		t.Errorf("data_digest %q, want 64 hex digits", res.DataDigest)
	}

	// One report per epoch, fraction epoch/epochs, loss decreasing.
	reps := job.Reports
	if len(reps) != d.Epochs {
		t.Fatalf("%d progress reports, want one per epoch (%d)", len(reps), d.Epochs)
	}
	var prev TrainProgress
	for i, r := range reps {
		tp, ok := r.Partial.(TrainProgress)
		if !ok {
			t.Fatalf("report %d: partial is %T, want TrainProgress", i, r.Partial)
		}
		e := i + 1
		if tp.Epoch != e || tp.Epochs != d.Epochs || r.Fraction != float64(e)/float64(d.Epochs) {
			t.Fatalf("report %d: %+v at %v, want epoch %d of %d at %v", i, tp, r.Fraction, e, d.Epochs, float64(e)/float64(d.Epochs))
		}
		if i > 0 && tp.Loss > prev.Loss {
			t.Errorf("loss rose from %v to %v at epoch %d", prev.Loss, tp.Loss, e)
		}
		prev = tp
	}
	first := reps[0].Partial.(TrainProgress).Loss
	if !(prev.Loss < first*0.5) || prev.Loss != m.Loss || prev.Accuracy != m.Accuracy {
		t.Errorf("loss %v after epoch 1, %v at the end (result: %v): want it at least halved and equal to the result's",
			first, prev.Loss, m.Loss)
	}
}

func TestTrainDeterministic(t *testing.T) {
	a := run(t, TrainPipeline(), smallTrain).Output
	b := run(t, TrainPipeline(), smallTrain).Output
	if !bytes.Equal(a, b) {
		t.Fatalf("same input, different results:\n%s\n%s", a, b)
	}
	other := run(t, TrainPipeline(), strings.Replace(smallTrain, `"seed": 7`, `"seed": 8`, 1)).Output
	if bytes.Equal(a, other) {
		t.Fatal("seeds 7 and 8 gave the same result")
	}
}

// TestTrainResume stops the job after each stage, puts the checkpoint
// through a generic JSON round trip (decoded into maps and float64s and
// encoded again, with its keys reordered) and continues with a fresh
// pipeline, as another worker would: the result must not change by one bit.
func TestTrainResume(t *testing.T) {
	p := TrainPipeline()
	in := normalize(t, p, smallTrain)
	ctx := context.Background()
	outs := runStages(t, ctx, p.Stages, in)
	want := outs[len(outs)-1]
	for k := 1; k < len(p.Stages); k++ {
		t.Run(p.Stages[k-1].Name, func(t *testing.T) {
			var generic any
			if err := json.Unmarshal(outs[k-1], &generic); err != nil {
				t.Fatal(err)
			}
			checkpoint, err := json.Marshal(generic)
			if err != nil {
				t.Fatal(err)
			}
			resumed := runStages(t, ctx, TrainPipeline().Stages[k:], checkpoint)
			if got := resumed[len(resumed)-1]; !bytes.Equal(got, want) {
				t.Errorf("resumed after %s:\n%s\nuninterrupted:\n%s", p.Stages[k-1].Name, got, want)
			}
		})
	}
	// Checkpoints stay small: no data set in them.
	for i, o := range outs {
		if len(o) > 4<<10 {
			t.Errorf("stage %s checkpoint is %d bytes", p.Stages[i].Name, len(o))
		}
	}
}

// TestTrainModelPredicts applies the result's model, as TrainModel documents
// it, to the raw data set: it must score the accuracy the metrics report.
func TestTrainModelPredicts(t *testing.T) {
	res := decodeResult(t, run(t, TrainPipeline(), smallTrain).Output)
	ds, err := generate(context.Background(), 2000, 5, 7)
	if err != nil {
		t.Fatal(err)
	}
	mod := res.Model
	var correct int
	for i := range ds.n {
		z := mod.Bias
		for j, v := range ds.row(i) {
			z += mod.Weights[j] * (v - mod.Means[j]) / mod.Stds[j]
		}
		if (z > 0) == (ds.y[i] == 1) {
			correct++
		}
	}
	got := float64(correct) / float64(ds.n)
	if math.Abs(got-res.Metrics.Accuracy) > 1.0/float64(ds.n) || got <= 0.8 {
		t.Errorf("model scores %v on the raw data, metrics say %v", got, res.Metrics.Accuracy)
	}
}

func TestTrainCancel(t *testing.T) {
	p := TrainPipeline()
	in := normalize(t, p, `{"samples": 1000, "features": 4, "epochs": 100000}`)
	outs := runStages(t, context.Background(), p.Stages[:2], in)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	onReport, reported := signalOnReport()
	done := make(chan error, 1)
	go func() {
		_, err := stagedtest.RunStage(ctx, p.Stages[2], outs[1], onReport)
		done <- err
	}()
	select {
	case <-reported:
	case <-time.After(10 * time.Second):
		t.Fatal("no progress report within 10s")
	}
	cancel()
	canceled := time.Now()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("train stage returned %v after cancel, want context.Canceled", err)
		}
		if d := time.Since(canceled); d > time.Second {
			t.Errorf("train stage took %v to return after cancel", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("train stage still running 10s after cancel")
	}
}

func TestTrainBadCheckpoint(t *testing.T) {
	p := TrainPipeline()
	in := normalize(t, p, smallTrain)
	outs := runStages(t, context.Background(), p.Stages[:3], in)
	tests := []struct {
		name  string
		stage int
		in    string
		want  string
	}{
		{"other data set", 1, strings.Replace(string(outs[0]), `"seed":7`, `"seed":9`, 1), "differs from the one prepared"},
		{"not json", 1, `{"input":`, ""},
		{"bad input", 1, `{"input": {"samples": 0, "features": 5, "epochs": 1, "learning_rate": 1}}`, "samples"},
		{"short means", 2, strings.Replace(string(outs[1]), `"means":[`, `"means":[1,`, 1), "the preprocess checkpoint does not hold"},
		{"short weights", 3, strings.Replace(string(outs[2]), `"weights":[`, `"weights":[1,`, 1), "the train checkpoint does not hold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := stagedtest.RunStage(context.Background(), p.Stages[tt.stage], tt.in)
			if !tasks.IsPermanent(err) {
				t.Fatalf("%s on a bad checkpoint: %v, want a permanent error", p.Stages[tt.stage].Name, err)
			}
			if !strings.Contains(tasks.ErrorMessage(err), tt.want) {
				t.Errorf("message %q, want it to contain %q", tasks.ErrorMessage(err), tt.want)
			}
		})
	}
}

func BenchmarkTrainDefault(b *testing.B) {
	p := TrainPipeline()
	in := normalize(b, p, `{}`)
	for b.Loop() {
		runStages(b, context.Background(), p.Stages, in)
	}
}
