// Package builtin holds the pipelines every staged worker and API knows
// without extra code:
//
//   - train: prepare → preprocess → train → package, a seeded logistic
//     regression that reports its loss per epoch;
//   - sleep: N stages that each wait, for demos, tests and benchmarks;
//   - chain: N stages that each append to a string, the classic polling demo.
//
// They double as examples of the pipeline API: input specs built with
// tasks.InputOf, stage lists shaped by the input (Pipeline.Build), progress
// and partial results, ctx-aware stages, and stage outputs that are small
// JSON checkpoints a resumed job continues from.
package builtin

import (
	"fmt"
	"strconv"

	"github.com/staged-dev/staged/tasks"
)

// Register adds the built-in pipelines (train, sleep, chain) to r. It panics
// if one of their names is taken, as registration happens at start-up.
func Register(r *tasks.Registry) {
	for _, p := range Pipelines() {
		r.MustRegister(p)
	}
}

// Pipelines returns new copies of the built-in pipelines, sorted by name.
func Pipelines() []*tasks.Pipeline {
	return []*tasks.Pipeline{ChainPipeline(), SleepPipeline(), TrainPipeline()}
}

// MaxStages is the largest "stages" sleep and chain accept.
const MaxStages = 100

// stageName is the name of stage k (1-based) of sleep and chain: "stage1"…
// Their Build runs for every job a worker starts: the names up to MaxStages
// are made once, and without fmt (whose deep frames grew the stack of
// each task's fresh goroutine: 5% of the drain's worker CPU).
func stageName(k int) string {
	if k >= 1 && k <= MaxStages {
		return stageNames[k]
	}
	return "stage" + strconv.Itoa(k)
}

var stageNames = func() (names [MaxStages + 1]string) {
	for k := 1; k <= MaxStages; k++ {
		names[k] = "stage" + strconv.Itoa(k)
	}
	return names
}()

// checkInt returns a FieldError naming input.field unless lo <= v <= hi.
func checkInt[T int | int64](field string, v, lo, hi T) error {
	if v < lo || v > hi {
		return tasks.FieldError("input."+field, "%s must be between %s and %s, not %s",
			field, group(int64(lo)), group(int64(hi)), group(int64(v)))
	}
	return nil
}

// group formats n with thousands separators, as limits read in messages.
func group(n int64) string {
	s := fmt.Sprint(n)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3+1)
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
