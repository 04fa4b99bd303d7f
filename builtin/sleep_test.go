package builtin

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestSleepStages(t *testing.T) {
	p := SleepPipeline()
	in := normalize(t, p, `{"stages": 3, "ms": 0}`)
	st := stagesFor(t, p, in)
	if len(st) != 3 || st[0].Name != "stage1" || st[2].Name != "stage3" {
		t.Fatalf("stages %v, want stage1..stage3", names(st))
	}
	outs := runStages(t, context.Background(), st, in, &fakeProgress{})
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
	prog := &fakeProgress{}
	start := time.Now()
	out, err := st[1].Run(context.Background(), json.RawMessage(`{"stage":1,"slept_ms":300}`), prog)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < ms*time.Millisecond {
		t.Errorf("stage returned after %v, want at least %dms", d, ms)
	}
	if out != (SleepOutput{Stage: 2, SleptMS: ms}) {
		t.Errorf("output %+v", out)
	}
	reps := prog.all()
	// Ticks at about 50, 100, …, 250 ms; a loaded machine may drop some.
	if len(reps) < 2 {
		t.Fatalf("%d progress reports in %dms, want about one per %v", len(reps), ms, sleepReportEvery)
	}
	var prev float64
	for i, r := range reps {
		part, ok := r.partial.(SleepOutput)
		if !ok || part.Stage != 2 || part.SleptMS < 0 || part.SleptMS > ms {
			t.Errorf("report %d: partial %#v, want stage 2 and slept_ms within 0..%d", i, r.partial, ms)
		}
		if r.frac <= prev || r.frac > 1 {
			t.Errorf("report %d: fraction %v after %v", i, r.frac, prev)
		}
		prev = r.frac
	}
}

func TestSleepCancel(t *testing.T) {
	p := SleepPipeline()
	in := normalize(t, p, `{"stages": 1, "ms": 3600000}`)
	st := stagesFor(t, p, in)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prog := &fakeProgress{signal: make(chan struct{}, 1)}
	done := make(chan error, 1)
	go func() {
		_, err := st[0].Run(ctx, in, prog)
		done <- err
	}()
	select {
	case <-prog.signal:
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
		_, err := sleepStage(ctx, 1, ms, &fakeProgress{})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("ms %d on a canceled ctx: %v, want context.Canceled", ms, err)
		}
	}
}
