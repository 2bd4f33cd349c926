package jobs

import "errors"

var (
	// ErrNotFound: no job has that id (never submitted, or dropped by retention).
	ErrNotFound = errors.New("no such job")
	// ErrQueueFull: the async queue holds max_queue jobs; retry later.
	ErrQueueFull = errors.New("the async job queue is full")
	// ErrClosed: the manager drains or has stopped and takes no new jobs.
	ErrClosed = errors.New("the job manager is not taking new jobs")
	// ErrBadCallback: a callback URL the manager will not call (see CheckCallbackURL).
	ErrBadCallback = errors.New("callback URL refused")
	// ErrBadRequest: a request the async path cannot hold (an interactive stdin stream,
	// an idempotency key that is too long).
	ErrBadRequest = errors.New("request refused")
)

// ErrUnavailable: the shared job queue (NATS JetStream) cannot be reached; retry later.
var ErrUnavailable = errors.New("the shared job queue is unavailable")
