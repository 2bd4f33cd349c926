package sandbox

import "time"

// Status is the outcome of a job, one meaning each. The set is part of the API: add, never rename.
type Status string

const (
	StatusOK            Status = "ok"             // exited 0
	StatusError         Status = "error"          // exited non-zero
	StatusSignaled      Status = "signaled"       // killed by a signal the daemon did not send
	StatusTimeout       Status = "timeout"        // ran past its wall-clock limit and was killed
	StatusCPULimit      Status = "cpu_limit"      // used up its CPU time (all processes summed) and was killed
	StatusMemoryLimit   Status = "memory_limit"   // the kernel's OOM killer fired in the job's cgroup
	StatusInternalError Status = "internal_error" // the daemon failed to run the job
)

// Status values added for the job core: compile steps, test cases, cancellation.
const (
	StatusCompileError   Status = "compile_error"   // the compile step failed: non-zero exit, a signal, or out of memory
	StatusCompileTimeout Status = "compile_timeout" // the compile step ran past its timeout or CPU time and was killed
	StatusWrongAnswer    Status = "wrong_answer"    // a test case's program exited 0 but its stdout was not the expected one
	StatusCancelled      Status = "cancelled"       // the client went away or cancelled the job; it was killed or never ran
)

// Verdict is a test case's outcome: passed, wrong_answer, or the run's own status
// (timeout, error, ...).
type Verdict = Status

// StatusPassed is a test case's verdict when its stdout was the expected one.
const StatusPassed Status = "passed"

// Result is everything known about a finished job. Its embedded Outcome is the run
// step's (empty for a job with test cases, whose runs are in Tests).
type Result struct {
	ID      string
	Status  Status
	Runtime string // the runtime's name and version
	Version string
	Warm    bool // ran on a container started ahead of time
	Outcome
	Compile     *StageResult // the compile step, for compiled runtimes
	Tests       []TestResult
	TestsPassed int
	Files       []CollectedFile
	Limits      LimitsView
	// CompileLimits are what the compile step ran under (compiled runtimes only).
	CompileLimits *LimitsView
	GPUs          []string // UUIDs granted, in CUDA order
	Error         string   // for internal_error: a safe message
}

// Outcome is how one process of a job (its compile step, its run, one test case)
// ended and what it used.
type Outcome struct {
	ExitCode        int    // -1 when killed by a signal
	Signal          string // e.g. "SIGKILL"
	Stdout          string // bytes, as the program wrote them (not necessarily UTF-8)
	Stderr          string
	StdoutTruncated bool
	StderrTruncated bool
	Wall            time.Duration
	WallMS          float64
	CPUMS           float64 // user + system, all processes
	CPUUserMS       float64
	CPUSystemMS     float64
	MemoryPeak      int64
	OOMKilled       bool
	PidsPeak        int64 // where the kernel keeps pids.peak
	PidsLimitHit    bool  // a fork failed at the pids limit
	IOReadBytes     int64 // block io, from the disk
	IOWriteBytes    int64
}

// StageResult is a compile step's outcome.
type StageResult struct {
	Status Status
	Outcome
}

// TestResult is one test case's outcome.
type TestResult struct {
	Verdict Verdict
	Status  Status // the run's own status (ok, error, timeout, ...)
	Warm    bool
	Outcome
}

// CollectedFile is a file the job left that a collect glob matched. Content is nil
// when the file was skipped (SkipReason says why) or is truncated to the cap.
type CollectedFile struct {
	Name       string // relative to /work
	Size       int64  // its real size
	Content    []byte
	Truncated  bool   // Content is the first bytes only: the file is over the per-file cap
	SkipReason string // "symlink", "not a regular file", "over the total cap", ...
}

// LimitsView is how a result reports the limits the job ran under.
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

// View is how results and the admin API show limits.
func (l Limits) View() LimitsView {
	return LimitsView{CPUs: l.CPUs, Memory: l.Memory, Storage: l.Storage, Pids: l.Pids, TimeoutMS: l.Timeout.Milliseconds(),
		CPUTimeMS: l.CPUTime.Milliseconds(), OpenFiles: l.OpenFiles, FileSize: l.FileSize, Stack: l.Stack,
		IOReadBPS: l.IOReadBPS, IOWriteBPS: l.IOWriteBPS, IOReadIOPS: l.IOReadIOPS, IOWriteIOPS: l.IOWriteIOPS, IOWeight: l.IOWeight}
}
