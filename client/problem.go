package client

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Problem is an error answer of the API, an RFC 9457
// application/problem+json document. Answers that are not problem documents
// (a proxy's HTML error page, say) become a Problem too, with the status
// text as Title and the start of the body as Detail.
type Problem struct {
	Type   string `json:"type,omitempty"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Field names the offending request field, when there is one.
	Field string `json:"field,omitempty"`
	// RetryAfter is the answer's Retry-After, when it had one (429, 503).
	RetryAfter time.Duration `json:"-"`
}

// Error returns "title: detail", or the title alone.
func (p *Problem) Error() string {
	t := p.Title
	if t == "" {
		t = http.StatusText(p.Status)
	}
	if t == "" {
		t = "HTTP " + strconv.Itoa(p.Status)
	}
	if p.Detail == "" || p.Detail == t {
		return t
	}
	return t + ": " + p.Detail
}

// StatusCode returns the HTTP status of the *Problem in err's chain, or 0
// when err is not an answer of the API (nil, a connection error, ...).
func StatusCode(err error) int {
	var p *Problem
	if errors.As(err, &p) {
		return p.Status
	}
	return 0
}

// maxProblemBody caps how much of an error answer is read.
const maxProblemBody = 64 << 10

// readProblem builds the Problem of a non-2xx answer. It never fails: a body
// that is not a problem document still gives a Problem with the status.
func readProblem(resp *http.Response) *Problem {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxProblemBody))
	p := &Problem{}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if ct == "application/problem+json" || ct == "application/json" {
		if err := json.Unmarshal(body, p); err != nil {
			p = &Problem{}
		}
		if p.Title == "" && p.Detail == "" {
			// Echo's default error shape: {"message": "..."}.
			var m struct {
				Message string `json:"message"`
			}
			if json.Unmarshal(body, &m) == nil {
				p.Detail = m.Message
			}
		}
	} else {
		p.Detail = snippet(body)
	}
	// The status line is the truth; a document's status field may be
	// missing or, behind a proxy, wrong.
	p.Status = resp.StatusCode
	if p.Title == "" {
		p.Title = http.StatusText(resp.StatusCode)
	}
	p.RetryAfter = retryAfter(resp.Header.Get("Retry-After"))
	return p
}

// snippet returns the first line of a non-JSON error body, shortened.
func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if strings.HasPrefix(s, "<") { // HTML: says nothing useful in one line
		return ""
	}
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		n := 200
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n] + "…"
	}
	return s
}

func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
