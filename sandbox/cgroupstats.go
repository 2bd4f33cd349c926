package sandbox

import (
	"bufio"
	"errors"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fscommon"
)

// A job's figures, read from its cgroup just after it ends and before the cgroup is
// removed. Only the files that hold them are read (libcontainer's Stats reads every
// controller's, about a millisecond per job), with the same library libcontainer uses,
// from the paths libcontainer recorded (controller -> dir; "" is the unified hierarchy).
// Each function has a v1 and a v2 branch and nothing else knows the difference.

// figures is what a result reports of a job's cgroup.
type figures struct {
	cpu, user, system time.Duration
	memoryPeak        uint64
	oomKills          uint64
	pidsPeak          uint64 // 0 where the kernel keeps no pids.peak
	pidsLimitHits     uint64
	ioRead, ioWrite   uint64
}

func readFigures(mode CgroupMode, paths map[string]string) (figures, error) {
	var f figures
	var err error
	if f.cpu, f.user, f.system, err = cpuTimes(mode, paths); err != nil {
		return f, err
	}
	if mode == CgroupV2 {
		dir := paths[""]
		if f.memoryPeak, err = absentZero(fscommon.GetCgroupParamUint(dir, "memory.peak")); err != nil {
			return f, err
		}
		if f.oomKills, err = fscommon.GetValueByKey(dir, "memory.events", "oom_kill"); err != nil {
			return f, err
		}
		if f.ioRead, f.ioWrite, err = ioStatV2(dir); err != nil {
			return f, err
		}
	} else {
		mem := paths["memory"]
		if f.memoryPeak, err = fscommon.GetCgroupParamUint(mem, "memory.max_usage_in_bytes"); err != nil {
			return f, err
		}
		if f.oomKills, err = fscommon.GetValueByKey(mem, "memory.oom_control", "oom_kill"); err != nil {
			return f, err
		}
		if dir, ok := paths["blkio"]; ok {
			if f.ioRead, f.ioWrite, err = ioStatV1(dir); err != nil {
				return f, err
			}
		}
	}
	f.pidsPeak, f.pidsLimitHits, err = pidsFigures(mode, paths)
	return f, err
}

// cpuTimes is the CPU time the job's cgroup has used: in all, in user and in system mode.
func cpuTimes(mode CgroupMode, paths map[string]string) (total, user, system time.Duration, err error) {
	if mode == CgroupV2 {
		usec, err := keyed(paths[""], "cpu.stat")
		if err != nil {
			return 0, 0, 0, err
		}
		us := func(k string) time.Duration { return time.Duration(usec[k]) * time.Microsecond }
		return us("usage_usec"), us("user_usec"), us("system_usec"), nil
	}
	var ns [3]uint64
	for i, file := range []string{"cpuacct.usage", "cpuacct.usage_user", "cpuacct.usage_sys"} {
		if ns[i], err = fscommon.GetCgroupParamUint(paths["cpuacct"], file); err != nil {
			return 0, 0, 0, err
		}
	}
	return time.Duration(ns[0]), time.Duration(ns[1]), time.Duration(ns[2]), nil
}

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
	if peak, err = absentZero(fscommon.GetCgroupParamUint(dir, "pids.peak")); err != nil {
		return 0, 0, err
	}
	limitHits, err = fscommon.GetValueByKey(dir, "pids.events", "max")
	return peak, limitHits, err
}

// ioStatV1 sums blkio.throttle.io_service_bytes_recursive's "<dev> Read|Write N" lines.
func ioStatV1(dir string) (read, write uint64, err error) {
	s, err := cgroups.ReadFile(dir, "blkio.throttle.io_service_bytes_recursive")
	if err != nil {
		return 0, 0, err
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			continue
		}
		n, _ := strconv.ParseUint(f[2], 10, 64)
		switch f[1] {
		case "Read":
			read += n
		case "Write":
			write += n
		}
	}
	return read, write, nil
}

// ioStatV2 sums io.stat's "<dev> rbytes=N wbytes=N ..." lines.
func ioStatV2(dir string) (read, write uint64, err error) {
	s, err := optionalString(cgroups.ReadFile(dir, "io.stat"))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(s, "\n") {
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseUint(v, 10, 64)
			switch k {
			case "rbytes":
				read += n
			case "wbytes":
				write += n
			}
		}
	}
	return read, write, nil
}

// keyed reads a flat keyed file ("key value" lines).
func keyed(dir, file string) (map[string]uint64, error) {
	s, err := cgroups.ReadFile(dir, file)
	if err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, " "); ok {
			out[k], _ = strconv.ParseUint(v, 10, 64)
		}
	}
	return out, nil
}

// absentZero turns "the kernel has no such file" into zero.
func absentZero(v uint64, err error) (uint64, error) {
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	return v, err
}

func optionalString(s string, err error) (string, error) {
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return s, err
}
