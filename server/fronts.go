package server

import (
	"context"
	"errors"
	"net/http"

	"github.com/sandboxd/sandboxd/gpu"
	"github.com/sandboxd/sandboxd/jobs"
	"github.com/sandboxd/sandboxd/sandbox"
)

// RunError is how the fronts outside this package (fronts/piston, fronts/judge0) learn
// what a Runner's refusal means on the wire: the HTTP status, the request field at fault
// ("" when none) and a message safe to show. Each front then writes it in its own error
// shape. It mirrors runJob's mapping; unknown errors are 500 "internal error".
func RunError(err error) (status int, field, message string) {
	var fe *sandbox.FieldError
	switch {
	case errors.As(err, &fe):
		return http.StatusBadRequest, fe.Field, fe.Message
	case errors.Is(err, sandbox.ErrUnsupportedLanguage):
		return http.StatusBadRequest, "language", err.Error()
	case errors.Is(err, gpu.ErrInvalidRequest), errors.Is(err, gpu.ErrUnknownDevice), errors.Is(err, gpu.ErrNoGPUs):
		return http.StatusBadRequest, "gpus", err.Error()
	case errors.Is(err, sandbox.ErrBusy):
		return http.StatusTooManyRequests, "", "all job slots and queue places are taken; retry shortly"
	case errors.Is(err, sandbox.ErrClosed), errors.Is(err, jobs.ErrClosed):
		return http.StatusServiceUnavailable, "", "the daemon is not taking new jobs (draining or shutting down); retry shortly"
	case errors.Is(err, jobs.ErrUnavailable):
		return http.StatusServiceUnavailable, "", "the shared job queue is unreachable; retry shortly"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "", "request ended while waiting for a job slot"
	}
	return http.StatusInternalServerError, "", "internal error"
}
