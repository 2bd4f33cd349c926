package sandbox

import (
	"fmt"
	"time"

	"github.com/docker/go-units"
)

// Limits bound one job. A zero field in a request means "the default".
type Limits struct {
	CPUs    float64       // CPU bandwidth in cores, enforced as a CFS quota per period
	Memory  int64         // bytes of RAM, swap disabled; tmpfs pages count against it
	Storage int64         // bytes of the job's tmpfs (its /work and /tmp)
	Pids    int64         // processes and threads alive at once
	Timeout time.Duration // wall-clock time, enforced by the daemon
}

// Policy holds the daemon's default and maximum for each limit.
type Policy struct {
	Default Limits
	Max     Limits
}

// Floors below which a job cannot even start Python; requests under them are refused
// rather than silently raised, so what a result reports is what the job had.
var minLimits = Limits{
	CPUs:    0.01,
	Memory:  16 << 20,
	Storage: 1 << 20,
	Pids:    4,
	Timeout: 10 * time.Millisecond,
}

// DefaultPolicy is what a daemon without configuration enforces.
func DefaultPolicy() Policy {
	return Policy{
		Default: Limits{CPUs: 1, Memory: 512 << 20, Storage: 64 << 20, Pids: 64, Timeout: 10 * time.Second},
		Max:     Limits{CPUs: 4, Memory: 4 << 30, Storage: 1 << 30, Pids: 1024, Timeout: 5 * time.Minute},
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
	if out.CPUs == 0 {
		out.CPUs = p.Default.CPUs
	}
	if out.Memory == 0 {
		out.Memory = p.Default.Memory
	}
	if out.Storage == 0 {
		out.Storage = p.Default.Storage
	}
	if out.Pids == 0 {
		out.Pids = p.Default.Pids
	}
	if out.Timeout == 0 {
		out.Timeout = p.Default.Timeout
	}
	switch {
	case out.CPUs < minLimits.CPUs || out.CPUs > p.Max.CPUs:
		return Limits{}, fieldErr("limits.cpus", "%g is outside [%g, %g]", out.CPUs, minLimits.CPUs, p.Max.CPUs)
	case out.Memory < minLimits.Memory || out.Memory > p.Max.Memory:
		return Limits{}, fieldErr("limits.memory", "%s is outside [%s, %s]", size(out.Memory), size(minLimits.Memory), size(p.Max.Memory))
	case out.Storage < minLimits.Storage || out.Storage > p.Max.Storage:
		return Limits{}, fieldErr("limits.storage", "%s is outside [%s, %s]", size(out.Storage), size(minLimits.Storage), size(p.Max.Storage))
	case out.Pids < minLimits.Pids || out.Pids > p.Max.Pids:
		return Limits{}, fieldErr("limits.pids", "%d is outside [%d, %d]", out.Pids, minLimits.Pids, p.Max.Pids)
	case out.Timeout < minLimits.Timeout || out.Timeout > p.Max.Timeout:
		return Limits{}, fieldErr("limits.timeout", "%s is outside [%s, %s]", out.Timeout, minLimits.Timeout, p.Max.Timeout)
	}
	return out, nil
}

func size(b int64) string { return units.BytesSize(float64(b)) }
