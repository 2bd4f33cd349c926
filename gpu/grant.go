package gpu

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	// Registers the cgroup v1 and v2 device controllers; without it the
	// device rules Apply adds are not enforced.
	_ "github.com/opencontainers/cgroups/devices"
)

// Where the driver files appear inside a job. A tmpfs is mounted on
// containerDriverDir first so that runc creates the mountpoints of the
// library binds in it rather than in the job's (read-only) image; the
// tmpfs is remounted read-only with the rest before the job starts.
const (
	ContainerLibDir    = "/usr/local/nvidia/lib64"
	ContainerBinDir    = "/usr/local/nvidia/bin"
	containerDriverDir = "/usr/local/nvidia"
)

// controlNodes are the nodes every GPU job needs; absent ones are skipped.
var controlNodes = []string{"nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset"}

// driverLibs are the user-space driver libraries a job gets, each as
// <name>.so.<driver version>; CUDA cannot work without the required ones.
var driverLibs = map[string]bool{
	"libcuda":                  true,
	"libnvidia-ml":             true,
	"libnvidia-ptxjitcompiler": false,
	"libnvidia-nvvm":           false,
	"libnvidia-gpucomp":        false,
	"libnvidia-allocator":      false,
	"libnvidia-cfg":            false,
	"libcudadebugger":          false,
	"libnvidia-opencl":         false,
}

// Where nvidia-smi is looked for under the driver root.
var smiDirs = []string{"usr/bin", "usr/sbin", "bin", "sbin", "usr/local/bin"}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Grant is what a lease gives a job: device nodes (and so their cgroup
// rules), read-only driver files and environment.
type Grant struct {
	Devices []*config.Device // nodes with Allow set; Path is the container's /dev path
	Mounts  []*configs.Mount // a tmpfs on /usr/local/nvidia, then read-only binds into it
	Env     []string         // NVIDIA_VISIBLE_DEVICES and CUDA_VISIBLE_DEVICES; see Environ

	params       []byte // the job's /proc/driver/nvidia/params; nil for none
	mountCommand string
}

// Grant looks up on the host what the lease's devices need inside a job.
// It changes nothing; Apply puts the result into a container config.
func (l *Lease) Grant() (*Grant, error) {
	m := l.a.m
	nodes, err := m.deviceNodes(l.Devices)
	if err != nil {
		return nil, fmt.Errorf("GPU device nodes: %w", err)
	}
	mounts, err := m.driverMounts()
	if err != nil {
		return nil, fmt.Errorf("GPU driver files: %w", err)
	}
	params, err := m.params()
	if err != nil {
		return nil, err
	}
	cuda := make([]string, len(l.Devices))
	for i := range cuda {
		cuda[i] = strconv.Itoa(i)
	}
	return &Grant{
		Devices: nodes,
		Mounts:  mounts,
		Env: []string{
			"NVIDIA_VISIBLE_DEVICES=" + strings.Join(l.UUIDs(), ","),
			"CUDA_VISIBLE_DEVICES=" + strings.Join(cuda, ","),
		},
		params:       params,
		mountCommand: m.opts.mountCommand,
	}, nil
}

// deviceNodes returns the control nodes that exist, then each device's
// /dev/nvidia<minor> and, for MIG instances, their capability nodes.
func (m *Manager) deviceNodes(devs []Device) ([]*config.Device, error) {
	var out []*config.Device
	for _, name := range controlNodes {
		n, err := m.node(name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}

	var names []string
	var caps map[string]int
	for _, d := range devs {
		names = append(names, fmt.Sprintf("nvidia%d", d.Minor))
		if !d.IsMIG() {
			continue
		}
		if caps == nil {
			var err error
			if caps, err = m.migMinors(); err != nil {
				return nil, err
			}
		}
		gi := fmt.Sprintf("gpu%d/gi%d/access", d.Minor, d.GPUInstanceID)
		ci := fmt.Sprintf("gpu%d/gi%d/ci%d/access", d.Minor, d.GPUInstanceID, d.ComputeInstanceID)
		for _, c := range []string{gi, ci} {
			minor, ok := caps[c]
			if !ok {
				return nil, fmt.Errorf("no MIG capability %s for %s", c, d.UUID)
			}
			names = append(names, fmt.Sprintf("nvidia-caps/nvidia-cap%d", minor))
		}
	}
	seen := make(map[string]bool)
	for _, name := range names {
		if seen[name] { // MIG instances share their parent's node, CIs their GI's cap
			continue
		}
		seen[name] = true
		n, err := m.node(name)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// node stats the host's dev root/name and returns it as the job's /dev/name.
func (m *Manager) node(name string) (*config.Device, error) {
	d, err := m.opts.deviceLookup(filepath.Join(m.opts.devRoot, name), "rwm")
	if err != nil {
		return nil, err
	}
	d.Path = path.Join("/dev", name)
	d.Allow = true
	return d, nil
}

func (m *Manager) migMinors() (map[string]int, error) {
	f, err := os.Open(filepath.Join(m.opts.procRoot, "driver/nvidia-caps/mig-minors"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMigMinors(f)
}

// driverMounts finds the driver libraries of the running driver's version
// in the ld cache, and nvidia-smi, and binds each read-only into the job:
// a library under both its file name and its soname, which is what the
// soname symlink would give, without writing into the job's rootfs.
func (m *Manager) driverMounts() ([]*configs.Mount, error) {
	if m.driverVersion == "" {
		return nil, errors.New("driver version unknown")
	}
	r, err := m.opts.ldCache()
	if err != nil {
		return nil, err
	}
	entries, err := parseLdCache(r)
	if err != nil {
		return nil, err
	}
	mounts := []*configs.Mount{{
		Source:      "tmpfs",
		Destination: containerDriverDir,
		Device:      "tmpfs",
		Flags:       unix.MS_NOSUID | unix.MS_NODEV | unix.MS_RDONLY,
		Data:        "mode=755,size=1m",
	}}
	seen := make(map[string]bool)
	found := make(map[string]bool)
	for _, e := range entries {
		lib, _, ok := strings.Cut(e.Name, ".so.") // the unversioned libfoo.so is a dev link: skip it
		if _, known := driverLibs[lib]; !ok || !known || !nativeArch(e.Flags) {
			continue
		}
		host, err := securejoin.SecureJoin(m.opts.driverRoot, e.Path)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", e.Path, err)
		}
		file := filepath.Base(host)
		if file != lib+".so."+m.driverVersion { // left over from another driver
			continue
		}
		if _, err := os.Stat(host); err != nil {
			continue // a stale cache entry
		}
		found[lib] = true
		for _, name := range []string{file, e.Name} {
			dst := path.Join(ContainerLibDir, name)
			if !seen[dst] {
				seen[dst] = true
				mounts = append(mounts, roBind(host, dst))
			}
		}
	}
	for lib, required := range driverLibs {
		if required && !found[lib] {
			return nil, fmt.Errorf("%s.so.%s is not in the ld cache", lib, m.driverVersion)
		}
	}
	for _, dir := range smiDirs {
		smi, err := securejoin.SecureJoin(m.opts.driverRoot, path.Join(dir, "nvidia-smi"))
		if err != nil {
			continue
		}
		if fi, err := os.Stat(smi); err == nil && fi.Mode().IsRegular() {
			mounts = append(mounts, roBind(smi, path.Join(ContainerBinDir, "nvidia-smi")))
			break
		}
	}
	return mounts, nil
}

func roBind(src, dst string) *configs.Mount {
	return &configs.Mount{
		Source:      src,
		Destination: dst,
		Device:      "bind",
		Flags:       unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV,
	}
}

// params returns the job's copy of the host's driver params, or nil when
// the host has none (no driver loaded) or the override is switched off.
func (m *Manager) params() ([]byte, error) {
	if m.opts.mountCommand == "" {
		return nil, nil
	}
	f, err := os.Open(filepath.Join(m.opts.procRoot, "driver/nvidia/params"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return jobParams(f)
}

// Apply adds the grant to cfg: each node to cfg.Devices and its allow rule
// to cfg.Cgroups.Resources.Devices (on top of the caller's default-deny
// rules), and the driver mounts to cfg.Mounts. cfg.Rootfs must be set.
//
// The job's /proc/driver/nvidia/params is written to jobDir and put in
// place by a CreateContainer hook running the host's mount(8): runc refuses
// configured mounts inside /proc (checkProcMount in rootfs_linux.go), but
// the hook runs in the job's mount namespace after /proc is mounted and
// before pivot_root, as nvidia-container-toolkit's hook does. The hook runs
// as the container's root, so with a user namespace its mapped host uid
// must be able to reach jobDir (0711 parents do); jobDir should be a
// per-job host directory the job does not see, removed when the job ends.
func (g *Grant) Apply(cfg *configs.Config, jobDir string) error {
	if cfg.Cgroups == nil || cfg.Cgroups.Resources == nil || cfg.Cgroups.SkipDevices {
		return errors.New("GPU grant needs cgroup device rules, and the config has none")
	}
	if g.params != nil {
		if cfg.Rootfs == "" {
			return errors.New("GPU grant: config has no rootfs")
		}
		src := filepath.Join(jobDir, "nvidia-params")
		if err := os.WriteFile(src, g.params, 0o644); err != nil {
			return fmt.Errorf("GPU driver params: %w", err)
		}
		timeout := 10 * time.Second
		hook := configs.NewCommandHook(&configs.Command{
			Path:    g.mountCommand,
			Args:    []string{"mount", "--bind", "-o", "ro,nosuid,nodev,noexec", src, filepath.Join(cfg.Rootfs, "proc/driver/nvidia/params")},
			Timeout: &timeout,
		})
		if cfg.Hooks == nil {
			cfg.Hooks = configs.Hooks{}
		}
		cfg.Hooks[configs.CreateContainer] = append(cfg.Hooks[configs.CreateContainer], hook)
	}
	for _, d := range g.Devices {
		rule := d.Rule
		cfg.Devices = append(cfg.Devices, d)
		cfg.Cgroups.Resources.Devices = append(cfg.Cgroups.Resources.Devices, &rule)
	}
	cfg.Mounts = append(cfg.Mounts, g.Mounts...)
	return nil
}

// Environ returns base with the grant's variables set (replacing any the
// job brought) and the driver directories put first on PATH and
// LD_LIBRARY_PATH.
func (g *Grant) Environ(base []string) []string {
	out := make([]string, 0, len(base)+len(g.Env)+2)
	binPath, libPath := defaultPath, ""
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH":
			binPath = v
		case "LD_LIBRARY_PATH":
			libPath = v
		case "NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES":
		default:
			out = append(out, kv)
		}
	}
	out = append(out, "PATH="+prependDir(ContainerBinDir, binPath), "LD_LIBRARY_PATH="+prependDir(ContainerLibDir, libPath))
	return append(out, g.Env...)
}

func prependDir(dir, list string) string {
	if list == "" {
		return dir
	}
	return dir + ":" + list
}
