package pipefile

import (
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

// inputSpec turns a pipeline's input schema into the spec the API
// validates submits with and fills defaults from (tasks.InputSchema). A
// schema without a "type" is taken as an object schema.
func inputSpec(schema map[string]any) (*tasks.InputSpec, error) {
	if _, ok := schema["type"]; !ok {
		schema["type"] = "object"
	}
	b, err := json.Marshal(schema)
	if err != nil {
		return nil, err
	}
	return tasks.InputSchema(b)
}
