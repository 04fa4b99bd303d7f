package builtin

import (
	"context"
	"fmt"
	"math"

	"github.com/staged-dev/staged/tasks"
)

// TrainInput is the input of the train pipeline.
type TrainInput struct {
	Samples      int     `json:"samples" doc:"rows of the synthetic data set, 1..1,000,000 (samples × features at most 10,000,000)" jsonschema:"minimum=1,maximum=1000000"`
	Features     int     `json:"features" doc:"columns of the synthetic data set, 1..1,000" jsonschema:"minimum=1,maximum=1000"`
	Epochs       int     `json:"epochs" doc:"passes of batch gradient descent, 1..100,000" jsonschema:"minimum=1,maximum=100000"`
	LearningRate float64 `json:"learning_rate" doc:"gradient descent step size, more than 0 and at most 10" jsonschema:"exclusiveMinimum=0,maximum=10"`
	Seed         int64   `json:"seed" doc:"seed of the data set: the same input always trains the same model"`
}

// Limits of TrainInput.
const (
	TrainMaxSamples      = 1_000_000
	TrainMaxFeatures     = 1_000
	TrainMaxCells        = 10_000_000 // samples × features
	TrainMaxEpochs       = 100_000
	TrainMaxLearningRate = 10
)

// trainDefaults is the train pipeline's default input, sized to take about
// a second on one core so that a demo has a progress bar to watch.
var trainDefaults = TrainInput{Samples: 20_000, Features: 16, Epochs: 1_000, LearningRate: 0.1, Seed: 42}

// TrainProgress is the partial result the train stage reports after each
// epoch.
type TrainProgress struct {
	Epoch    int     `json:"epoch"` // epochs done, 1..Epochs
	Epochs   int     `json:"epochs"`
	Loss     float64 `json:"loss"`     // mean log-loss after the epoch
	Accuracy float64 `json:"accuracy"` // on the training set, after the epoch
}

// TrainResult is the train pipeline's result.
type TrainResult struct {
	Model   TrainModel   `json:"model"`
	Metrics TrainMetrics `json:"metrics"`
	// DataDigest is the SHA-256 of the generated data set.
	DataDigest string `json:"data_digest"`
}

// TrainModel is a logistic regression on standardised features: for a row
// x, P(y=1) = σ(Bias + Σ Weights[j]·(x[j] − Means[j]) / Stds[j]).
type TrainModel struct {
	Weights []float64 `json:"weights"`
	Bias    float64   `json:"bias"`
	Means   []float64 `json:"means"`
	Stds    []float64 `json:"stds"`
}

// TrainMetrics are the model's final metrics on the training set, and how
// it was trained.
type TrainMetrics struct {
	Loss         float64 `json:"loss"`
	Accuracy     float64 `json:"accuracy"`
	Samples      int     `json:"samples"`
	Features     int     `json:"features"`
	Positives    int     `json:"positives"` // rows of class 1
	Epochs       int     `json:"epochs"`
	LearningRate float64 `json:"learning_rate"`
	Seed         int64   `json:"seed"`
}

// The checkpoints between train's stages. Each is small (no data set: the
// stages regenerate it from the seed) and carries what the later stages
// need, so that a stage resumed on another worker from the decoded JSON
// computes exactly what it would have in-process.
type (
	prepared struct {
		Input     TrainInput `json:"input"`
		Digest    string     `json:"digest"`
		Positives int        `json:"positives"`
	}
	preprocessed struct {
		prepared
		Means []float64 `json:"means"`
		Stds  []float64 `json:"stds"`
	}
	trained struct {
		preprocessed
		Weights  []float64 `json:"weights"`
		Bias     float64   `json:"bias"`
		Loss     float64   `json:"loss"`
		Accuracy float64   `json:"accuracy"`
	}
)

// TrainPipeline returns the train pipeline: prepare (generate a seeded
// synthetic data set: two Gaussian blobs), preprocess (standardise its
// features), train (logistic regression by batch gradient descent,
// reporting a TrainProgress per epoch), package (a TrainResult). It is
// deterministic: the same input gives the same result, byte for byte, also
// when a stage runs on another worker after a restart.
func TrainPipeline() *tasks.Pipeline {
	return &tasks.Pipeline{
		Name:        "train",
		Description: "Trains a logistic regression on a seeded synthetic data set, reporting the loss per epoch.",
		Input:       tasks.InputOf(trainDefaults, checkTrain),
		// Weights are shares of the progress bar, in percent: training is
		// nearly all of the run time (over 98% on the defaults).
		Stages: []tasks.Stage{
			tasks.StageOf("prepare", trainPrepare).WithWeight(2),
			tasks.StageOf("preprocess", trainPreprocess).WithWeight(2),
			tasks.StageOf("train", trainTrain).WithWeight(95),
			tasks.StageOf("package", trainPackage).WithWeight(1),
		},
	}
}

func checkTrain(in *TrainInput) error {
	if err := checkInt("samples", in.Samples, 1, TrainMaxSamples); err != nil {
		return err
	}
	if err := checkInt("features", in.Features, 1, TrainMaxFeatures); err != nil {
		return err
	}
	if cells := in.Samples * in.Features; cells > TrainMaxCells {
		return tasks.FieldError("input.samples", "samples × features must be at most %s, not %s × %s = %s",
			group(TrainMaxCells), group(int64(in.Samples)), group(int64(in.Features)), group(int64(cells)))
	}
	if err := checkInt("epochs", in.Epochs, 1, TrainMaxEpochs); err != nil {
		return err
	}
	if !(in.LearningRate > 0 && in.LearningRate <= TrainMaxLearningRate) {
		return tasks.FieldError("input.learning_rate", "learning_rate must be more than 0 and at most %d, not %v",
			TrainMaxLearningRate, in.LearningRate)
	}
	return nil
}

// trainPrepare generates the data set and records its digest.
func trainPrepare(ctx context.Context, in TrainInput, _ tasks.Progress) (prepared, error) {
	if err := checkTrain(&in); err != nil {
		return prepared{}, tasks.Permanent(err)
	}
	ds, err := generate(ctx, in.Samples, in.Features, in.Seed)
	if err != nil {
		return prepared{}, err
	}
	return prepared{Input: in, Digest: ds.digest(), Positives: ds.positives()}, nil
}

// trainPreprocess computes each feature's mean and standard deviation.
func trainPreprocess(ctx context.Context, cp prepared, _ tasks.Progress) (preprocessed, error) {
	ds, err := regenerate(ctx, cp)
	if err != nil {
		return preprocessed{}, err
	}
	means, stds := ds.columnStats()
	return preprocessed{prepared: cp, Means: means, Stds: stds}, nil
}

// trainTrain runs batch gradient descent from a zero model, reporting the
// loss after every epoch.
func trainTrain(ctx context.Context, cp preprocessed, p tasks.Progress) (trained, error) {
	d := cp.Input.Features
	if len(cp.Means) != d || len(cp.Stds) != d {
		return trained{}, badCheckpoint("preprocess", "means and stds of %d features", d)
	}
	ds, err := regenerate(ctx, cp.prepared)
	if err != nil {
		return trained{}, err
	}
	ds.standardize(cp.Means, cp.Stds)
	m := &logreg{w: make([]float64, d)}
	gw := make([]float64, d)
	loss, acc, gb := m.eval(ds, gw)
	epochs, lr := cp.Input.Epochs, cp.Input.LearningRate
	for e := 1; e <= epochs; e++ {
		if err := ctx.Err(); err != nil {
			return trained{}, err
		}
		m.step(lr, gw, gb)
		loss, acc, gb = m.eval(ds, gw)
		if math.IsInf(loss, 0) || math.IsNaN(loss) {
			return trained{}, tasks.Permanent(tasks.FieldError("input.learning_rate",
				"training diverged at epoch %d: try a smaller learning_rate", e))
		}
		p.Report(float64(e)/float64(epochs), TrainProgress{Epoch: e, Epochs: epochs, Loss: loss, Accuracy: acc})
	}
	return trained{preprocessed: cp, Weights: m.w, Bias: m.b, Loss: loss, Accuracy: acc}, nil
}

// trainPackage turns the trained model into the job's result.
func trainPackage(_ context.Context, cp trained, _ tasks.Progress) (TrainResult, error) {
	in := cp.Input
	if len(cp.Weights) != in.Features || len(cp.Means) != in.Features || len(cp.Stds) != in.Features {
		return TrainResult{}, badCheckpoint("train", "a model of %d features", in.Features)
	}
	return TrainResult{
		Model: TrainModel{Weights: cp.Weights, Bias: cp.Bias, Means: cp.Means, Stds: cp.Stds},
		Metrics: TrainMetrics{
			Loss: cp.Loss, Accuracy: cp.Accuracy,
			Samples: in.Samples, Features: in.Features, Positives: cp.Positives,
			Epochs: in.Epochs, LearningRate: in.LearningRate, Seed: in.Seed,
		},
		DataDigest: cp.Digest,
	}, nil
}

// regenerate rebuilds the data set prepare described in cp and checks that
// it is the same one, bit for bit.
func regenerate(ctx context.Context, cp prepared) (*dataset, error) {
	in := cp.Input
	if err := checkTrain(&in); err != nil {
		return nil, tasks.Permanent(err)
	}
	ds, err := generate(ctx, in.Samples, in.Features, in.Seed)
	if err != nil {
		return nil, err
	}
	if got := ds.digest(); got != cp.Digest {
		// Another build of staged (or a worker of another GOARCH) prepared
		// this job: a retry cannot help.
		return nil, tasks.Permanent(tasks.Errorf(tasks.EINTERNAL,
			"the data set regenerated from seed %d differs from the one prepared (digest %.12s, not %.12s): do the workers run different versions or architectures?",
			in.Seed, got, cp.Digest))
	}
	return ds, nil
}

// badCheckpoint is the error of a stage whose input is not the checkpoint
// the previous stage writes.
func badCheckpoint(prev, format string, args ...any) error {
	return tasks.Permanent(tasks.Errorf(tasks.EINTERNAL, "the %s checkpoint does not hold %s", prev, fmt.Sprintf(format, args...)))
}
