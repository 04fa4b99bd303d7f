// Package pipefile reads a pipelines file: pipelines whose stages are
// commands (see package execstage and docs/PROTOCOL.md), written in YAML
// or JSON. staged worker and staged dev load the file named by
// STAGED_PIPELINES (or --pipelines).
//
//	pipelines:
//	  - name: classic
//	    description: four stages, each appending to the data
//	    input:                       # JSON Schema of the job's input, with defaults
//	      type: object
//	      properties:
//	        data: {type: string, default: "hello"}
//	    timeout: 10m                 # per attempt; default 1h
//	    max_retries: 2
//	    stages:
//	      - name: stage1
//	        run: [python3, classic.py] # argv; no shell
//	        dir: .                   # relative to this file; default its directory
//	        env: {MODE: fast}
//	        timeout: 1m
//	        weight: 1
//
// YAML is parsed with go.yaml.in/yaml/v3, the YAML organisation's
// maintained continuation of gopkg.in/yaml.v3 (JSON is YAML, so one parser
// reads both). Every mistake is an error naming the file, the pipeline, the
// field and what is wrong.
package pipefile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/staged-dev/staged/tasks"
)

// File is a loaded pipelines file.
type File struct {
	// Path is the file's path as given.
	Path string
	// Pipelines are its pipelines, in file order, ready to register.
	Pipelines []*tasks.Pipeline
	// Warnings are things that will not stop the worker but will fail jobs
	// (a command not found in PATH on this machine).
	Warnings []string
}

// Load reads and checks the pipelines file at path.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pipelines file %s: %w", path, errors.Unwrap(err))
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("pipelines file %s: %w", path, err)
	}
	return Parse(path, data, filepath.Dir(abs))
}

// Parse checks data, the content of the pipelines file named name (for
// messages). Relative stage directories are relative to dir.
func Parse(name string, data []byte, dir string) (*File, error) {
	f := &File{Path: name}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("pipelines file %s: not valid YAML or JSON: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	p := &parser{file: name, dir: dir, f: f}
	if err := p.top(&doc); err != nil {
		return nil, err
	}
	return f, nil
}

// parser walks the document, keeping where it is for messages.
type parser struct {
	file     string
	dir      string
	f        *File
	pipeline string // the pipeline being read, "" before its name is known
	pline    int    // its line
}

// errorf returns an error about field at node n.
func (p *parser) errorf(n *yaml.Node, field, format string, args ...any) error {
	where := p.file
	if n != nil && n.Line > 0 {
		where += fmt.Sprintf(":%d", n.Line)
	}
	if p.pline > 0 {
		name := p.pipeline
		if name == "" {
			name = "(unnamed)"
		}
		where += fmt.Sprintf(": pipeline %q", name)
	}
	if field != "" {
		where += ": " + field
	}
	return fmt.Errorf("pipelines file %s: %s", where, fmt.Sprintf(format, args...))
}

func (p *parser) top(doc *yaml.Node) error {
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return p.errorf(nil, "", "the file is empty; it needs a list of pipelines under \"pipelines:\"")
	}
	root := doc.Content[0]
	fields, err := p.mapping(root, "", []string{"pipelines"})
	if err != nil {
		return err
	}
	list := fields["pipelines"]
	if list == nil {
		return p.errorf(root, "pipelines", "missing; the file needs a list of pipelines under \"pipelines:\"")
	}
	if list.Kind != yaml.SequenceNode || len(list.Content) == 0 {
		return p.errorf(list, "pipelines", "must be a non-empty list of pipelines")
	}
	seen := map[string]int{}
	for _, n := range list.Content {
		pl, err := p.pipelineNode(n)
		if err != nil {
			return err
		}
		if line, ok := seen[pl.Name]; ok {
			return p.errorf(n, "name", "a second pipeline named %q (the first is on line %d)", pl.Name, line)
		}
		seen[pl.Name] = n.Line
		p.f.Pipelines = append(p.f.Pipelines, pl)
	}
	return nil
}

// mapping returns n's fields by key, refusing keys not in allowed.
func (p *parser) mapping(n *yaml.Node, field string, allowed []string) (map[string]*yaml.Node, error) {
	if n.Kind != yaml.MappingNode {
		what := "a mapping of fields"
		if field == "" {
			return nil, p.errorf(n, field, "the file must be a mapping with a \"pipelines:\" list, not %s", kindName(n))
		}
		return nil, p.errorf(n, field, "must be %s, not %s", what, kindName(n))
	}
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !contains(allowed, k.Value) {
			return nil, p.errorf(k, join(field, k.Value), "unknown field; the fields here are %s", strings.Join(allowed, ", "))
		}
		if _, dup := out[k.Value]; dup {
			return nil, p.errorf(k, join(field, k.Value), "given twice")
		}
		out[k.Value] = v
	}
	return out, nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func (p *parser) pipelineNode(n *yaml.Node) (*tasks.Pipeline, error) {
	p.pipeline, p.pline = peekName(n), n.Line
	fields, err := p.mapping(n, "", []string{"name", "description", "input", "timeout", "max_retries", "stages"})
	if err != nil {
		return nil, err
	}
	nameNode := fields["name"]
	if nameNode == nil {
		return nil, p.errorf(n, "name", "missing; every pipeline needs a name (its job type)")
	}
	name, err := p.str(nameNode, "name")
	if err != nil {
		return nil, err
	}
	if !nameRE.MatchString(name) {
		return nil, p.errorf(nameNode, "name", "%q is not a valid pipeline name: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit", name)
	}
	p.pipeline = name
	pl := &tasks.Pipeline{Name: name}
	if v := fields["description"]; v != nil {
		if pl.Description, err = p.str(v, "description"); err != nil {
			return nil, err
		}
	}
	if v := fields["timeout"]; v != nil {
		if pl.Timeout, err = p.duration(v, "timeout"); err != nil {
			return nil, err
		}
	}
	if v := fields["max_retries"]; v != nil {
		var r int
		if v.Kind != yaml.ScalarNode || v.Decode(&r) != nil || r < 0 {
			return nil, p.errorf(v, "max_retries", "must be a whole number, 0 or more, not %s", show(v))
		}
		pl.MaxRetries = r
	}
	if v := fields["input"]; v != nil {
		schema, err := p.inputSchema(v)
		if err != nil {
			return nil, err
		}
		if pl.Input, err = inputSpec(schema); err != nil {
			return nil, p.errorf(v, "input", "%v", err)
		}
	}
	st := fields["stages"]
	if st == nil {
		return nil, p.errorf(n, "stages", "missing; a pipeline needs at least one stage")
	}
	if st.Kind != yaml.SequenceNode || len(st.Content) == 0 {
		return nil, p.errorf(st, "stages", "must be a non-empty list of stages")
	}
	seen := map[string]bool{}
	for i, sn := range st.Content {
		s, err := p.stage(sn, i)
		if err != nil {
			return nil, err
		}
		if seen[s.Name] {
			return nil, p.errorf(sn, fmt.Sprintf("stages[%d].name", i), "a second stage named %q", s.Name)
		}
		seen[s.Name] = true
		pl.Stages = append(pl.Stages, s)
	}
	if err := pl.Validate(); err != nil {
		return nil, p.errorf(n, "", "%v", err)
	}
	return pl, nil
}

func (p *parser) str(n *yaml.Node, field string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return "", p.errorf(n, field, "must be a string, not %s", show(n))
	}
	return n.Value, nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			return "a string"
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "empty"
		}
		return "a scalar"
	}
	return "empty"
}

// show describes a node's value for a message.
func show(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return fmt.Sprintf("%s %q", kindName(n), n.Value)
	}
	return kindName(n)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

// peekName returns the name field of mapping n, if it is a string, so that
// messages about the other fields can name it.
func peekName(n *yaml.Node) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, v := n.Content[i], n.Content[i+1]; k.Value == "name" && v.Kind == yaml.ScalarNode && nameRE.MatchString(v.Value) {
			return v.Value
		}
	}
	return ""
}
