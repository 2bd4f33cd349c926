package api

import (
	"encoding/json"
	"time"
)

// SessionRequest is the body of POST /v1/sessions (all optional).
type SessionRequest struct {
	// Limits bound the whole session: memory, pids, storage, cpus, and cpu_time summed
	// over its life; timeout is each cell's.
	Limits *Limits `json:"limits,omitempty"`
	// TTL is how long the session may sit idle (seconds, or "90s"); Lifetime how long it
	// may live at all.
	TTL      json.RawMessage `json:"ttl,omitempty"`
	Lifetime json.RawMessage `json:"lifetime,omitempty"`
}

// Session describes a session (POST and GET /v1/sessions[/{id}], DELETE's answer).
type Session struct {
	ID string `json:"id"`
	// Status is "idle" or "busy" while alive; once ended, why: "deleted",
	// "idle_expired", "lifetime_expired", "memory_limit", "cpu_limit", "kernel_died",
	// "cell_timeout" (a cell did not stop when interrupted), "shutdown".
	Status         string    `json:"status"`
	Detail         string    `json:"detail,omitempty"`
	Created        time.Time `json:"created"`
	LastUsed       time.Time `json:"last_used"`
	Expires        time.Time `json:"expires"`
	ExecutionCount int       `json:"execution_count"`
	TTL            float64   `json:"ttl"`      // seconds
	Lifetime       float64   `json:"lifetime"` // seconds
	CellTimeout    float64   `json:"cell_timeout"`
	Memory         int64     `json:"memory_limit"`
	CPUMS          float64   `json:"cpu_ms"`
	MemoryBytes    int64     `json:"memory_bytes"`
	MemoryPeak     int64     `json:"memory_peak_bytes"`
	Warm           bool      `json:"warm"`
}

// SessionList is GET /v1/sessions.
type SessionList struct {
	Sessions []Session `json:"sessions"`
}

// CellRequest is the body of POST /v1/sessions/{id}/execute.
type CellRequest struct {
	Code *string `json:"code"`
}

// CellResult is what a cell did.
type CellResult struct {
	ExecutionCount  int          `json:"execution_count"`
	Status          string       `json:"status"` // the kernel's: "ok", "error", "aborted"; "" if it never replied
	Stdout          string       `json:"stdout"`
	Stderr          string       `json:"stderr"`
	StdoutTruncated bool         `json:"stdout_truncated,omitempty"`
	StderrTruncated bool         `json:"stderr_truncated,omitempty"`
	Results         []RichResult `json:"results"`
	ResultsDropped  bool         `json:"results_dropped,omitempty"`
	Error           *CellError   `json:"error,omitempty"`
	TimedOut        bool         `json:"timed_out,omitempty"` // interrupted at the cell timeout
	WallMS          float64      `json:"wall_ms"`
	CPUMS           float64      `json:"cpu_ms"`
	MemoryPeak      int64        `json:"memory_peak_bytes"`
	SessionCPUMS    float64      `json:"session_cpu_ms"`
	// SessionEnded is set when this cell ended the session, with why (see Session.Status).
	SessionEnded     string `json:"session_ended,omitempty"`
	SessionEndDetail string `json:"session_end_detail,omitempty"`
}

// RichResult is a mime bundle: "text/plain", "text/html", "image/png" (base64), ...
type RichResult struct {
	Data     map[string]json.RawMessage `json:"data"`
	Metadata json.RawMessage            `json:"metadata,omitempty"`
	IsMain   bool                       `json:"is_main_result"` // the cell's value, not a display
}

// CellError is an exception a cell raised.
type CellError struct {
	Name      string   `json:"name"`
	Value     string   `json:"value"`
	Traceback []string `json:"traceback"`
}

// CellEvent is one line of a streamed execute (Accept: application/x-ndjson): "stdout"
// and "stderr" (Text), "result" (Result), "error" (Error), and last "done" (Done).
type CellEvent struct {
	Type   string      `json:"type"`
	Text   string      `json:"text,omitempty"`
	Result *RichResult `json:"result,omitempty"`
	Error  *CellError  `json:"error,omitempty"`
	Done   *CellResult `json:"done,omitempty"`
}

// SessionFile is one entry of GET /v1/sessions/{id}/files.
type SessionFile struct {
	Name string `json:"name"`
	Type string `json:"type"` // "file", "dir", "symlink", "other"
	Size int64  `json:"size"`
}

// SessionFiles lists a session's /work.
type SessionFiles struct {
	Files     []SessionFile `json:"files"`
	Truncated bool          `json:"truncated,omitempty"`
}
