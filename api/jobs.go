package api

import (
	"encoding/json"
	"time"
)

// JobRequest is the body of POST /v1/jobs and of each job of a batch: an execute
// request, and what to do with it.
type JobRequest struct {
	ExecuteRequest
	// CallbackURL, if set, gets the job (as GET /v1/jobs/{id} shows it) POSTed when it
	// is done: http or https, loopback unless the daemon allows callbacks_off_host.
	CallbackURL string `json:"callback_url,omitempty"`
	// Retry re-runs the job if a restart of the daemon interrupts it, instead of
	// reporting it lost.
	Retry bool `json:"retry,omitempty"`
}

// Job is an async job as GET /v1/jobs/{id} shows it. State is queued, running, done or
// lost; Result is set once it is done.
type Job struct {
	ID         string       `json:"id"`
	State      string       `json:"state"`
	Submitted  time.Time    `json:"submitted"`
	Started    *time.Time   `json:"started,omitempty"`
	Finished   *time.Time   `json:"finished,omitempty"`
	Runs       int          `json:"runs"`
	Node       string       `json:"node,omitempty"` // the daemon that ran it last ([cluster] node; shared queue only)
	Retry      bool         `json:"retry,omitempty"`
	LostReason string       `json:"lost_reason,omitempty"`
	Callback   *JobCallback `json:"callback,omitempty"`
	Result     *Result      `json:"result,omitempty"`
}

// JobCallback is how a job's callback went: state pending, delivered or failed.
type JobCallback struct {
	URL       string `json:"url"`
	State     string `json:"state"`
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error,omitempty"`
}

// JobList is the answer of GET /v1/jobs: a page of jobs in submission order, without
// results; Next, when set, is the after= of the next page.
type JobList struct {
	Jobs []Job  `json:"jobs"`
	Next string `json:"next,omitempty"`
}

// Event is one line of a stream (NDJSON from POST /v1/execute with Accept:
// application/x-ndjson and GET /v1/jobs/{id}/events; a text message on /v1/ws).
//
//	{"type": "stage", "stage": "compile"|"run"|"test", "test": 0}
//	{"type": "stdout"|"stderr", "data": "...", "truncated": true}
//	{"type": "result", "state": "done", "result": {...}}
//	{"type": "error", "error": "...", "field": "..."}
type Event struct {
	Type  string `json:"type"`
	Stage string `json:"stage,omitempty"`
	Test  *int   `json:"test,omitempty"` // the test case, from 0, of a "test" stage
	Data  string `json:"data,omitempty"`
	// Encoding is "base64" when Data is (output_encoding base64); Lossy says invalid
	// UTF-8 in a text chunk was replaced by U+FFFD.
	Encoding  string  `json:"encoding,omitempty"`
	Lossy     bool    `json:"lossy,omitempty"`
	Truncated bool    `json:"truncated,omitempty"` // the stream reached its cap: nothing more of it comes
	State     string  `json:"state,omitempty"`     // with "result": the job's state (done, lost)
	Result    *Result `json:"result,omitempty"`
	Error     string  `json:"error,omitempty"`
	Field     string  `json:"field,omitempty"`
}

// WSMessage is what a /v1/ws client sends after its first message (the execute
// request): {"type": "stdin", "data": "..."}, {"type": "stdin_close"} or
// {"type": "signal", "signal": "SIGINT"}.
type WSMessage struct {
	Type   string `json:"type"`
	Data   string `json:"data,omitempty"`
	Signal string `json:"signal,omitempty"`
}

// BatchRequest is the body of POST /v1/batch.
type BatchRequest struct {
	Jobs []JobRequest `json:"jobs"`
	// Async queues the jobs and answers their ids at once, instead of their results.
	Async bool `json:"async,omitempty"`
}

// BatchResponse answers POST /v1/batch: Results (in order; each a Result, or an Error
// for a job that could not run) or, with async, Jobs (in order; id and state).
type BatchResponse struct {
	Results []json.RawMessage `json:"results,omitempty"`
	Jobs    []Job             `json:"jobs,omitempty"`
}
