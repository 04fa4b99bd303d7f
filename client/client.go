// Package client is the Go client for staged's HTTP API. The staged CLI and
// the end-to-end tests use it; so can any Go program that submits and
// follows jobs.
//
//	c := client.New("http://localhost:8080", client.WithAPIKey(secret))
//	job, err := c.Submit(ctx, "chain", map[string]any{"data": "x"}, nil)
//	for j, err := range c.Watch(ctx, job.ID) { ... }
//
// Every method returns a *Problem when the API answers with an error status,
// and a wrapped transport error (errors.As to *url.Error) when it cannot be
// reached.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/staged-dev/staged/api"
)

// Defaults.
const (
	// MaxWait is the longest long-poll the API accepts in one request; longer
	// waits are split into several requests.
	MaxWait = 60 * time.Second
	// WaitDefault is the per-request long-poll of Wait when none is given.
	WaitDefault = 30 * time.Second
	// RequestTimeoutDefault bounds one request (on top of its long-poll wait)
	// when the context has no earlier deadline.
	RequestTimeoutDefault = 30 * time.Second
	// ReconnectMinDefault and ReconnectMaxDefault bound Watch's backoff
	// between reconnects.
	ReconnectMinDefault = 100 * time.Millisecond
	ReconnectMaxDefault = 5 * time.Second
	// ReconnectAttemptsDefault is how many reconnects in a row Watch tries
	// without receiving anything before it gives up.
	ReconnectAttemptsDefault = 10
	// StreamIdleTimeoutDefault is how long Watch waits for any byte (an
	// event or a keep-alive comment) before it drops the connection and
	// reconnects.
	StreamIdleTimeoutDefault = 2 * time.Minute
	// maxEventSize caps one SSE line (a record can carry a large partial
	// result).
	maxEventSize = 32 << 20
)

// Client talks to one staged API. It is safe for concurrent use.
type Client struct {
	base       string // scheme://host[/prefix], no trailing slash
	baseErr    error
	hc         *http.Client
	apiKey     string
	reqTimeout time.Duration
	recMin     time.Duration
	recMax     time.Duration
	recTries   int
	idle       time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the client send its requests with hc. Watch streams
// are long-lived, so hc should have no overall Timeout.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithAPIKey sends secret as "Authorization: Bearer secret" on every request.
func WithAPIKey(secret string) Option { return func(c *Client) { c.apiKey = secret } }

// WithRequestTimeout bounds each request (other than Watch streams) to d
// plus its long-poll wait; 0 means no bound beyond the context's.
func WithRequestTimeout(d time.Duration) Option { return func(c *Client) { c.reqTimeout = d } }

// WithReconnect sets Watch's reconnect policy: the backoff grows from min to
// max, and Watch gives up after attempts failed reconnects in a row.
func WithReconnect(min, max time.Duration, attempts int) Option {
	return func(c *Client) { c.recMin, c.recMax, c.recTries = min, max, attempts }
}

// WithStreamIdleTimeout makes Watch reconnect when its stream delivers
// nothing, not even a keep-alive, for d; 0 turns the check off.
func WithStreamIdleTimeout(d time.Duration) Option { return func(c *Client) { c.idle = d } }

// New returns a client for the API at baseURL (for example
// "http://localhost:8080"). An invalid baseURL makes every call fail.
func New(baseURL string, opts ...Option) *Client {
	c := &Client{
		hc: http.DefaultClient, reqTimeout: RequestTimeoutDefault,
		recMin: ReconnectMinDefault, recMax: ReconnectMaxDefault, recTries: ReconnectAttemptsDefault,
		idle: StreamIdleTimeoutDefault,
	}
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	switch {
	case err != nil:
		c.baseErr = fmt.Errorf("client: invalid server URL %q: %w", baseURL, err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		c.baseErr = fmt.Errorf("client: invalid server URL %q: want http://host:port or https://host:port", baseURL)
	default:
		u.RawQuery, u.Fragment = "", ""
		c.base = u.String()
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// BaseURL returns the API's root URL the client was made with.
func (c *Client) BaseURL() string { return c.base }

// SubmitOptions are the optional parts of a submit; the zero value takes the
// server's and the pipeline's defaults.
type SubmitOptions struct {
	// Retention is how long the finished job stays readable.
	Retention time.Duration
	// Timeout bounds one attempt of the job.
	Timeout time.Duration
	// MaxRetries is the number of retries after a failed attempt; nil means
	// the pipeline's default.
	MaxRetries *int
	// Queue is the asynq queue; "" means the default queue.
	Queue string
	// IdempotencyKey makes a repeated submit return the job the first one
	// created.
	IdempotencyKey string
	// Wait makes the API hold the answer until the job finishes or Wait
	// passes (at most MaxWait).
	Wait time.Duration
}

type submitRequest struct {
	Type       string          `json:"type"`
	Input      json.RawMessage `json:"input,omitempty"`
	Retention  string          `json:"retention,omitempty"`
	Timeout    string          `json:"timeout,omitempty"`
	MaxRetries *int            `json:"max_retries,omitempty"`
	Queue      string          `json:"queue,omitempty"`
}

// Submit starts a job of type typ. input is JSON-encoded unless it is a
// json.RawMessage or []byte already holding JSON; nil means the pipeline's
// defaults. It returns the job record: queued (202), the earlier job of the
// same Idempotency-Key (200), or, with o.Wait, possibly the finished job.
func (c *Client) Submit(ctx context.Context, typ string, input any, o *SubmitOptions) (*api.Job, error) {
	if o == nil {
		o = &SubmitOptions{}
	}
	raw, err := encodeInput(input)
	if err != nil {
		return nil, fmt.Errorf("client.Submit: %w", err)
	}
	body, err := json.Marshal(submitRequest{
		Type: typ, Input: raw, Retention: durationString(o.Retention), Timeout: durationString(o.Timeout),
		MaxRetries: o.MaxRetries, Queue: o.Queue,
	})
	if err != nil {
		return nil, fmt.Errorf("client.Submit: %w", err)
	}
	path := "/v1/jobs"
	wait := min(o.Wait, MaxWait)
	if wait > 0 {
		path += "?wait=" + wait.String()
	}
	hdr := http.Header{"Content-Type": {"application/json"}}
	if o.IdempotencyKey != "" {
		hdr.Set("Idempotency-Key", o.IdempotencyKey)
	}
	var j api.Job
	if err := c.do(ctx, http.MethodPost, path, hdr, body, wait, &j); err != nil {
		return nil, fmt.Errorf("client.Submit %s: %w", typ, err)
	}
	return &j, nil
}

func encodeInput(input any) (json.RawMessage, error) {
	switch v := input.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		return checkJSON(v)
	case []byte:
		return checkJSON(v)
	}
	b, err := json.Marshal(input)
	if err != nil {
		return nil, fmt.Errorf("encoding input: %w", err)
	}
	return b, nil
}

func checkJSON(b []byte) (json.RawMessage, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, nil
	}
	if !json.Valid(b) {
		return nil, errors.New("input is not valid JSON")
	}
	return b, nil
}

func durationString(d time.Duration) string {
	if d <= 0 {
		return ""
	}
	return d.String()
}

// Get returns job id's record. An unknown, expired or another tenant's job
// is a *Problem with Status 404.
func (c *Client) Get(ctx context.Context, id string) (*api.Job, error) {
	j, err := c.get(ctx, id, 0)
	if err != nil {
		return nil, fmt.Errorf("client.Get %s: %w", id, err)
	}
	return j, nil
}

func (c *Client) get(ctx context.Context, id string, wait time.Duration) (*api.Job, error) {
	path := jobPath(id)
	if wait > 0 {
		path += "?wait=" + wait.String()
	}
	var j api.Job
	if err := c.do(ctx, http.MethodGet, path, nil, nil, wait, &j); err != nil {
		return nil, err
	}
	return &j, nil
}

// Wait long-polls job id, each request waiting up to d (0 means WaitDefault,
// at most MaxWait), until the job is finished or ctx is done. It returns the
// finished record; when ctx ends first it returns the latest record it saw
// (possibly nil) and an error wrapping ctx.Err().
func (c *Client) Wait(ctx context.Context, id string, d time.Duration) (*api.Job, error) {
	if d <= 0 {
		d = WaitDefault
	}
	d = min(d, MaxWait)
	var last *api.Job
	for {
		start := time.Now()
		j, err := c.get(ctx, id, d)
		if err != nil {
			return last, fmt.Errorf("client.Wait %s: %w", id, err)
		}
		last = j
		if j.State.Terminal() {
			return j, nil
		}
		// A server that answered early (it restarted, or ignores wait)
		// must not make this a busy loop.
		if time.Since(start) < minPollInterval {
			if err := sleepCtx(ctx, minPollInterval); err != nil {
				return last, fmt.Errorf("client.Wait %s: %w", id, err)
			}
		}
	}
}

const minPollInterval = 200 * time.Millisecond

// Cancel asks the API to cancel job id and returns its record: canceled if
// it was queued, still running (with CancelRequested) if a worker is
// stopping it. A finished job is a *Problem with Status 409.
func (c *Client) Cancel(ctx context.Context, id string) (*api.Job, error) {
	var j api.Job
	if err := c.do(ctx, http.MethodPost, jobPath(id)+"/cancel", nil, nil, 0, &j); err != nil {
		return nil, fmt.Errorf("client.Cancel %s: %w", id, err)
	}
	return &j, nil
}

// Pipeline describes one registered job type, as GET /v1/pipelines lists it.
type Pipeline struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Stages      []PipelineStage `json:"stages"`
	Input       PipelineInput   `json:"input"`
	// Timeout is the default per-attempt timeout, a Go duration ("1h0m0s").
	Timeout    string `json:"timeout"`
	MaxRetries int    `json:"max_retries"`
}

// PipelineStage is one stage of a Pipeline.
type PipelineStage struct {
	Name   string  `json:"name"`
	Weight float64 `json:"weight"`
	// Timeout is the stage's own timeout, nil when only the job's applies.
	Timeout *string `json:"timeout"`
}

// PipelineInput describes a pipeline's input: its fields and the input used
// when none is given.
type PipelineInput struct {
	Fields   []api.Field     `json:"fields"`
	Defaults json.RawMessage `json:"defaults"`
}

// Pipelines returns the registered job types, sorted by name.
func (c *Client) Pipelines(ctx context.Context) ([]Pipeline, error) {
	var out struct {
		Pipelines []Pipeline `json:"pipelines"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/pipelines", nil, nil, 0, &out); err != nil {
		return nil, fmt.Errorf("client.Pipelines: %w", err)
	}
	return out.Pipelines, nil
}

func jobPath(id string) string { return "/v1/jobs/" + url.PathEscape(id) }

// do sends one request and decodes a 2xx answer's JSON body into out, or
// returns the *Problem of any other status.
func (c *Client) do(ctx context.Context, method, path string, hdr http.Header, body []byte, wait time.Duration, out any) error {
	if c.reqTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.reqTimeout+wait)
		defer cancel()
	}
	resp, err := c.send(ctx, method, path, hdr, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return readProblem(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding %d answer: %w", resp.StatusCode, err)
	}
	return nil
}

func (c *Client) send(ctx context.Context, method, path string, hdr http.Header, body []byte) (*http.Response, error) {
	if c.baseErr != nil {
		return nil, c.baseErr
	}
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json, application/problem+json")
	}
	req.Header.Set("User-Agent", "staged-go-client")
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	return c.hc.Do(req)
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
