package worker

import "github.com/staged-dev/staged/tasks"

// weights returns each stage's normalised share of the job's progress.
func weights(stages []tasks.Stage) []float64 {
	w := make([]float64, len(stages))
	var sum float64
	for i, s := range stages {
		w[i] = s.Weight
		if w[i] <= 0 {
			w[i] = 1
		}
		sum += w[i]
	}
	for i := range w {
		w[i] /= sum
	}
	return w
}

// stagesProgress returns a job's progress over stages (weighted by
// Stage.Weight) when stages before index (0-based) are done and stage index
// is frac done.
func stagesProgress(stages []tasks.Stage, index int, frac float64) float64 {
	w := weights(stages)
	var done float64
	for i := 0; i < index && i < len(w); i++ {
		done += w[i]
	}
	if index < len(w) {
		done += w[index] * clamp01(frac)
	}
	return clamp01(done)
}

func clamp01(f float64) float64 {
	switch {
	case f < 0 || f != f:
		return 0
	case f > 1:
		return 1
	}
	return f
}
