package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestLoadMetricsAddr(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    string
		wantSet bool
		wantErr string // in the error; "" for none
	}{
		{name: "default", want: ":9090"},
		{name: "env", env: map[string]string{"STAGED_METRICS_ADDR": "127.0.0.1:9191"}, want: "127.0.0.1:9191", wantSet: true},
		{name: "env off", env: map[string]string{"STAGED_METRICS_ADDR": "off"}, want: "", wantSet: true},
		{name: "blank env is unset", env: map[string]string{"STAGED_METRICS_ADDR": " "}, want: ":9090"},
		{name: "empty flag is off", env: map[string]string{"STAGED_METRICS_ADDR": ":9191"}, args: []string{"--metrics-addr="}, want: "", wantSet: true},
		{name: "flag wins", env: map[string]string{"STAGED_METRICS_ADDR": ":9191"}, args: []string{"--metrics-addr", ":9292"}, want: ":9292", wantSet: true},
		{name: "bad", env: map[string]string{"STAGED_METRICS_ADDR": "9090"}, wantErr: "STAGED_METRICS_ADDR"},
		{name: "bad port", args: []string{"--metrics-addr", ":99999"}, wantErr: "--metrics-addr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			fs := newFlagSet("worker", "", &buf)
			addFlags(fs, flagHelp, setMetricsAddr)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatalf("parse: %v %s", err, buf.String())
			}
			got, set, err := loadMetricsAddr(newSource(fs, func(k string) string { return tt.env[k] }))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want || set != tt.wantSet {
				t.Fatalf("= %q, %v, %v; want %q, %v", got, set, err, tt.want, tt.wantSet)
			}
		})
	}
}
