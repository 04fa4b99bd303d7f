package worker

import (
	"os"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync"
)

// GC tuning of a worker process (TuneGC). A worker allocates a lot of
// short-lived memory per job (decoding and encoding records, Redis
// replies) around a small live heap, so with Go's default (the heap grows
// to twice the live heap between collections) it collects very often:
// about a sixth of the drain bench's worker CPU went to the collector.

const (
	// gcPercentMax is the GC percent while the live heap is small: the
	// heap may grow to 5× the live heap between collections.
	gcPercentMax = 400
	// gcHeadroom bounds what the tuning adds: the heap grows by at most
	// this much (or by the live heap, as by default, when that is more)
	// between collections.
	gcHeadroom = 256 << 20
)

// The tuning's state: how many TuneGC calls are not undone, the GC
// percent before the first, and the generation of the sentinel in force.
var (
	gcMu    sync.Mutex
	gcUsers int
	gcPrev  int
	gcGen   int
)

// TuneGC tunes the garbage collector of a process whose main work is a
// worker (staged worker and staged dev call it; staged api too, whose
// requests allocate the same way): unless GOGC is set, after
// each collection the GC percent becomes gcHeadroom over the live heap,
// between 100 (Go's default, from a live heap of 256 MiB up) and 400; so
// the heap grows by at most max(256 MiB, the live heap) between
// collections, and the collector runs up to 4× less often than by default
// while the live heap is small. GOMEMLIMIT, when set, still caps the
// total. undo ends the tuning once every call's undo has been called, and
// restores the GC percent of before.
func TuneGC() (undo func()) {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	gcMu.Lock()
	defer gcMu.Unlock()
	if gcUsers++; gcUsers == 1 {
		gcPrev = debug.SetGCPercent(gcPercentMax)
		gcGen++
		runtime.SetFinalizer(&gcSentinel{gen: gcGen}, retuneGC)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			gcMu.Lock()
			defer gcMu.Unlock()
			if gcUsers--; gcUsers == 0 {
				gcGen++ // the sentinel is not armed again
				debug.SetGCPercent(gcPrev)
			}
		})
	}
}

// gcSentinel is garbage from the start: its finalizer runs after each
// collection and arms itself again while its generation is in force.
type gcSentinel struct {
	gen int
	_   [16]byte // not tiny-allocated: a finalizer needs an object of its own
}

func retuneGC(s *gcSentinel) {
	gcMu.Lock()
	defer gcMu.Unlock()
	if s.gen != gcGen {
		return
	}
	debug.SetGCPercent(gcPercent(liveHeap()))
	runtime.SetFinalizer(s, retuneGC)
}

// gcPercent is the GC percent for a live heap of live bytes.
func gcPercent(live uint64) int {
	if live == 0 {
		return gcPercentMax
	}
	return int(min(max(gcHeadroom*100/live, 100), gcPercentMax))
}

var liveSample = []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}

var liveMu sync.Mutex

func liveHeap() uint64 {
	rtmetrics.Read(liveSample)
	if liveSample[0].Value.Kind() != rtmetrics.KindUint64 {
		return 0
	}
	return liveSample[0].Value.Uint64()
}
