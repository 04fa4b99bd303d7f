package builtin

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/staged-dev/staged/stagedtest"
)

func TestSleepStages(t *testing.T) {
	p := SleepPipeline()
	in := normalize(t, p, `{"stages": 3, "ms": 0}`)
	st := stagesFor(t, p, in)
	if len(st) != 3 || st[0].Name != "stage1" || st[2].Name != "stage3" {
		t.Fatalf("stages %v, want stage1..stage3", names(st))
	}
	outs := runStages(t, context.Background(), st, in)
	for k, out := range outs {
		want := `{"stage":` + string(rune('1'+k)) + `,"slept_ms":0}`
		if string(out) != want {
			t.Errorf("stage %d output %s, want %s", k+1, out, want)
		}
	}
}

func TestSleepReportsProgress(t *testing.T) {
	const ms = 300
	p := SleepPipeline()
	st := stagesFor(t, p, normalize(t, p, `{"stages": 2, "ms": 300}`))
	start := time.Now()
	res, err := stagedtest.RunStage(context.Background(), st[1], SleepOutput{Stage: 1, SleptMS: ms})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < ms*time.Millisecond {
		t.Errorf("stage returned after %v, want at least %dms", d, ms)
	}
	if want := `{"stage":2,"slept_ms":300}`; string(res.Output) != want {
		t.Errorf("output %s, want %s", res.Output, want)
	}
	reps := res.Reports
	// Ticks at about 50, 100, …, 250 ms; a loaded machine may drop some.
	if len(reps) < 2 {
		t.Fatalf("%d progress reports in %dms, want about one per %v", len(reps), ms, sleepReportEvery)
	}
	var prev float64
	for i, r := range reps {
		part, ok := r.Partial.(SleepOutput)
		if !ok || part.Stage != 2 || part.SleptMS < 0 || part.SleptMS > ms {
			t.Errorf("report %d: partial %#v, want stage 2 and slept_ms within 0..%d", i, r.Partial, ms)
		}
		if r.Fraction <= prev || r.Fraction > 1 {
			t.Errorf("report %d: fraction %v after %v", i, r.Fraction, prev)
		}
		prev = r.Fraction
	}
}

func TestSleepCancel(t *testing.T) {
	p := SleepPipeline()
	in := normalize(t, p, `{"stages": 1, "ms": 3600000}`)
	st := stagesFor(t, p, in)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	onReport, reported := signalOnReport()
	done := make(chan error, 1)
	go func() {
		_, err := stagedtest.RunStage(ctx, st[0], in, onReport)
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
			t.Fatalf("returned %v after cancel, want context.Canceled", err)
		}
		if d := time.Since(canceled); d > 250*time.Millisecond {
			t.Errorf("took %v to return after cancel", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still sleeping 10s after cancel")
	}
}

func TestSleepCanceledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, ms := range []int{0, 1000} {
		_, err := stagedtest.RunStage(ctx, stagesFor(t, SleepPipeline(), normalize(t, SleepPipeline(), fmt.Sprintf(`{"ms": %d}`, ms)))[0], `{}`)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("ms %d on a canceled ctx: %v, want context.Canceled", ms, err)
		}
	}
}
