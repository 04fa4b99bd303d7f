package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

// Field describes one input field.
type Field struct {
	Name        string `json:"name"`
	Type        string `json:"type"` // JSON Schema type: integer, number, string, boolean, object, array
	Default     any    `json:"default"`
	Description string `json:"description,omitempty"`
}

// ContentDigest is the SHA-256, in hex, of the parts of d that decide whether a job
// checkpointed under one definition can resume under another.
func (d *Definition) ContentDigest() string {
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
