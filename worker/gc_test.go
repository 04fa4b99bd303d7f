package worker

import (
	"os"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/staged-dev/staged/internal/redistest"
)

func TestGCPercent(t *testing.T) {
	for live, want := range map[uint64]int{0: 400, 1 << 20: 400, 64 << 20: 400, 128 << 20: 200, 256 << 20: 100, 1 << 30: 100} {
		if got := gcPercent(live); got != want {
			t.Errorf("gcPercent(%d MiB) = %d, want %d", live>>20, got, want)
		}
	}
}

// TuneGC raises the GC percent, and sets it again after each collection.
func TestTuneGC(t *testing.T) {
	if os.Getenv("GOGC") != "" {
		t.Skip("GOGC is set: TuneGC leaves the collector alone")
	}
	current := func() int {
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		return p
	}
	before := current()
	undo := TuneGC()
	undo2 := TuneGC()
	if p := current(); p != gcPercentMax { // this test's live heap is small
		t.Fatalf("GC percent %d after TuneGC, want %d", p, gcPercentMax)
	}
	for range 3 {
		debug.SetGCPercent(150)
		redistest.Eventually(t, 10*time.Second, "the GC percent set again after a collection", func() bool {
			runtime.GC()
			return current() == gcPercentMax
		})
	}
	undo()
	undo() // once per call
	if p := current(); p != gcPercentMax {
		t.Fatalf("GC percent %d with one TuneGC not undone, want %d", p, gcPercentMax)
	}
	undo2()
	if p := current(); p != before {
		t.Fatalf("GC percent %d after the last undo, want %d as before", p, before)
	}
	runtime.GC()
	runtime.GC()
	if p := current(); p != before {
		t.Fatalf("GC percent %d after collections past the last undo, want %d", p, before)
	}
}
