package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"
)

// StageFunc is the untyped form of a stage's work, for dynamic pipelines:
// in is the previous stage's output as JSON (the job's input, with defaults
// applied, for the first stage); the returned value is JSON-encoded and
// becomes the next stage's in, and the job's result after the last stage.
// A stage must return when ctx is done. Wrap an error with Permanent when a
// retry cannot fix it. Prefer StageOf, which decodes in for you.
type StageFunc func(ctx context.Context, in json.RawMessage, p Progress) (any, error)

// Progress lets a running stage report how far it is and what it has
// produced so far. Calls are cheap: staged coalesces them into at most one
// Redis write per job per flush interval, and always writes stage boundaries.
// A stage always gets a non-nil Progress.
type Progress interface {
	// Report sets the stage's completed fraction (0..1) and, when partial is
	// non-nil, the job's partial result.
	Report(fraction float64, partial any)
}

// Stage is one named step of a pipeline. Build one with StageOf; a Stage
// with only Name and Run (a StageFunc) is an untyped stage.
type Stage struct {
	Name string
	// Weight is the stage's share of the job's progress relative to the
	// others; 0 means 1.
	Weight float64
	// Timeout bounds one run of the stage; 0 means only the job's timeout.
	Timeout time.Duration
	Run     StageFunc

	// in and out are the types of a stage built by StageOf; nil when
	// untyped.
	in, out reflect.Type
}

// StageOf returns a typed stage named name that runs fn. The stage's input
// (the previous stage's output, or the job's input for the first stage) is
// decoded strictly into an In: an unknown field or a value of the wrong type
// fails the job at once (a Permanent error naming the stage and the field).
// fn's Out is JSON-encoded and becomes the next stage's In, and the job's
// result after the last stage.
//
// When consecutive stages of a pipeline are typed, registration checks that
// each stage's Out is the next stage's In, and that the first stage's In is
// the type given to InputOf.
func StageOf[In, Out any](name string, fn func(ctx context.Context, in In, p Progress) (Out, error)) Stage {
	who := whom{"stage ", name}
	return Stage{
		Name: name,
		Run: func(ctx context.Context, raw json.RawMessage, p Progress) (any, error) {
			in, err := decodeStrict[In](who, "in", raw)
			if err != nil {
				return nil, Permanent(err)
			}
			out, err := fn(ctx, in, p)
			if err != nil {
				return nil, err
			}
			return out, nil
		},
		in:  reflect.TypeFor[In](),
		out: reflect.TypeFor[Out](),
	}
}

// WithWeight returns s with Weight w.
func (s Stage) WithWeight(w float64) Stage { s.Weight = w; return s }

// WithTimeout returns s with Timeout d.
func (s Stage) WithTimeout(d time.Duration) Stage { s.Timeout = d; return s }

// BuildOf returns a Pipeline.Build func that decodes the job's normalised
// input strictly into an In (as StageOf does) and calls fn with it:
//
//	Build: tasks.BuildOf(func(in Input) ([]tasks.Stage, error) { ... }),
func BuildOf[In any](fn func(in In) ([]Stage, error)) func(input json.RawMessage) ([]Stage, error) {
	return func(input json.RawMessage) ([]Stage, error) {
		in, err := decodeStrict[In](whom{kind: "Build"}, "input", input)
		if err != nil {
			return nil, err
		}
		return fn(in)
	}
}

// decodeStrict decodes raw into a T strictly: no unknown fields, no wrong
// types, no trailing data; a flat struct's plain JSON without
// encoding/json (flatdecode.go). A failure is an EINVALID error whose message
// starts with who and whose Field is prefix or prefix.field.
func decodeStrict[T any](who whom, prefix string, raw json.RawMessage) (T, error) {
	var v T
	if d := flatDecoders.Get(reflect.TypeFor[T]()); d != nil {
		if d.decode(raw, &v) {
			return v, nil
		}
	}
	return decodeJSON[T](who, prefix, raw)
}

// whom names what decodes (kind + name: "stage " and a stage's name, or
// "Build"), for the messages of its errors: joined only for one, as a
// pipeline with Build makes its stages for every job.
type whom struct{ kind, name string }

func (w whom) String() string { return w.kind + w.name }

// decodeJSON is decodeStrict by encoding/json.
func decodeJSON[T any](who whom, prefix string, raw json.RawMessage) (T, error) {
	var v T
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(&v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data after the JSON value")
		}
	}
	if err == nil {
		return v, nil
	}
	e := &Error{Code: EINVALID, Field: prefix, Err: err}
	var te *json.UnmarshalTypeError
	switch rest, unknown := strings.CutPrefix(err.Error(), "json: unknown field "); {
	case errors.As(err, &te) && te.Field != "":
		e.Field = prefix + "." + te.Field
		e.Message = fmt.Sprintf("%s: field %s must be %s, not %s", who, te.Field, jsonType(te.Type), te.Value)
	case errors.As(err, &te):
		e.Message = fmt.Sprintf("%s: its input must be %s, not %s", who, jsonType(te.Type), te.Value)
	case unknown:
		e.Field = prefix + "." + strings.Trim(rest, `"`)
		e.Message = fmt.Sprintf("%s: unknown field %s in its input (%s)", who, rest, reflect.TypeFor[T]())
	case errors.Is(err, io.EOF):
		e.Message = fmt.Sprintf("%s: its input is empty, not a %s", who, reflect.TypeFor[T]())
	default:
		e.Message = fmt.Sprintf("%s: its input is not a valid %s", who, reflect.TypeFor[T]())
	}
	return v, e
}

// anyType reports whether t accepts any JSON (untyped): nil, an interface,
// or json.RawMessage.
func anyType(t reflect.Type) bool {
	return t == nil || t.Kind() == reflect.Interface || t == reflect.TypeFor[json.RawMessage]()
}

// checkChain returns an error naming the first pair of consecutive typed
// stages where one's Out is not the next one's In, or where the pipeline's
// input type (input, nil if unknown) is not the first stage's In.
//
// A pipeline with Build has its stages checked for every job started, so
// the names in the error are formatted only when there is one.
func checkChain(pipeline string, input reflect.Type, stages []Stage) error {
	prev := input
	for i, s := range stages {
		if !anyType(prev) && !anyType(s.in) && prev != s.in {
			prevName := "the pipeline's input (InputOf)"
			if i > 0 {
				prevName = fmt.Sprintf("the output of stage %q", stages[i-1].Name)
			}
			return fmt.Errorf("pipeline %q: stage %q takes %s but %s is %s: the stages do not chain",
				pipeline, s.Name, s.in, prevName, prev)
		}
		prev = s.out
	}
	return nil
}
