package catalog

import (
	"fmt"
	"time"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/tasks"
)

// PipelineOf returns a pipeline that accepts jobs as d describes them: its
// Input validates against d's schema and applies its defaults, its Stages
// have d's names, weights and timeouts and no Run (the API creates jobs of
// it; only workers run them). It fails when d's schema does not compile or
// its digest does not match its content.
func PipelineOf(d *api.Definition) (*tasks.Pipeline, error) {
	if got := d.ContentDigest(); got != d.Digest {
		return nil, fmt.Errorf("pipeline %q: the definition's digest %.12s does not match its content (%.12s)", d.Name, d.Digest, got)
	}
	in, err := tasks.InputSchema(d.Input.Schema)
	if err != nil {
		return nil, fmt.Errorf("pipeline %q: %v", d.Name, err)
	}
	p := &tasks.Pipeline{Name: d.Name, Description: d.Description, MaxRetries: d.MaxRetries, Version: d.Version, Input: in}
	if p.Timeout, err = time.ParseDuration(d.Timeout); err != nil {
		return nil, fmt.Errorf("pipeline %q: timeout %q: %v", d.Name, d.Timeout, err)
	}
	for _, sd := range d.Stages {
		st := tasks.Stage{Name: sd.Name, Weight: sd.Weight}
		if sd.Timeout != nil {
			if st.Timeout, err = time.ParseDuration(*sd.Timeout); err != nil {
				return nil, fmt.Errorf("pipeline %q: stage %q: timeout %q: %v", d.Name, sd.Name, *sd.Timeout, err)
			}
		}
		p.Stages = append(p.Stages, st)
	}
	return p, nil
}
