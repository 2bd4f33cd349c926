package sandbox

import (
	"errors"
	"fmt"
)

// Sentinel errors. The server maps them to HTTP statuses; nothing else should.
var (
	// ErrInvalidRequest marks a request the caller must fix (a *FieldError says which field).
	ErrInvalidRequest = errors.New("invalid request")
	// ErrUnsupportedLanguage is returned for a language the engine cannot run.
	ErrUnsupportedLanguage = errors.New("unsupported language")
	// ErrBusy is returned when every job slot and queue place is taken.
	ErrBusy = errors.New("all job slots are busy")
	// ErrClosed is returned once the engine is shutting down.
	ErrClosed = errors.New("engine is shutting down")
	// ErrJobNotFound is returned by Kill for an id that names no running job.
	ErrJobNotFound = errors.New("no such running job")
)

// FieldError names the request field that is wrong and why. It wraps ErrInvalidRequest.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Message) }

// Unwrap makes errors.Is(err, ErrInvalidRequest) true for every field error.
func (e *FieldError) Unwrap() error { return ErrInvalidRequest }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}
