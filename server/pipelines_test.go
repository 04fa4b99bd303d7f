package server

import (
	"testing"
)

func TestPipelines(t *testing.T) {
	e := newEnv(t)
	res, b := e.do("GET", "/v1/pipelines", "", nil)
	want := `{"pipelines":[{"name":"double","description":"two stages for tests",
		"stages":[{"name":"first","weight":2,"timeout":null},{"name":"second","weight":1,"timeout":"1m0s"}],
		"input":{"fields":[{"name":"n","type":"integer","default":1,"description":"a number from 1 to 100"},
		                   {"name":"label","type":"string","default":"x"}],
		         "defaults":{"n":1,"label":"x"}},
		"timeout":"1h0m0s","max_retries":2},
		{"name":"shaped","description":"","stages":[{"name":"s1","weight":1,"timeout":null}],
		 "input":{"fields":[{"name":"stages","type":"integer","default":1}],"defaults":{"stages":1}},
		 "timeout":"1h0m0s","max_retries":0}]}`
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" || !jsonEqual(b, want) {
		t.Fatalf("status %d, type %q, body %s", res.StatusCode, res.Header.Get("Content-Type"), b)
	}
}
