package judge0

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/sandboxd/sandboxd/jobs"
	"github.com/sandboxd/sandboxd/sandbox"
)

// CallbackKind is the kind under which the daemon registers Callback with the job
// manager (jobs.Options.Callbacks).
const CallbackKind = "judge0"

// Callback is Judge0's callback request for a finished job: a PUT of the submission,
// base64 encoded, with the default fields (IsolateJob#call_callback).
func Callback(rec jobs.Record) (jobs.CallbackRequest, error) {
	r := fromJobs(rec)
	s, err := fromMeta(r)
	if err != nil {
		return jobs.CallbackRequest{}, err
	}
	body, err := s.callbackBody(r)
	return jobs.CallbackRequest{Method: http.MethodPut, ContentType: "application/json", Body: body}, err
}

// JobsStore is the Store over the daemon's async job manager: tokens survive a
// restart, and callbacks are delivered (and retried) by the manager.
type JobsStore struct{ Manager *jobs.Manager }

// Submit implements Store. The callback is the manager's, of kind CallbackKind; the
// SubmitOptions' method and body are this front's own and not needed here.
func (s JobsStore) Submit(ctx context.Context, req sandbox.Request, opts SubmitOptions) (Record, error) {
	o := jobs.SubmitOptions{Meta: opts.Meta, CallbackURL: opts.CallbackURL}
	if o.CallbackURL != "" {
		o.CallbackKind = CallbackKind
	}
	rec, _, err := s.Manager.Submit(ctx, req, o)
	if err != nil {
		return Record{}, jobsError(err)
	}
	return fromJobs(rec), nil
}

// Get implements Store.
func (s JobsStore) Get(id string) (Record, error) {
	rec, err := s.Manager.Get(id)
	if err != nil {
		return Record{}, jobsError(err)
	}
	return fromJobs(rec), nil
}

// Wait implements Store.
func (s JobsStore) Wait(ctx context.Context, id string, max time.Duration) (Record, error) {
	rec, err := s.Manager.Wait(ctx, id, max)
	if err != nil {
		return Record{}, jobsError(err)
	}
	return fromJobs(rec), nil
}

func fromJobs(rec jobs.Record) Record {
	r := Record{ID: rec.ID, Result: rec.Result, Meta: rec.Meta, Created: rec.Submitted, Started: rec.Started, Finished: rec.Finished}
	switch rec.State {
	case jobs.StateQueued:
		r.State = StateQueued
	case jobs.StateRunning:
		r.State = StateRunning
	case jobs.StateDone:
		r.State = StateDone
	default: // lost: the daemon stopped before the job finished
		r.State, r.Err = StateFailed, fmt.Errorf("the job was lost: %s", rec.LostReason)
	}
	return r
}

func jobsError(err error) error {
	for _, p := range [][2]error{{jobs.ErrNotFound, ErrNotFound}, {jobs.ErrQueueFull, ErrQueueFull}, {jobs.ErrBadCallback, ErrBadCallback}} {
		if errors.Is(err, p[0]) {
			return kindError{kind: p[1], err: err}
		}
	}
	return err
}

// kindError is the manager's error, reading as it does, that is also this package's
// sentinel for errors.Is.
type kindError struct{ kind, err error }

func (e kindError) Error() string   { return e.err.Error() }
func (e kindError) Unwrap() []error { return []error{e.kind, e.err} }
