package sandbox

import (
	"cmp"
	"fmt"
	"strconv"
	"time"

	"github.com/docker/go-units"
)

// Limits bound one job. A zero field in a request means "the default".
type Limits struct {
	CPUs    float64       // CPU bandwidth in cores, enforced as a CFS quota per period
	CPUTime time.Duration // CPU time summed over all the job's processes; the job is killed at it
	Memory  int64         // bytes of RAM, swap disabled; tmpfs pages count against it
	Storage int64         // bytes of the job's tmpfs (its /work and /tmp)
	Pids    int64         // processes and threads alive at once
	Timeout time.Duration // wall-clock time, enforced by the daemon

	OpenFiles int64 // RLIMIT_NOFILE
	FileSize  int64 // RLIMIT_FSIZE: bytes of one file the job writes (EFBIG beyond)
	Stack     int64 // RLIMIT_STACK: bytes

	// Block io on the device holding the daemon's state directory (the rootfs); 0 means
	// unlimited. The job's own storage is tmpfs and never touches a disk.
	IOReadBPS   int64
	IOWriteBPS  int64
	IOReadIOPS  int64
	IOWriteIOPS int64
	IOWeight    int64 // 10-1000 as blkio.weight (v1, needs BFQ); libcontainer maps it onto v2's io.weight 1-10000; 0: the host's default
}

// Policy holds the daemon's default and maximum for each limit.
type Policy struct {
	Default Limits
	Max     Limits
}

// Floors below which a job cannot even start Python; requests under them are refused
// rather than silently raised, so what a result reports is what the job had.
var minLimits = Limits{
	CPUs:      0.01,
	CPUTime:   10 * time.Millisecond,
	Memory:    16 << 20,
	Storage:   1 << 20,
	Pids:      4,
	Timeout:   10 * time.Millisecond,
	OpenFiles: 16,
	FileSize:  1 << 10,
	Stack:     256 << 10,
	IOWeight:  10,
}

// DefaultPolicy is what a daemon without configuration enforces. io is unlimited by
// default; its maximums only bound what a request may ask for (0: anything).
func DefaultPolicy() Policy {
	return Policy{
		Default: Limits{CPUs: 1, CPUTime: 10 * time.Second, Memory: 512 << 20, Storage: 64 << 20, Pids: 64,
			Timeout: 10 * time.Second, OpenFiles: 1024, FileSize: 64 << 20, Stack: 8 << 20},
		Max: Limits{CPUs: 4, CPUTime: 5 * time.Minute, Memory: 4 << 30, Storage: 1 << 30, Pids: 1024,
			Timeout: 5 * time.Minute, OpenFiles: 65536, FileSize: 1 << 30, Stack: 256 << 20, IOWeight: 1000},
	}
}

// Validate checks that defaults lie within the maximums.
func (p Policy) Validate() error {
	if _, err := p.Resolve(p.Default); err != nil {
		return fmt.Errorf("default limits exceed the maximums: %w", err)
	}
	return nil
}

// Resolve fills zero fields of req from the defaults and refuses values outside
// [minimum, maximum] with a *FieldError naming the limit ("limits.memory", ...).
func (p Policy) Resolve(req Limits) (Limits, error) {
	out := req
	d, m := p.Default, p.Max
	bytes := func(v int64) string { return units.BytesSize(float64(v)) }
	count := func(v int64) string { return strconv.FormatInt(v, 10) }
	dur := func(v time.Duration) string { return v.String() }
	cores := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	errs := []error{
		bound("limits.cpus", &out.CPUs, d.CPUs, minLimits.CPUs, m.CPUs, cores),
		bound("limits.cpu_time", &out.CPUTime, d.CPUTime, minLimits.CPUTime, m.CPUTime, dur),
		bound("limits.memory", &out.Memory, d.Memory, minLimits.Memory, m.Memory, bytes),
		bound("limits.storage", &out.Storage, d.Storage, minLimits.Storage, m.Storage, bytes),
		bound("limits.pids", &out.Pids, d.Pids, minLimits.Pids, m.Pids, count),
		bound("limits.timeout", &out.Timeout, d.Timeout, minLimits.Timeout, m.Timeout, dur),
		bound("limits.open_files", &out.OpenFiles, d.OpenFiles, minLimits.OpenFiles, m.OpenFiles, count),
		bound("limits.file_size", &out.FileSize, d.FileSize, minLimits.FileSize, m.FileSize, bytes),
		bound("limits.stack", &out.Stack, d.Stack, minLimits.Stack, m.Stack, bytes),
		optional("limits.io_read_bps", &out.IOReadBPS, d.IOReadBPS, 1, m.IOReadBPS, bytes),
		optional("limits.io_write_bps", &out.IOWriteBPS, d.IOWriteBPS, 1, m.IOWriteBPS, bytes),
		optional("limits.io_read_iops", &out.IOReadIOPS, d.IOReadIOPS, 1, m.IOReadIOPS, count),
		optional("limits.io_write_iops", &out.IOWriteIOPS, d.IOWriteIOPS, 1, m.IOWriteIOPS, count),
		optional("limits.io_weight", &out.IOWeight, d.IOWeight, minLimits.IOWeight, m.IOWeight, count),
	}
	for _, err := range errs {
		if err != nil {
			return Limits{}, err
		}
	}
	return out, nil
}

// bound defaults a zero *v and checks it against [lo, hi].
func bound[T cmp.Ordered](field string, v *T, def, lo, hi T, show func(T) string) error {
	var zero T
	if *v == zero {
		*v = def
	}
	if *v < lo || *v > hi {
		return fieldErr(field, "%s is outside [%s, %s]", show(*v), show(lo), show(hi))
	}
	return nil
}

// optional is bound for limits where zero means "none": a throttle the policy caps at hi
// (hi zero: no cap) — so a request may not lift a throttle the policy imposes.
func optional(field string, v *int64, def, lo, hi int64, show func(int64) string) error {
	if *v == 0 {
		*v = def
	}
	if *v == 0 {
		if hi != 0 && field != "limits.io_weight" {
			return fieldErr(field, "must be set, at most %s", show(hi))
		}
		return nil
	}
	if *v < lo || (hi != 0 && *v > hi) {
		return fieldErr(field, "%s is outside [%s, %s]", show(*v), show(lo), show(hi))
	}
	return nil
}
