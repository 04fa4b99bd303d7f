package tasks

import (
	"errors"
	"fmt"
)

// Error codes. The HTTP layer maps each to one status in one place.
const (
	EINVALID       = "invalid"       // malformed request: 400
	EUNPROCESSABLE = "unprocessable" // well-formed but out of range: 422
	ENOTFOUND      = "not_found"     // unknown, expired or another tenant's: 404
	ECONFLICT      = "conflict"      // state forbids it: 409
	ETOOLARGE      = "too_large"     // body or value over a limit: 413
	EUNAUTHORIZED  = "unauthorized"  // missing or wrong key: 401
	EFORBIDDEN     = "forbidden"     // key lacks the right: 403
	ERATELIMITED   = "rate_limited"  // too many requests: 429
	EUNAVAILABLE   = "unavailable"   // Redis down or timed out: 503
	EINTERNAL      = "internal"      // a bug: 500, details only in the log
)

// Error is the one domain error type. Message is safe to show to a client;
// Field names the offending input field when there is one; Err is the cause,
// for logs only.
type Error struct {
	Code    string
	Message string
	Field   string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// FieldError returns an EUNPROCESSABLE error naming the input field.
func FieldError(field, format string, args ...any) *Error {
	return &Error{Code: EUNPROCESSABLE, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for
// any other non-nil error and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	default:
		return EINTERNAL
	}
}

// ErrorMessage returns the client-safe message of err: the *Error's message,
// or "internal error" for anything else.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// permanent marks a stage error that must not be retried.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// Permanent wraps a stage error so the job fails at once, without retries:
// use it for invalid input and other errors a retry cannot fix.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// IsPermanent reports whether err was wrapped by Permanent.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}
