package sandbox

import (
	"fmt"
	"strconv"

	"github.com/opencontainers/cgroups"
	devices "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/sandbox/jobinit"
)

// Inside every job: the user it runs as, where its storage is, and the fixed hostname.
const (
	JobUID   = 1000
	JobGID   = 1000
	WorkDir  = "/work"
	Hostname = "sandbox"
	// idMapSize is how many ids the job's user namespace maps (container 0..65535).
	idMapSize = 65536
	cfsPeriod = 100_000 // µs
)

// jobEnv is the fixed environment of every job, to which its runtime's and the
// request's are added: nothing of the daemon's leaks in.
var jobEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=" + WorkDir,
	"LANG=C.UTF-8",
	"TMPDIR=/tmp",
}

// Paths runc masks or makes read-only by default (runtime-spec's defaults); libcontainer
// applies none of its own.
var (
	maskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap", "/proc/interrupts",
	}
	readonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// jobSpec is everything configFor needs to describe one container.
type jobSpec struct {
	id         string
	rootfs     string
	storageDir string // host directory holding the job's tmpfs
	initBinary string // host copy of the static binary that runs as the job's pid 1
	devDir     string // host directory that is the job's /dev
	cgroupPath string
	hostIDBase uint32
	limits     Limits
	seccomp    *configs.Seccomp
	ioDev      *blockDevice // the disk io limits apply to; nil when there is none
}

// allowedDevices are the only device nodes a job sees: null, zero, full, random,
// urandom, tty (runc's defaults without its "mknod anything" wildcard rules).
func allowedDevices() ([]*devices.Device, []*devices.Rule) {
	var devs []*devices.Device
	var rules []*devices.Rule
	for _, d := range specconv.AllowedDevices {
		if d.Path == "" {
			continue
		}
		dd := *d
		devs = append(devs, &dd)
		rules = append(rules, &dd.Rule)
	}
	return devs, rules
}

// configFor builds the libcontainer configuration of one job.
func configFor(s jobSpec) *configs.Config {
	const roFlags = unix.MS_NOEXEC | unix.MS_NOSUID | unix.MS_NODEV
	_, rules := allowedDevices()
	quota := int64(s.limits.CPUs * cfsPeriod)
	noSwap := s.limits.Memory // memory+swap == memory: no swap
	pids := s.limits.Pids
	score := 500 // the job, not the daemon, is the host OOM killer's first choice
	return &configs.Config{
		Rootfs:     s.rootfs,
		Readonlyfs: true,
		// MS_SLAVE|MS_REC: nothing mounted inside propagates to the host.
		RootPropagation: unix.MS_SLAVE | unix.MS_REC,
		Hostname:        Hostname,
		Namespaces: configs.Namespaces{
			{Type: configs.NEWNS}, {Type: configs.NEWUTS}, {Type: configs.NEWIPC},
			{Type: configs.NEWPID}, {Type: configs.NEWNET}, {Type: configs.NEWCGROUP},
			{Type: configs.NEWUSER},
		},
		UIDMappings: []configs.IDMap{{ContainerID: 0, HostID: int64(s.hostIDBase), Size: idMapSize}},
		GIDMappings: []configs.IDMap{{ContainerID: 0, HostID: int64(s.hostIDBase), Size: idMapSize}},
		// Empty sets: the job holds no capability at all, not even as container root.
		Capabilities:    &configs.Capabilities{},
		NoNewPrivileges: true,
		NoNewKeyring:    true,
		Networks:        []*configs.Network{{Type: "loopback", Address: "127.0.0.1/0", Gateway: "localhost"}},
		MaskPaths:       maskedPaths,
		ReadonlyPaths:   readonlyPaths,
		Seccomp:         s.seccomp,
		OomScoreAdj:     &score,
		Rlimits:         containerRlimits(s.limits, s.limits),
		Cgroups: &cgroups.Cgroup{
			Path: s.cgroupPath,
			Resources: &cgroups.Resources{
				Memory:     s.limits.Memory,
				MemorySwap: noSwap,
				CpuPeriod:  cfsPeriod,
				CpuQuota:   quota,
				PidsLimit:  &pids,
				Devices:    rules,
			},
		},
		Mounts: []*configs.Mount{
			{Source: "proc", Destination: "/proc", Device: "proc", Flags: roFlags},
			// A read-only /dev the daemon made once: the allowed device nodes and the usual
			// links, one bind instead of a tmpfs plus a bind per device (see hostdev.go).
			{Source: s.devDir, Destination: "/dev", Device: "bind", Flags: unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NOEXEC},
			{Source: "devpts", Destination: "/dev/pts", Device: "devpts", Flags: unix.MS_NOSUID | unix.MS_NOEXEC, Data: "newinstance,ptmxmode=0666,mode=0620"},
			{Source: "shm", Destination: "/dev/shm", Device: "tmpfs", Flags: roFlags, Data: "mode=1777,size=" + strconv.FormatInt(s.limits.Storage, 10)},
			{Source: s.initBinary, Destination: jobinit.InitPath, Device: "bind", Flags: unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV},
			// One tmpfs, made by the daemon, is the job's working directory and its /tmp.
			{Source: s.storageDir, Destination: WorkDir, Device: "bind", Flags: unix.MS_BIND | unix.MS_NOSUID | unix.MS_NODEV},
			{Source: s.storageDir, Destination: "/tmp", Device: "bind", Flags: unix.MS_BIND | unix.MS_NOSUID | unix.MS_NODEV},
		},
	}
}

// rlimits are per process; cgroups bound the job as a whole. No core dump ever reaches
// a disk. RLIMIT_CPU is only a backstop for the daemon's own CPU-time watch (which sums
// all processes and acts first), so a lone process can never run on if the daemon stalls.
func rlimits(l Limits) []configs.Rlimit { return allRlimits(l, l) }

// allRlimits is every rlimit of a job's process, soft from soft, hard from hard.
func allRlimits(soft, hard Limits) []configs.Rlimit {
	return append(containerRlimits(soft, hard), configs.Rlimit{Type: unix.RLIMIT_NOFILE, Hard: uint64(hard.OpenFiles), Soft: uint64(soft.OpenFiles)})
}

// containerRlimits are the rlimits libcontainer applies to a job's processes: soft from
// soft, hard from hard. RLIMIT_NOFILE is not among them: runc's own init, to which they
// are applied, needs more descriptors than a job's lowest limit; the job's init sets it
// (jobinit.NofileArg).
func containerRlimits(soft, hard Limits) []configs.Rlimit {
	cpu := func(l Limits) uint64 { return uint64(l.CPUTime.Seconds()) + 2 }
	return []configs.Rlimit{
		{Type: unix.RLIMIT_CORE, Hard: 0, Soft: 0},
		{Type: unix.RLIMIT_FSIZE, Hard: uint64(hard.FileSize), Soft: uint64(soft.FileSize)},
		{Type: unix.RLIMIT_STACK, Hard: uint64(hard.Stack), Soft: uint64(soft.Stack)},
		{Type: unix.RLIMIT_CPU, Hard: cpu(hard), Soft: cpu(soft)},
	}
}

// covers says whether rlimits with hard limits l can be set to those of want without
// raising a hard limit (which takes CAP_SYS_RESOURCE in the host's user namespace).
func (l Limits) covers(want Limits) bool {
	return l.OpenFiles >= want.OpenFiles && l.FileSize >= want.FileSize && l.Stack >= want.Stack &&
		uint64(l.CPUTime.Seconds()) >= uint64(want.CPUTime.Seconds())
}

// applyIO adds the io throttles and weight of l for dev.
func applyIO(r *cgroups.Resources, l Limits, dev *blockDevice) {
	if dev == nil {
		return
	}
	throttle := func(rate int64) []*cgroups.ThrottleDevice {
		if rate == 0 {
			return nil
		}
		return []*cgroups.ThrottleDevice{cgroups.NewThrottleDevice(dev.major, dev.minor, uint64(rate))}
	}
	r.BlkioThrottleReadBpsDevice = throttle(l.IOReadBPS)
	r.BlkioThrottleWriteBpsDevice = throttle(l.IOWriteBPS)
	r.BlkioThrottleReadIOPSDevice = throttle(l.IOReadIOPS)
	r.BlkioThrottleWriteIOPSDevice = throttle(l.IOWriteIOPS)
	r.BlkioWeight = uint16(l.IOWeight)
}

// tmpfsOptions are the mount options of a job's storage tmpfs, owned by the job's user.
func tmpfsOptions(l Limits, hostUID uint32) string {
	// One inode per 4 KiB of storage at least 1024: enough for real work, bounded for a bomb.
	inodes := max(l.Storage/4096, 1024)
	return fmt.Sprintf("size=%d,nr_inodes=%d,mode=0755,uid=%d,gid=%d", l.Storage, inodes, hostUID, hostUID)
}
