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

// Result is everything known about a finished job.
type Result struct {
	ID              string        `json:"id"`
	Status          Status        `json:"status"`
	Warm            bool          `json:"warm"`             // ran on a container started ahead of time
	ExitCode        int           `json:"exit_code"`        // -1 when killed by a signal
	Signal          string        `json:"signal,omitempty"` // e.g. "SIGKILL"
	Stdout          string        `json:"stdout"`
	Stderr          string        `json:"stderr"`
	StdoutTruncated bool          `json:"stdout_truncated"`
	StderrTruncated bool          `json:"stderr_truncated"`
	Wall            time.Duration `json:"-"`
	WallMS          float64       `json:"wall_ms"`
	CPUMS           float64       `json:"cpu_ms"` // user + system, all processes
	CPUUserMS       float64       `json:"cpu_user_ms"`
	CPUSystemMS     float64       `json:"cpu_system_ms"`
	MemoryPeak      int64         `json:"memory_peak_bytes"`
	OOMKilled       bool          `json:"oom_killed"`
	PidsPeak        int64         `json:"pids_peak,omitempty"` // where the kernel keeps pids.peak
	PidsLimitHit    bool          `json:"pids_limit_hit"`      // a fork failed at the pids limit
	IOReadBytes     int64         `json:"io_read_bytes"`       // block io, from the disk
	IOWriteBytes    int64         `json:"io_write_bytes"`
	Limits          LimitsView    `json:"limits"`
	GPUs            []string      `json:"gpus,omitempty"`  // UUIDs granted, in CUDA order
	Error           string        `json:"error,omitempty"` // for internal_error: a safe message
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
