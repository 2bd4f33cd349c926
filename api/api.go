// Package api holds the wire types of sandboxd's own HTTP API (/v1): what clients send
// and what the daemon answers. The server and sandboxctl both use them; it imports
// nothing of the engine, so a client pulls in neither cgo nor libcontainer.
package api

import "encoding/json"

// ExecuteRequest is the body of POST /v1/execute.
type ExecuteRequest struct {
	// Language names a runtime (GET /v1/runtimes) by name or alias; default "python".
	Language string `json:"language,omitempty"`
	// Version selects the runtime's version: "", "*", or a prefix such as "3.11".
	Version string `json:"version,omitempty"`
	// Code is the main file's content (named as the runtime's main file); Files follow
	// it. Without Code, the first of Files is the main file. One of them is required.
	Code  *string           `json:"code,omitempty"`
	Files []File            `json:"files,omitempty"`
	Stdin string            `json:"stdin,omitempty"`
	Args  []string          `json:"args,omitempty"`
	Env   map[string]string `json:"env,omitempty"`
	// Collect are globs, relative to /work, of files to return after the run.
	Collect []string `json:"collect,omitempty"`
	Tests   []Test   `json:"tests,omitempty"`
	// Compare is how test outputs are compared: "trim" (default: trailing whitespace
	// of each line and at the end ignored) or "exact".
	Compare string `json:"compare,omitempty"`
	// OutputEncoding "base64" returns stdout and stderr base64-encoded; "utf8" (the
	// default) returns them as text, with invalid UTF-8 replaced and flagged (*_lossy).
	OutputEncoding string  `json:"output_encoding,omitempty"`
	Limits         *Limits `json:"limits,omitempty"`
}

// File is one file written into /work before the job starts.
type File struct {
	Name     string `json:"name"`
	Content  string `json:"content"`
	Encoding string `json:"encoding,omitempty"` // "utf8" (default) or "base64"
}

// Test is one test case of a job.
type Test struct {
	Stdin          string   `json:"stdin,omitempty"`
	Args           []string `json:"args,omitempty"`
	ExpectedOutput *string  `json:"expected_output,omitempty"`
}

// Limits are a job's limits. Each is a JSON number or a string with a unit ("512MB",
// "1.5s"), kept raw so the server can name the field it cannot parse.
type Limits struct {
	CPUs           json.RawMessage `json:"cpus,omitempty"`
	CPUTime        json.RawMessage `json:"cpu_time,omitempty"`
	Memory         json.RawMessage `json:"memory,omitempty"`
	Storage        json.RawMessage `json:"storage,omitempty"`
	Pids           json.RawMessage `json:"pids,omitempty"`
	Timeout        json.RawMessage `json:"timeout,omitempty"`
	OpenFiles      json.RawMessage `json:"open_files,omitempty"`
	FileSize       json.RawMessage `json:"file_size,omitempty"`
	Stack          json.RawMessage `json:"stack,omitempty"`
	IOReadBPS      json.RawMessage `json:"io_read_bps,omitempty"`
	IOWriteBPS     json.RawMessage `json:"io_write_bps,omitempty"`
	IOReadIOPS     json.RawMessage `json:"io_read_iops,omitempty"`
	IOWriteIOPS    json.RawMessage `json:"io_write_iops,omitempty"`
	IOWeight       json.RawMessage `json:"io_weight,omitempty"`
	GPUs           json.RawMessage `json:"gpus,omitempty"`
	GPUWait        json.RawMessage `json:"gpu_wait,omitempty"`
	CompileTimeout json.RawMessage `json:"compile_timeout,omitempty"`
	CompileCPUTime json.RawMessage `json:"compile_cpu_time,omitempty"`
	CompileMemory  json.RawMessage `json:"compile_memory,omitempty"`
}

// Result is the answer of POST /v1/execute. Its outcome fields (exit_code, stdout,
// ...) are the run step's; a job with test cases has them per test in Tests.
type Result struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Runtime string `json:"runtime,omitempty"`
	Version string `json:"version,omitempty"`
	Warm    bool   `json:"warm"`
	Outcome
	// OutputEncoding is "base64" when every stdout and stderr of the answer is.
	OutputEncoding string          `json:"output_encoding,omitempty"`
	Compile        *Stage          `json:"compile,omitempty"`
	Tests          []TestResult    `json:"tests,omitempty"`
	TestsPassed    *int            `json:"tests_passed,omitempty"`
	Files          []CollectedFile `json:"files,omitempty"`
	Limits         LimitsView      `json:"limits"`
	CompileLimits  *LimitsView     `json:"compile_limits,omitempty"`
	GPUs           []string        `json:"gpus,omitempty"`
	Error          string          `json:"error,omitempty"`
}

// Outcome is how one process of a job ended and what it used.
type Outcome struct {
	ExitCode        int     `json:"exit_code"`
	Signal          string  `json:"signal,omitempty"`
	Stdout          string  `json:"stdout"`
	Stderr          string  `json:"stderr"`
	StdoutTruncated bool    `json:"stdout_truncated"`
	StderrTruncated bool    `json:"stderr_truncated"`
	StdoutLossy     bool    `json:"stdout_lossy,omitempty"` // invalid UTF-8 was replaced by U+FFFD
	StderrLossy     bool    `json:"stderr_lossy,omitempty"`
	WallMS          float64 `json:"wall_ms"`
	CPUMS           float64 `json:"cpu_ms"`
	CPUUserMS       float64 `json:"cpu_user_ms"`
	CPUSystemMS     float64 `json:"cpu_system_ms"`
	MemoryPeak      int64   `json:"memory_peak_bytes"`
	OOMKilled       bool    `json:"oom_killed"`
	PidsPeak        int64   `json:"pids_peak,omitempty"`
	PidsLimitHit    bool    `json:"pids_limit_hit"`
	IOReadBytes     int64   `json:"io_read_bytes"`
	IOWriteBytes    int64   `json:"io_write_bytes"`
}

// Stage is the compile step's outcome.
type Stage struct {
	Status string `json:"status"`
	Outcome
}

// TestResult is one test case's outcome; Verdict is "passed", "wrong_answer", or the
// run's status when it did not end with exit 0.
type TestResult struct {
	Verdict string `json:"verdict"`
	Status  string `json:"status"`
	Warm    bool   `json:"warm"`
	Outcome
}

// CollectedFile is a file the job left that a collect glob matched.
type CollectedFile struct {
	Name      string `json:"name"`
	Size      int64  `json:"size"`
	Content   string `json:"content,omitempty"`  // base64
	Encoding  string `json:"encoding,omitempty"` // "base64" when Content is set
	Truncated bool   `json:"truncated,omitempty"`
	Skipped   string `json:"skipped,omitempty"` // why it is listed without content
}

// LimitsView is how answers report limits, in bytes and milliseconds.
type LimitsView struct {
	CPUs        float64 `json:"cpus"`
	Memory      int64   `json:"memory_bytes"`
	Storage     int64   `json:"storage_bytes"`
	Pids        int64   `json:"pids"`
	TimeoutMS   int64   `json:"timeout_ms"`
	CPUTimeMS   int64   `json:"cpu_time_ms"`
	OpenFiles   int64   `json:"open_files"`
	FileSize    int64   `json:"file_size_bytes"`
	Stack       int64   `json:"stack_bytes"`
	IOReadBPS   int64   `json:"io_read_bps,omitempty"`
	IOWriteBPS  int64   `json:"io_write_bps,omitempty"`
	IOReadIOPS  int64   `json:"io_read_iops,omitempty"`
	IOWriteIOPS int64   `json:"io_write_iops,omitempty"`
	IOWeight    int64   `json:"io_weight,omitempty"`
}

// Runtime is one entry of GET /v1/runtimes.
type Runtime struct {
	Name          string      `json:"name"`
	Version       string      `json:"version"`
	Aliases       []string    `json:"aliases"`
	Compiled      bool        `json:"compiled"`
	Warm          bool        `json:"warm"` // its jobs can start on a pooled container
	Limits        LimitsView  `json:"limits"`
	MaxLimits     LimitsView  `json:"max_limits"`
	CompileLimits *LimitsView `json:"compile_limits,omitempty"`
}

// Runtimes is the answer of GET /v1/runtimes.
type Runtimes struct {
	Runtimes []Runtime `json:"runtimes"`
}

// Error is every error's body: a message safe to show, and the request field at
// fault when there is one ("limits.memory", "files[2].name").
type Error struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}
