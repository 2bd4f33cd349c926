package sandbox

import (
	"cmp"
	"errors"
	"fmt"
	"strconv"
	"strings"
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

// ForRuntime is the policy for rt's run step: its defaults where it sets them, its
// maximums where they are lower than the daemon's.
func (p Policy) ForRuntime(rt *Runtime) Policy {
	out := p
	out.Default = overlay(p.Default, rt.Limits)
	for _, f := range limitFields(&out.Max, &rt.MaxLimits) {
		if f.src != 0 && (f.dst == 0 || f.src < f.dst) {
			f.set(f.src)
		}
	}
	return out
}

// compileLimits resolves a compile step's limits: the run's, with the compile
// defaults (the engine's, then the runtime's) and the request's timeout, CPU time and
// memory, each within the daemon's maximums.
func (p Policy) compileLimits(rt *Runtime, run, req Limits) (Limits, error) {
	def := overlay(overlay(run, DefaultCompileLimits), rt.CompileLimits)
	// The daemon's maximums bound the compile defaults too, so a generous default
	// never fails a request on a daemon configured with lower maximums.
	def.Timeout, def.CPUTime = min(def.Timeout, p.Max.Timeout), min(def.CPUTime, p.Max.CPUTime)
	def.Memory, def.Pids = min(def.Memory, p.Max.Memory), min(def.Pids, p.Max.Pids)
	c := Policy{Default: def, Max: p.Max}
	out, err := c.Resolve(Limits{Timeout: req.Timeout, CPUTime: req.CPUTime, Memory: req.Memory})
	if err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			fe.Field = strings.Replace(fe.Field, "limits.", "limits.compile_", 1)
		}
		return Limits{}, err
	}
	return out, nil
}

// overlay is base with the non-zero fields of top.
func overlay(base, top Limits) Limits {
	out := base
	for _, f := range limitFields(&out, &top) {
		if f.src != 0 {
			f.set(f.src)
		}
	}
	return out
}

// limitField is one field of two Limits, as a float64 (all are numbers).
type limitField struct {
	dst, src float64
	set      func(float64)
}

func limitFields(dst, src *Limits) []limitField {
	i64 := func(d, s *int64) limitField {
		return limitField{float64(*d), float64(*s), func(v float64) { *d = int64(v) }}
	}
	dur := func(d, s *time.Duration) limitField {
		return limitField{float64(*d), float64(*s), func(v float64) { *d = time.Duration(v) }}
	}
	return []limitField{
		{dst.CPUs, src.CPUs, func(v float64) { dst.CPUs = v }},
		dur(&dst.CPUTime, &src.CPUTime), i64(&dst.Memory, &src.Memory), i64(&dst.Storage, &src.Storage),
		i64(&dst.Pids, &src.Pids), dur(&dst.Timeout, &src.Timeout), i64(&dst.OpenFiles, &src.OpenFiles),
		i64(&dst.FileSize, &src.FileSize), i64(&dst.Stack, &src.Stack), i64(&dst.IOReadBPS, &src.IOReadBPS),
		i64(&dst.IOWriteBPS, &src.IOWriteBPS), i64(&dst.IOReadIOPS, &src.IOReadIOPS),
		i64(&dst.IOWriteIOPS, &src.IOWriteIOPS), i64(&dst.IOWeight, &src.IOWeight),
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
