package cli

import (
	"fmt"
	"log/slog"

	"github.com/staged-dev/staged/pipefile"
	"github.com/staged-dev/staged/tasks"
)

// setPipelines names a pipelines file of command stages (package
// pipefile), read by dev and worker.
var setPipelines = setting{"pipelines", "STAGED_PIPELINES"}

func init() {
	flagHelp[setPipelines] = "a YAML or JSON file of pipelines whose stages are commands (docs/PROTOCOL.md)"
}

// loadPipelines reads the pipelines file named by STAGED_PIPELINES or
// --pipelines; nil when none is named. Any mistake in the file is an error
// that names the file, the pipeline, the field and what is wrong.
func loadPipelines(s *source) (*pipefile.File, error) {
	path, from, ok := s.get(setPipelines)
	if !ok {
		return nil, nil
	}
	f, err := pipefile.Load(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	return f, nil
}

// registerPipelines adds the pipelines of f (if any) to reg; a name taken
// by a pipeline of the program is an error.
func registerPipelines(f *pipefile.File, reg *tasks.Registry, log *slog.Logger) error {
	if f == nil {
		return nil
	}
	for _, w := range f.Warnings {
		log.Warn(w)
	}
	var names []string
	for _, p := range f.Pipelines {
		if reg.Get(p.Name) != nil {
			return fmt.Errorf("pipelines file %s: pipeline %q: name: taken by a pipeline built into this program; choose another name", f.Path, p.Name)
		}
		if err := reg.Register(p); err != nil {
			return fmt.Errorf("pipelines file %s: %w", f.Path, err)
		}
		names = append(names, p.Name)
	}
	log.Info("pipelines file loaded", "file", f.Path, "pipelines", names)
	return nil
}
