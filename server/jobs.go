package server

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sandboxd/sandboxd/api"
	"github.com/sandboxd/sandboxd/jobs"
	"github.com/sandboxd/sandboxd/sandbox"
)

var noDeadline time.Time

// Jobs serves the async API (/v1/jobs, /v1/batch) and the interactive one (/v1/ws)
// on a jobs.Manager, the Server's Runner and the engine's Signal.
type Jobs struct {
	Manager *jobs.Manager
	// Signal sends a signal to a running job's command (/v1/ws); nil refuses signals.
	Signal func(id string, sig syscall.Signal) error
	// MaxWait bounds ?wait= of GET /v1/jobs/{id} (default 60s).
	MaxWait time.Duration
	// MaxBatch bounds the jobs of one batch (default 100); BatchParallel how many of a
	// synchronous batch run at once (default 4: the daemon's max_jobs).
	MaxBatch      int
	BatchParallel int

	s *Server
}

// Register adds the endpoints to s.
func (j *Jobs) Register(s *Server) {
	if j.MaxWait == 0 {
		j.MaxWait = 60 * time.Second
	}
	if j.MaxBatch == 0 {
		j.MaxBatch = 100
	}
	if j.BatchParallel == 0 {
		j.BatchParallel = 4
	}
	j.s = s
	s.mux.HandleFunc("POST /v1/jobs", j.submit)
	s.mux.HandleFunc("GET /v1/jobs", j.list)
	s.mux.HandleFunc("GET /v1/jobs/{id}", j.get)
	s.mux.HandleFunc("DELETE /v1/jobs/{id}", j.cancel)
	s.mux.HandleFunc("GET /v1/jobs/{id}/events", j.events)
	s.mux.HandleFunc("POST /v1/batch", j.batch)
	s.mux.HandleFunc("GET /v1/ws", j.ws)
}

// jobMeta is what the /v1 front keeps with an async job.
type jobMeta struct {
	OutputEncoding string `json:"output_encoding,omitempty"`
}

func metaB64(raw json.RawMessage) bool {
	var m jobMeta
	return len(raw) > 0 && json.Unmarshal(raw, &m) == nil && m.OutputEncoding == "base64"
}

// JobView is a record as GET /v1/jobs/{id} shows it (and callbacks POST it).
func JobView(rec jobs.Record) api.Job {
	out := api.Job{ID: rec.ID, State: string(rec.State), Submitted: rec.Submitted, Runs: rec.Runs, Retry: rec.Retry,
		LostReason: rec.LostReason, Node: rec.Node}
	if !rec.Started.IsZero() {
		t := rec.Started
		out.Started = &t
	}
	if !rec.Finished.IsZero() {
		t := rec.Finished
		out.Finished = &t
	}
	if c := rec.Callback; c != nil {
		out.Callback = &api.JobCallback{URL: c.URL, State: c.State, Attempts: c.Attempts, LastError: c.LastError}
	}
	if rec.Result != nil {
		out.Result = ToAPI(rec.Result, metaB64(rec.Meta))
	}
	return out
}

// JobCallback is the default callback encoder: the job as GET /v1/jobs/{id} shows it,
// POSTed as JSON.
func JobCallback(rec jobs.Record) (jobs.CallbackRequest, error) {
	b, err := json.Marshal(JobView(rec))
	return jobs.CallbackRequest{Method: http.MethodPost, ContentType: "application/json", Body: b}, err
}

// jobError maps the manager's refusals (and the engine's, through it) to HTTP errors.
func (j *Jobs) jobError(err error, prefix string) error {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		if prefix != "" && ae.field != "" {
			return &apiError{status: ae.status, field: prefix + ae.field, message: prefix + ae.message}
		}
		return ae
	case errors.Is(err, jobs.ErrNotFound):
		return &apiError{status: http.StatusNotFound, message: "no such job"}
	case errors.Is(err, jobs.ErrQueueFull):
		return &apiError{status: http.StatusTooManyRequests, message: "the async job queue is full; retry shortly"}
	case errors.Is(err, jobs.ErrUnavailable):
		return &apiError{status: http.StatusServiceUnavailable, message: "the shared job queue is unreachable; retry shortly"}
	case errors.Is(err, jobs.ErrClosed):
		return &apiError{status: http.StatusServiceUnavailable, message: "the daemon is not taking new jobs (draining or shutting down); retry shortly"}
	case errors.Is(err, jobs.ErrBadCallback):
		return fieldError(prefix+"callback_url", strings.TrimPrefix(err.Error(), jobs.ErrBadCallback.Error()+": "))
	case errors.Is(err, jobs.ErrBadRequest):
		return &apiError{status: http.StatusBadRequest, message: err.Error()}
	}
	e := j.s.runError(err, prefix+"limits.gpus")
	if ae, ok := e.(*apiError); ok && prefix != "" && ae.field != "" {
		return &apiError{status: ae.status, field: prefix + ae.field, message: prefix + ae.message}
	}
	return e
}

// parseJob turns a job request into the engine's request and the manager's options.
func (j *Jobs) parseJob(body *api.JobRequest, key string) (sandbox.Request, jobs.SubmitOptions, error) {
	req, b64, err := parseExecute(&body.ExecuteRequest)
	if err != nil {
		return req, jobs.SubmitOptions{}, err
	}
	if int64(len(req.Code)) > j.s.opts.MaxCodeBytes {
		return req, jobs.SubmitOptions{}, &apiError{status: http.StatusRequestEntityTooLarge, field: "code", message: fmt.Sprintf("code: exceeds %d bytes", j.s.opts.MaxCodeBytes)}
	}
	opts := jobs.SubmitOptions{IdempotencyKey: key, CallbackURL: body.CallbackURL, Retry: body.Retry}
	if body.CallbackURL != "" {
		if err := jobs.CheckCallbackURL(body.CallbackURL, true); err != nil {
			return req, opts, fieldError("callback_url", strings.TrimPrefix(err.Error(), jobs.ErrBadCallback.Error()+": "))
		}
	}
	if b64 {
		opts.Meta, _ = json.Marshal(jobMeta{OutputEncoding: "base64"})
	}
	return req, opts, nil
}

func (j *Jobs) submit(w http.ResponseWriter, r *http.Request) {
	s := j.s
	key := r.Header.Get("Idempotency-Key")
	if len(key) > jobs.MaxIdempotencyKey {
		writeError(w, http.StatusBadRequest, "Idempotency-Key", fmt.Sprintf("Idempotency-Key: longer than %d bytes", jobs.MaxIdempotencyKey))
		return
	}
	var body api.JobRequest
	if err := s.decode(r, w, &body, true); err != nil {
		s.fail(w, err)
		return
	}
	req, opts, err := j.parseJob(&body, key)
	if err != nil {
		s.fail(w, err)
		return
	}
	rec, created, err := j.Manager.Submit(r.Context(), req, opts)
	if err != nil {
		s.fail(w, j.jobError(err, ""))
		return
	}
	status := http.StatusAccepted
	if !created {
		status = http.StatusOK
		if rec.State.Final() {
			if full, err := j.Manager.Get(rec.ID); err == nil {
				rec = full
			}
		}
	}
	w.Header().Set("Location", "/v1/jobs/"+rec.ID)
	writeJSON(w, status, JobView(rec))
}

// parseWait reads ?wait=: a duration ("30s") or seconds ("2.5"), 0 to MaxWait.
func (j *Jobs) parseWait(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil || f != f {
			return 0, fieldError("wait", fmt.Sprintf("%q is not a duration (e.g. 30s) or a number of seconds", v))
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d < 0 || d > j.MaxWait {
		return 0, fieldError("wait", fmt.Sprintf("must be between 0 and %s", j.MaxWait))
	}
	return d, nil
}

func (j *Jobs) get(w http.ResponseWriter, r *http.Request) {
	wait, err := j.parseWait(r.URL.Query().Get("wait"))
	if err != nil {
		j.s.fail(w, err)
		return
	}
	if wait > 0 {
		_ = http.NewResponseController(w).SetReadDeadline(noDeadline)
	}
	rec, err := j.Manager.Wait(r.Context(), r.PathValue("id"), wait)
	if err != nil {
		j.s.fail(w, j.jobError(err, ""))
		return
	}
	writeJSON(w, http.StatusOK, JobView(rec))
}

func (j *Jobs) cancel(w http.ResponseWriter, r *http.Request) {
	rec, err := j.Manager.Cancel(r.PathValue("id"))
	if err != nil {
		j.s.fail(w, j.jobError(err, ""))
		return
	}
	j.s.log.Info("async job cancelled", "job", rec.ID, "state", string(rec.State), "client", ClientFrom(r.Context()).String())
	writeJSON(w, http.StatusOK, JobView(rec))
}

func (j *Jobs) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := jobs.State(q.Get("state"))
	if state != "" && !state.Valid() {
		j.s.fail(w, fieldError("state", fmt.Sprintf("%q is not a state (queued, running, done, lost)", state)))
		return
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			j.s.fail(w, fieldError("limit", "must be a whole number from 1 to 1000"))
			return
		}
		limit = n
	}
	recs, next, err := j.Manager.List(state, limit, q.Get("after"))
	if err != nil {
		if errors.Is(err, jobs.ErrNotFound) {
			err = fieldError("after", "names no job kept")
		}
		j.s.fail(w, j.jobError(err, ""))
		return
	}
	out := api.JobList{Jobs: make([]api.Job, 0, len(recs)), Next: next}
	for _, rec := range recs {
		out.Jobs = append(out.Jobs, JobView(rec))
	}
	writeJSON(w, http.StatusOK, out)
}

// events streams a job's events as NDJSON while it runs, then its result line; for a
// finished job, the result line only. The client going away does not cancel the job.
func (j *Jobs) events(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	log, err := j.Manager.Events(id)
	if err != nil {
		j.s.fail(w, j.jobError(err, ""))
		return
	}
	_ = http.NewResponseController(w).SetReadDeadline(noDeadline)
	lw := newLineWriter(w)
	if log != nil {
		rec, err := j.Manager.Get(id)
		if err != nil {
			return
		}
		if err := follow(r.Context(), log, newEventEncoder(metaB64(rec.Meta)), func(ev api.Event) error { return lw.write(ev) }); err != nil {
			return
		}
	}
	rec, err := j.Manager.Wait(r.Context(), id, j.MaxWait)
	if err != nil {
		return
	}
	v := JobView(rec)
	_ = lw.write(api.Event{Type: "result", State: v.State, Result: v.Result})
}

// batch runs up to MaxBatch jobs: with async, queues them all (or none) and answers
// their ids; without, runs them within the daemon's slots and answers their results
// in order. Every job is checked before any runs.
func (j *Jobs) batch(w http.ResponseWriter, r *http.Request) {
	s := j.s
	var body api.BatchRequest
	if err := s.decode(r, w, &body, true); err != nil {
		s.fail(w, err)
		return
	}
	switch {
	case body.Jobs == nil:
		s.fail(w, fieldError("jobs", "is required: a list of jobs"))
		return
	case len(body.Jobs) == 0:
		s.fail(w, fieldError("jobs", "is empty"))
		return
	case len(body.Jobs) > j.MaxBatch:
		s.fail(w, fieldError("jobs", fmt.Sprintf("has %d jobs, more than %d", len(body.Jobs), j.MaxBatch)))
		return
	}
	reqs := make([]sandbox.Request, len(body.Jobs))
	opts := make([]jobs.SubmitOptions, len(body.Jobs))
	b64s := make([]bool, len(body.Jobs))
	for i := range body.Jobs {
		prefix := fmt.Sprintf("jobs[%d].", i)
		var err error
		if !body.Async && (body.Jobs[i].CallbackURL != "" || body.Jobs[i].Retry) {
			s.fail(w, fieldError(prefix+"callback_url", "callback_url and retry are for async batches"))
			return
		}
		reqs[i], opts[i], err = j.parseJob(&body.Jobs[i], "")
		if err == nil {
			err = j.Manager.Check(reqs[i])
		}
		if err != nil {
			s.fail(w, j.jobError(err, prefix))
			return
		}
		b64s[i] = len(opts[i].Meta) > 0
	}
	if body.Async {
		out := api.BatchResponse{Jobs: make([]api.Job, 0, len(reqs))}
		for i := range reqs {
			rec, _, err := j.Manager.Submit(r.Context(), reqs[i], opts[i])
			if err != nil {
				for _, done := range out.Jobs { // all or none
					_, _ = j.Manager.Cancel(done.ID)
				}
				s.fail(w, j.jobError(err, fmt.Sprintf("jobs[%d].", i)))
				return
			}
			out.Jobs = append(out.Jobs, JobView(rec))
		}
		writeJSON(w, http.StatusAccepted, out)
		return
	}
	_ = http.NewResponseController(w).SetReadDeadline(noDeadline)
	out := api.BatchResponse{Results: make([]json.RawMessage, len(reqs))}
	sem := make(chan struct{}, j.BatchParallel)
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			res, err := j.runWhenFree(r, reqs[i])
			var v any
			if err != nil {
				e := api.Error{Error: "internal error"}
				var ae *apiError
				if errors.As(err, &ae) {
					e = api.Error{Error: ae.message, Field: ae.field}
				}
				v = e
			} else {
				v = ToAPI(res, b64s[i])
			}
			out.Results[i], _ = json.Marshal(v)
		}()
	}
	wg.Wait()
	if r.Context().Err() != nil {
		return // the client is gone; its jobs were cancelled
	}
	writeJSON(w, http.StatusOK, out)
}

// runWhenFree runs req, waiting while every slot and queue place is taken (other
// clients' jobs) rather than failing part of a batch with 429.
func (j *Jobs) runWhenFree(r *http.Request, req sandbox.Request) (*sandbox.Result, error) {
	for backoff := 20 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		res, err := j.s.runJob(r, req, "limits.gpus")
		var ae *apiError
		if !errors.As(err, &ae) || ae.status != http.StatusTooManyRequests {
			return res, err
		}
		select {
		case <-r.Context().Done():
			return nil, err
		case <-time.After(backoff):
		}
	}
}

func newStreamID() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return "sbx-" + hex.EncodeToString(b)
}
