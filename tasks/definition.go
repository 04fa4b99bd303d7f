package tasks

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Definition is what a worker publishes about a pipeline in the catalogue
// and what GET /v1/pipelines shows: everything the API needs to accept a
// job of the pipeline without its code.
type Definition struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Digest identifies the definition: the SHA-256 of the name, the
	// stages (names, weights, timeouts), whether the input shapes them,
	// the input schema and Version, in hex. A job runs only on workers
	// whose pipeline has the digest it was accepted under.
	Digest string            `json:"digest"`
	Stages []StageDefinition `json:"stages"`
	// StagesFromInput is true when the job's stages are built from its
	// input (Pipeline.Build); Stages then shows the default shape, and the
	// worker fills in a job's stage list when it starts it.
	StagesFromInput bool            `json:"stages_from_input,omitempty"`
	Input           InputDefinition `json:"input"`
	// Timeout is the default per-attempt timeout, a Go duration.
	Timeout    string `json:"timeout"`
	MaxRetries int    `json:"max_retries"`
	Version    string `json:"version,omitempty"`
}

// StageDefinition is one stage of a Definition.
type StageDefinition struct {
	Name   string  `json:"name"`
	Weight float64 `json:"weight"`
	// Timeout is the stage's own timeout, or null when only the job's applies.
	Timeout *string `json:"timeout"`
}

// InputDefinition is the input part of a Definition.
type InputDefinition struct {
	Fields   []Field         `json:"fields"`
	Defaults json.RawMessage `json:"defaults"`
	// Schema is the input's JSON Schema; {"type":"object"} for a pipeline
	// that accepts any object.
	Schema json.RawMessage `json:"schema"`
}

// anyObject is the schema of a pipeline with no InputSpec.
var anyObject = json.RawMessage(`{"type":"object"}`)

// Definition returns p's published definition, with its digest.
func (p *Pipeline) Definition() Definition {
	d := Definition{
		Name: p.Name, Description: p.Description, MaxRetries: p.MaxRetries, Version: p.Version,
		Timeout:         DefaultJobTimeout.String(),
		StagesFromInput: p.Build != nil,
		Stages:          make([]StageDefinition, len(p.Stages)),
		Input:           InputDefinition{Fields: []Field{}, Defaults: json.RawMessage(`{}`), Schema: anyObject},
	}
	if p.Timeout > 0 {
		d.Timeout = p.Timeout.String()
	}
	for i, st := range p.Stages {
		sd := StageDefinition{Name: st.Name, Weight: st.Weight}
		if sd.Weight <= 0 {
			sd.Weight = 1
		}
		if st.Timeout > 0 {
			t := st.Timeout.String()
			sd.Timeout = &t
		}
		d.Stages[i] = sd
	}
	if in := p.Input; in != nil {
		if in.Fields != nil {
			d.Input.Fields = in.Fields
		}
		if len(in.Defaults) > 0 {
			d.Input.Defaults = in.Defaults
		}
		if len(in.Schema) > 0 {
			d.Input.Schema = in.Schema
		}
	}
	d.Digest = d.digest()
	return d
}

// digest is the SHA-256 of the parts of d that decide whether a job
// checkpointed under one definition can resume under another.
func (d *Definition) digest() string {
	b, err := json.Marshal(struct {
		Name            string            `json:"name"`
		Stages          []StageDefinition `json:"stages"`
		StagesFromInput bool              `json:"stages_from_input"`
		Schema          json.RawMessage   `json:"schema"`
		Version         string            `json:"version"`
	}{d.Name, d.Stages, d.StagesFromInput, d.Input.Schema, d.Version})
	if err != nil {
		panic(err) // plain data
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Digest returns the digest of p's definition (Definition.Digest).
func (p *Pipeline) Digest() string { return p.Definition().Digest }

// Pipeline returns a pipeline that accepts jobs as d describes them: its
// Input validates against d's schema and applies its defaults, its Stages
// have d's names, weights and timeouts and no Run (the API creates jobs of
// it; only workers run them). It fails when d's schema does not compile or
// its digest does not match its content.
func (d *Definition) Pipeline() (*Pipeline, error) {
	if got := d.digest(); got != d.Digest {
		return nil, fmt.Errorf("pipeline %q: the definition's digest %.12s does not match its content (%.12s)", d.Name, d.Digest, got)
	}
	in, err := InputSchema(d.Input.Schema)
	if err != nil {
		return nil, fmt.Errorf("pipeline %q: %v", d.Name, err)
	}
	p := &Pipeline{Name: d.Name, Description: d.Description, MaxRetries: d.MaxRetries, Version: d.Version, Input: in}
	if p.Timeout, err = time.ParseDuration(d.Timeout); err != nil {
		return nil, fmt.Errorf("pipeline %q: timeout %q: %v", d.Name, d.Timeout, err)
	}
	for _, sd := range d.Stages {
		st := Stage{Name: sd.Name, Weight: sd.Weight}
		if sd.Timeout != nil {
			if st.Timeout, err = time.ParseDuration(*sd.Timeout); err != nil {
				return nil, fmt.Errorf("pipeline %q: stage %q: timeout %q: %v", d.Name, sd.Name, *sd.Timeout, err)
			}
		}
		p.Stages = append(p.Stages, st)
	}
	return p, nil
}
