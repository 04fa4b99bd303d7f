package tasks

import (
	"encoding/json"

	"github.com/staged-dev/staged/api"
)

// anyObject is the schema of a pipeline with no InputSpec.
var anyObject = json.RawMessage(`{"type":"object"}`)

// Definition returns p's published definition, with its digest.
func (p *Pipeline) Definition() api.Definition {
	d := api.Definition{
		Name: p.Name, Description: p.Description, MaxRetries: p.MaxRetries, Version: p.Version,
		Timeout:         DefaultJobTimeout.String(),
		StagesFromInput: p.Build != nil,
		Stages:          make([]api.StageDefinition, len(p.Stages)),
		Input:           api.InputDefinition{Fields: []api.Field{}, Defaults: json.RawMessage(`{}`), Schema: anyObject},
	}
	if p.Timeout > 0 {
		d.Timeout = p.Timeout.String()
	}
	for i, st := range p.Stages {
		sd := api.StageDefinition{Name: st.Name, Weight: st.Weight}
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
	d.Digest = d.ContentDigest()
	return d
}

// Digest returns the digest of p's definition (Definition.Digest).
func (p *Pipeline) Digest() string { return p.Definition().Digest }
