package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/staged-dev/staged/api"
	"github.com/staged-dev/staged/tasks"
)

// problem is an RFC 9457 problem details object, the body of every error
// response.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	// Field names the offending request or input field, when there is one.
	Field string `json:"field,omitempty"`
}

// retryAfterUnavailable is the Retry-After of a 503, in seconds.
const retryAfterUnavailable = "1"

// problemTypeBase prefixes every problem type; the suffix is the slug of the
// status (statusSlugs).
const problemTypeBase = "https://staged.dev/problems/"

// contentTypeProblem is the media type of error responses.
const contentTypeProblem = "application/problem+json"

// codeStatus maps the domain's error codes to HTTP statuses.
var codeStatus = map[string]int{
	tasks.EINVALID:       http.StatusBadRequest,
	tasks.EUNPROCESSABLE: http.StatusUnprocessableEntity,
	tasks.ENOTFOUND:      http.StatusNotFound,
	tasks.ECONFLICT:      http.StatusConflict,
	tasks.ETOOLARGE:      http.StatusRequestEntityTooLarge,
	tasks.EUNAUTHORIZED:  http.StatusUnauthorized,
	tasks.EFORBIDDEN:     http.StatusForbidden,
	tasks.ERATELIMITED:   http.StatusTooManyRequests,
	tasks.EUNAVAILABLE:   http.StatusServiceUnavailable,
	tasks.EINTERNAL:      http.StatusInternalServerError,
}

// statusSlugs names the problem type of each status staged answers with.
var statusSlugs = map[int]string{
	http.StatusBadRequest:            "invalid-request",
	http.StatusUnauthorized:          "unauthorized",
	http.StatusForbidden:             "forbidden",
	http.StatusNotFound:              "not-found",
	http.StatusMethodNotAllowed:      "method-not-allowed",
	http.StatusConflict:              "conflict",
	http.StatusRequestEntityTooLarge: "too-large",
	http.StatusUnsupportedMediaType:  "unsupported-media-type",
	http.StatusUnprocessableEntity:   "unprocessable",
	http.StatusTooManyRequests:       "rate-limited",
	http.StatusInternalServerError:   "internal",
	http.StatusServiceUnavailable:    "unavailable",
}

// newProblem returns the problem of status with detail.
func newProblem(status int, detail, field string) problem {
	typ := "about:blank"
	if slug, ok := statusSlugs[status]; ok {
		typ = problemTypeBase + slug
	}
	return problem{Type: typ, Title: http.StatusText(status), Status: status, Detail: detail, Field: field}
}

// problemFor maps any error a handler returns to the problem the client
// sees. It is the one place where errors become HTTP statuses. internal is
// true when the detail was hidden and the error must be logged.
func problemFor(err error, r *http.Request) (p problem, internal bool) {
	var (
		te *tasks.Error
		he *echo.HTTPError
		me *http.MaxBytesError
	)
	switch {
	case errors.As(err, &te):
		status, ok := codeStatus[te.Code]
		if !ok || status == http.StatusInternalServerError {
			return newProblem(http.StatusInternalServerError, "internal error", ""), true
		}
		return newProblem(status, te.Message, te.Field), false
	case errors.As(err, &me):
		return newProblem(http.StatusRequestEntityTooLarge,
			fmt.Sprintf("request body is larger than the limit of %d bytes", me.Limit), ""), false
	case errors.As(err, &he):
		return echoProblem(he, r)
	default:
		return newProblem(http.StatusInternalServerError, "internal error", ""), true
	}
}

// echoProblem maps Echo's own errors (no route, wrong method, ...) and the
// echo.HTTPErrors handlers return.
func echoProblem(he *echo.HTTPError, r *http.Request) (problem, bool) {
	if he.Code >= http.StatusInternalServerError && he.Code != http.StatusServiceUnavailable {
		return newProblem(http.StatusInternalServerError, "internal error", ""), true
	}
	detail, _ := he.Message.(string)
	switch {
	case he == echo.ErrNotFound:
		detail = fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)
	case he == echo.ErrMethodNotAllowed:
		detail = fmt.Sprintf("method %s is not allowed on %s", r.Method, r.URL.Path)
	case detail == "":
		detail = http.StatusText(he.Code)
	}
	return newProblem(he.Code, detail, ""), false
}

// handleError is Echo's HTTPErrorHandler: it writes err as a problem, and
// logs errors whose detail the client does not see.
func (s *Server) handleError(err error, c echo.Context) {
	req := c.Request()
	p, internal := problemFor(err, req)
	rid := c.Response().Header().Get(echo.HeaderXRequestID)
	switch {
	case internal:
		s.log.LogAttrs(req.Context(), slog.LevelError, "request failed",
			slog.String("method", req.Method), slog.String("path", req.URL.Path),
			slog.String("request_id", rid), slog.Any("err", err))
	case p.Status == http.StatusServiceUnavailable:
		s.log.LogAttrs(req.Context(), slog.LevelWarn, "request unavailable",
			slog.String("method", req.Method), slog.String("path", req.URL.Path),
			slog.String("request_id", rid), slog.Any("err", err))
	}
	if c.Response().Committed {
		return
	}
	if p.Status == http.StatusServiceUnavailable && c.Response().Header().Get(echo.HeaderRetryAfter) == "" {
		// Unavailability is brief (Redis restarting, failing over): say
		// when to retry, so clients do instead of giving up.
		c.Response().Header().Set(echo.HeaderRetryAfter, retryAfterUnavailable)
	}
	if req.Method == http.MethodHead {
		c.Response().Header().Set(echo.HeaderContentType, contentTypeProblem)
		c.Response().WriteHeader(p.Status)
		return
	}
	b, _ := api.Marshal(p)
	if werr := c.Blob(p.Status, contentTypeProblem, b); werr != nil {
		s.log.Debug("writing problem", "err", werr)
	}
}

// notFound is the error for a job that is unknown, expired, another
// tenant's, or whose id is malformed (then Redis is not asked).
func notFound(id string) error {
	if !api.ValidID(id) {
		return tasks.Errorf(tasks.ENOTFOUND, "no job with id %q: job ids are UUIDs", id)
	}
	return tasks.Errorf(tasks.ENOTFOUND, "no job with id %s (unknown, expired, or not yours)", id)
}

// invalid returns an EINVALID error naming field.
func invalid(field, format string, args ...any) *tasks.Error {
	return &tasks.Error{Code: tasks.EINVALID, Field: field, Message: fmt.Sprintf(format, args...)}
}
