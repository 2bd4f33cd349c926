package sandbox

import (
	"errors"
	"io/fs"
	"time"

	"github.com/opencontainers/cgroups/fscommon"
)

// The few cgroup figures libcontainer's Stats does not give, read with the same library
// (opencontainers/cgroups) from the job's cgroup paths as libcontainer recorded them
// (controller name -> dir; "" is the unified hierarchy).

// cpuUsage is the CPU time the job's cgroup has used, all processes summed. It is read
// often while a job runs (for the CPU-time limit), so it reads one file.
func cpuUsage(mode CgroupMode, paths map[string]string) (time.Duration, error) {
	if mode == CgroupV2 {
		us, err := fscommon.GetValueByKey(paths[""], "cpu.stat", "usage_usec")
		return time.Duration(us) * time.Microsecond, err
	}
	ns, err := fscommon.GetCgroupParamUint(paths["cpuacct"], "cpuacct.usage")
	return time.Duration(ns), err
}

// pidsFigures returns the most processes the job had at once (0 where the kernel keeps
// no pids.peak) and how often a fork failed at the pids limit.
func pidsFigures(mode CgroupMode, paths map[string]string) (peak, limitHits uint64, err error) {
	dir := paths["pids"]
	if mode == CgroupV2 {
		dir = paths[""]
	}
	peak, err = fscommon.GetCgroupParamUint(dir, "pids.peak")
	if errors.Is(err, fs.ErrNotExist) {
		peak, err = 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	limitHits, err = fscommon.GetValueByKey(dir, "pids.events", "max")
	return peak, limitHits, err
}
