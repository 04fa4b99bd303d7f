package pipefile

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/staged-dev/staged/execstage"
	"github.com/staged-dev/staged/tasks"
)

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// stage reads stage i of the current pipeline.
func (p *parser) stage(n *yaml.Node, i int) (tasks.Stage, error) {
	at := fmt.Sprintf("stages[%d]", i)
	if name := peekName(n); name != "" {
		at = fmt.Sprintf("stages[%d] (%s)", i, name)
	}
	fields, err := p.mapping(n, at, []string{"name", "run", "dir", "env", "timeout", "weight"})
	if err != nil {
		return tasks.Stage{}, err
	}
	var s tasks.Stage
	nameNode := fields["name"]
	if nameNode == nil {
		return s, p.errorf(n, fmt.Sprintf("stages[%d].name", i), "missing; every stage needs a name")
	}
	if s.Name, err = p.str(nameNode, fmt.Sprintf("stages[%d].name", i)); err != nil {
		return s, err
	}
	if !nameRE.MatchString(s.Name) {
		return s, p.errorf(nameNode, fmt.Sprintf("stages[%d].name", i), "%q is not a valid stage name: use 1-64 letters, digits, '_', '.' or '-'", s.Name)
	}
	at = fmt.Sprintf("stages[%d] (%s)", i, s.Name)
	cmd := &execstage.Command{Dir: p.dir}
	run := fields["run"]
	if run == nil {
		return s, p.errorf(n, at+".run", "missing; give the command as a list, e.g. run: [python3, stage.py]")
	}
	if cmd.Argv, err = p.argv(run, at+".run"); err != nil {
		return s, err
	}
	if v := fields["dir"]; v != nil {
		d, err := p.str(v, at+".dir")
		if err != nil {
			return s, err
		}
		if !filepath.IsAbs(d) {
			d = filepath.Join(p.dir, d)
		}
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return s, p.errorf(v, at+".dir", "%s is not a directory (a relative dir is relative to the pipelines file)", d)
		}
		cmd.Dir = d
	}
	if v := fields["env"]; v != nil {
		if cmd.Env, err = p.env(v, at+".env"); err != nil {
			return s, err
		}
	}
	if v := fields["timeout"]; v != nil {
		if s.Timeout, err = p.duration(v, at+".timeout"); err != nil {
			return s, err
		}
	}
	if v := fields["weight"]; v != nil {
		if v.Kind != yaml.ScalarNode || v.Decode(&s.Weight) != nil || !(s.Weight > 0) || v.Tag == "!!str" {
			return s, p.errorf(v, at+".weight", "must be a number above 0 (the stage's share of the job's progress), not %s", show(v))
		}
	}
	p.checkCommand(cmd, at)
	s.Run = cmd.Run
	return s, nil
}

// argv reads a run list.
func (p *parser) argv(n *yaml.Node, field string) ([]string, error) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		return nil, p.errorf(n, field, "must be a list (the program and its arguments; no shell), e.g. [%s]; "+
			"for a shell command write [sh, -c, %q]", strings.Join(strings.Fields(n.Value), ", "), n.Value)
	}
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		return nil, p.errorf(n, field, "must be a non-empty list (the program and its arguments), e.g. [python3, stage.py], not %s", kindName(n))
	}
	var argv []string
	for j, a := range n.Content {
		if a.Kind != yaml.ScalarNode || a.Tag == "!!null" {
			return nil, p.errorf(a, fmt.Sprintf("%s[%d]", field, j), "must be a string, not %s", kindName(a))
		}
		argv = append(argv, a.Value)
	}
	if argv[0] == "" {
		return nil, p.errorf(n, field+"[0]", "the program is empty")
	}
	return argv, nil
}

// env reads a mapping of environment variables.
func (p *parser) env(n *yaml.Node, field string) ([]string, error) {
	if n.Kind != yaml.MappingNode {
		return nil, p.errorf(n, field, "must be a mapping NAME: value, not %s", kindName(n))
	}
	var env []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case !envNameRE.MatchString(k.Value):
			return nil, p.errorf(k, field, "%q is not a valid variable name", k.Value)
		case strings.HasPrefix(k.Value, "STAGED_"):
			return nil, p.errorf(k, field+"."+k.Value, "STAGED_ variables are set by the worker (see docs/PROTOCOL.md)")
		case v.Kind != yaml.ScalarNode || v.Tag == "!!null":
			return nil, p.errorf(v, field+"."+k.Value, "must be a string, not %s", kindName(v))
		}
		env = append(env, k.Value+"="+v.Value)
	}
	return env, nil
}

func (p *parser) duration(n *yaml.Node, field string) (time.Duration, error) {
	d, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil || d <= 0 {
		return 0, p.errorf(n, field, "must be a duration above 0 with a unit, e.g. 30s, 10m, 1h30m, not %s", show(n))
	}
	return d, nil
}

// checkCommand warns when the program cannot be found on this machine:
// not fatal (the worker's jobs may run elsewhere), but its jobs will fail.
func (p *parser) checkCommand(cmd *execstage.Command, at string) {
	prog := cmd.Argv[0]
	var err error
	if strings.ContainsRune(prog, '/') {
		path := prog
		if !filepath.IsAbs(path) {
			path = filepath.Join(cmd.Dir, path)
		}
		_, err = os.Stat(path)
	} else {
		_, err = exec.LookPath(prog)
	}
	if err != nil {
		p.f.Warnings = append(p.f.Warnings, fmt.Sprintf("pipelines file %s: pipeline %q: %s.run: %q not found on this machine (%v); its jobs will fail here",
			p.file, p.pipeline, at, prog, err))
	}
}
