package tasks

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Pipeline is a registered job type: a name and its ordered stages.
type Pipeline struct {
	Name        string
	Description string
	Stages      []Stage
	// Input validates a submitted input and applies defaults. Nil accepts
	// any JSON object as it is. Build one with InputOf.
	Input *InputSpec
	// Timeout is the default job timeout (per attempt); 0 means
	// DefaultJobTimeout.
	Timeout time.Duration
	// MaxRetries is the default number of retries after a failed attempt.
	MaxRetries int
	// Build, when set, returns the stages of one job from its normalised
	// input, for pipelines whose shape depends on the input (sleep's and
	// chain's "stages"). Stages then describes the default shape, for
	// GET /v1/pipelines. Build must be deterministic: the API and every
	// worker that runs the job call it with the same input.
	Build func(input json.RawMessage) ([]Stage, error)
	// Version is part of the pipeline's digest (see Definition): change it
	// when a stage's behaviour changes in a way that makes a job
	// checkpointed by the old code unsafe to resume with the new one, even
	// though the stage names, weights, timeouts and input schema are the
	// same. Empty is fine for most pipelines.
	Version string
}

// StagesFor returns the stages of a job of p with the given normalised
// input: Build's answer when p has one, else p.Stages.
func (p *Pipeline) StagesFor(input json.RawMessage) ([]Stage, error) {
	if p.Build == nil {
		return p.Stages, nil
	}
	st, err := p.Build(input)
	if err != nil {
		return nil, err
	}
	if len(st) == 0 {
		return nil, &Error{Code: EUNPROCESSABLE, Field: "input", Message: "the input gives the job no stages"}
	}
	if err := checkChain(p.Name, p.Input.inputType(), st); err != nil {
		return nil, &Error{Code: EINTERNAL, Message: "internal error", Err: err}
	}
	return st, nil
}

// DefaultJobTimeout is the job timeout when neither the pipeline nor the
// submit sets one. asynq's own silent default is 30 minutes; we say ours.
const DefaultJobTimeout = time.Hour

// Validate checks p is well formed: it has a name and stages, each stage
// has a unique name and a Run func, and consecutive typed stages chain
// (see StageOf). For a pipeline with Build, the stages built from the
// default input are checked too.
func (p *Pipeline) Validate() error {
	if p.Name == "" {
		return fmt.Errorf("pipeline has no name")
	}
	if err := p.validateStages(p.Stages); err != nil {
		return err
	}
	if p.Build == nil || p.Input == nil {
		return nil
	}
	in, err := p.Input.Normalize(p.Input.Defaults)
	if err != nil {
		return fmt.Errorf("pipeline %q: its default input is refused: %w", p.Name, err)
	}
	st, err := p.Build(in)
	if err != nil {
		return fmt.Errorf("pipeline %q: Build of the default input: %w", p.Name, err)
	}
	return p.validateStages(st)
}

func (p *Pipeline) validateStages(stages []Stage) error {
	if len(stages) == 0 {
		return fmt.Errorf("pipeline %q has no stages", p.Name)
	}
	seen := map[string]bool{}
	for i, s := range stages {
		if s.Name == "" || s.Run == nil {
			return fmt.Errorf("pipeline %q stage %d needs a name and a Run func", p.Name, i+1)
		}
		if seen[s.Name] {
			return fmt.Errorf("pipeline %q has two stages named %q", p.Name, s.Name)
		}
		seen[s.Name] = true
	}
	return checkChain(p.Name, p.Input.inputType(), stages)
}

// Registry holds the registered pipelines. The zero value is empty and ready.
type Registry struct {
	mu sync.RWMutex
	m  map[string]*Pipeline
}

// NewRegistry returns a registry holding ps; it panics on an invalid or
// duplicate pipeline, as registration happens at start-up.
func NewRegistry(ps ...*Pipeline) *Registry {
	r := &Registry{}
	for _, p := range ps {
		r.MustRegister(p)
	}
	return r
}

// Register adds p, returning an error if it is invalid or its name is taken.
func (r *Registry) Register(p *Pipeline) error {
	if err := p.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]*Pipeline{}
	}
	if _, ok := r.m[p.Name]; ok {
		return fmt.Errorf("pipeline %q registered twice", p.Name)
	}
	r.m[p.Name] = p
	return nil
}

// MustRegister is Register that panics on error.
func (r *Registry) MustRegister(p *Pipeline) {
	if err := r.Register(p); err != nil {
		panic(err)
	}
}

// Get returns the pipeline named name, or nil.
func (r *Registry) Get(name string) *Pipeline {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.m[name]
}

// All returns the pipelines sorted by name; none for a nil Registry.
func (r *Registry) All() []*Pipeline {
	if r == nil {
		return nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	ps := make([]*Pipeline, 0, len(r.m))
	for _, p := range r.m {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Name < ps[j].Name })
	return ps
}

// Names returns the registered names, sorted.
func (r *Registry) Names() []string {
	var ns []string
	for _, p := range r.All() {
		ns = append(ns, p.Name)
	}
	return ns
}
