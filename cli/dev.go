package cli

import (
	"fmt"
	"io"
	"net"
)

// devURLs prints where to find things in dev mode; with keys, the
// examples send one from $STAGED_API_KEY.
func devURLs(w io.Writer, addr string, keyed bool) {
	base := "http://" + localHost(addr)
	auth, dash := "", ""
	if keyed {
		auth = ` -H "Authorization: Bearer $STAGED_API_KEY"`
		dash = " (an admin key as the password)"
	}
	fmt.Fprintf(w, `
  staged dev is starting
    API        %[1]s/v1/pipelines
    dashboard  %[1]s/monitoring/%[4]s
    try:       curl -s -X POST %[1]s/v1/jobs%[3]s -H 'Content-Type: application/json' -d '{"type":"chain","input":{"data":"x"}}'
               staged submit sleep --wait%[2]s

`, base, serverHint(base), auth, dash)
}

// localHost turns a listen address into one to browse to: ":8080" and
// "0.0.0.0:8080" become "localhost:8080".
func localHost(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	switch host {
	case "", "0.0.0.0", "::", "[::]":
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// serverHint is the --server flag the CLI needs for base, if not the default.
func serverHint(base string) string {
	if base == ServerDefault {
		return ""
	}
	return " --server " + base
}
