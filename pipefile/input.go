package pipefile

import (
	"context"
	"encoding/json"

	"go.yaml.in/yaml/v3"

	"github.com/staged-dev/staged/tasks"
)

// inputSchema reads a pipeline's input: a JSON Schema for an object.
func (p *parser) inputSchema(n *yaml.Node) (map[string]any, error) {
	if n.Kind != yaml.MappingNode {
		return nil, p.errorf(n, "input", "must be a JSON Schema (a mapping such as {type: object, properties: {...}}), not %s", kindName(n))
	}
	var schema map[string]any
	if err := n.Decode(&schema); err != nil {
		return nil, p.errorf(n, "input", "cannot be read: %v", err)
	}
	if _, err := json.Marshal(schema); err != nil {
		return nil, p.errorf(n, "input", "is not representable as JSON: %v", err)
	}
	if t, ok := schema["type"]; ok && t != "object" {
		return nil, p.errorf(n, "input.type", "a job's input is a JSON object: the type must be \"object\", not %v", t)
	}
	if props, ok := schema["properties"]; ok {
		m, ok := props.(map[string]any)
		if !ok {
			return nil, p.errorf(n, "input.properties", "must be a mapping of field names to schemas")
		}
		for k, v := range m {
			if _, ok := v.(map[string]any); !ok {
				return nil, p.errorf(n, "input.properties."+k, "must be a schema (a mapping such as {type: string, default: x})")
			}
		}
	}
	return schema, nil
}

// setInput gives pl its input schema. Until package tasks can carry a
// JSON Schema, the defaults are filled in when the first stage starts
// (the API sees the schema-less input; GET /v1/pipelines shows no schema).
// This is the one place to switch to the catalogue's schema support.
func setInput(pl *tasks.Pipeline, schema map[string]any) {
	if schema == nil || len(pl.Stages) == 0 {
		return
	}
	first := pl.Stages[0].Run
	pl.Stages[0].Run = func(ctx context.Context, in json.RawMessage, p tasks.Progress) (any, error) {
		if info, ok := tasks.StageInfoFrom(ctx); !ok || info.Index <= 1 {
			in = withDefaults(schema, in)
		}
		return first(ctx, in, p)
	}
}

// withDefaults returns the input object in with the schema's property
// defaults filled in where a property is missing, in nested objects too.
// Anything that is not an object is returned as it is.
func withDefaults(schema map[string]any, in json.RawMessage) json.RawMessage {
	var v any
	if len(in) == 0 {
		v = map[string]any{}
	} else if err := json.Unmarshal(in, &v); err != nil {
		return in
	}
	out, err := json.Marshal(fill(schema, v))
	if err != nil {
		return in
	}
	return out
}

func fill(schema map[string]any, v any) any {
	obj, ok := v.(map[string]any)
	if !ok {
		return v
	}
	props, _ := schema["properties"].(map[string]any)
	for name, ps := range props {
		sub, _ := ps.(map[string]any)
		if sub == nil {
			continue
		}
		if cur, ok := obj[name]; ok {
			obj[name] = fill(sub, cur)
		} else if d, ok := sub["default"]; ok {
			obj[name] = copyJSON(d) // the schema's value is shared by every job
		} else if _, ok := sub["properties"]; ok {
			if o := fill(sub, map[string]any{}).(map[string]any); len(o) > 0 {
				obj[name] = o
			}
		}
	}
	return obj
}

func copyJSON(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var c any
	if json.Unmarshal(b, &c) != nil {
		return v
	}
	return c
}
