package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"sort"
	"strings"
	"time"
)

// result is one scenario's figures, in the order they were set; it
// marshals as one JSON object starting with "scenario".
type result struct {
	scenario string
	keys     []string
	vals     map[string]any
}

func newResult(scenario string) *result {
	return &result{scenario: scenario, vals: map[string]any{}}
}

// set records k = v; floats are rounded to 3 decimals.
func (r *result) set(k string, v any) {
	if f, ok := v.(float64); ok {
		v = round3(f)
	}
	if _, ok := r.vals[k]; !ok {
		r.keys = append(r.keys, k)
	}
	r.vals[k] = v
}

func round3(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return math.Round(f*1000) / 1000
}

// MarshalJSON writes {"scenario": ..., k: v, ...} in insertion order.
func (r *result) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"scenario":`)
	s, _ := json.Marshal(r.scenario)
	b.Write(s)
	for _, k := range r.keys {
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(r.vals[k])
		if err != nil {
			return nil, err
		}
		b.WriteByte(',')
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// printTable writes the result as an aligned two-column table.
func (r *result) printTable(w io.Writer) {
	width := 0
	for _, k := range r.keys {
		width = max(width, len(k))
	}
	fmt.Fprintf(w, "\n%-*s  %s\n", width, "["+r.scenario+"]", "")
	for _, k := range r.keys {
		fmt.Fprintf(w, "  %-*s  %v\n", width, k, r.vals[k])
	}
}

// ms converts a duration to float milliseconds.
func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// percentiles returns p50, p99 and max of ds (sorted in place), using the
// same rank as the peers: ds[len*p/100].
func percentiles(ds []time.Duration) (p50, p99, mx time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2], ds[len(ds)*99/100], ds[len(ds)-1]
}

// profile starts a CPU profile of this process in dir/name when dir is
// set; the returned func stops it.
func profile(dir, name string) (stop func() error, err error) {
	if dir == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	// Heap profiles at the start and the end: the allocations in between
	// are `go tool pprof -sample_index=alloc_objects -diff_base START END`.
	base := strings.TrimSuffix(name, ".pprof")
	if err := writeHeap(filepath.Join(dir, base+"-heap-start.pprof")); err != nil {
		pprof.StopCPUProfile()
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		herr := writeHeap(filepath.Join(dir, base+"-heap-end.pprof"))
		return errors.Join(f.Close(), herr)
	}, nil
}

// writeHeap writes the heap profile (with the allocations so far) to file.
func writeHeap(file string) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	return errors.Join(pprof.Lookup("allocs").WriteTo(f, 0), f.Close())
}

// startTrace starts an execution trace of this process into file when
// it is set; the returned func stops it.
func startTrace(file string) (stop func() error, err error) {
	if file == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := trace.Start(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		trace.Stop()
		return f.Close()
	}, nil
}
