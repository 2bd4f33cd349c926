// Package gpu discovers NVIDIA GPUs through NVML, leases them to jobs
// exclusively and turns a lease into libcontainer devices, cgroup rules,
// mounts and environment, the way nvidia-container-toolkit does.
//
// NVML comes in as an nvml.Interface, so everything here is tested with
// go-nvml's mocks; every host path (/dev, /proc, the driver root, the ld
// cache) is an Option.
package gpu

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/opencontainers/cgroups/devices/config"
)

// Device is a GPU, or a MIG instance of one, as NVML reported it at start.
type Device struct {
	UUID        string // "GPU-…", or "MIG-…" for a MIG instance
	Index       int    // NVML index (the parent's for a MIG instance); not stable across reboots, not CUDA's
	Name        string
	MemoryBytes uint64
	Minor       int // the node is /dev/nvidia<Minor>; a MIG instance uses its parent's

	// MIG instances of a GPU in MIG mode. Such a GPU is leased only through them.
	MIG []Device

	// Set on MIG instances only.
	ParentUUID        string
	GPUInstanceID     int
	ComputeInstanceID int
}

// IsMIG reports whether d is a MIG instance.
func (d Device) IsMIG() bool { return d.ParentUUID != "" }

// Usage is live NVML information about one device.
type Usage struct {
	UUID            string
	Utilization     *Utilization // nil where NVML does not report it (e.g. MIG)
	MemoryUsedBytes uint64
	Processes       []Process // host PIDs
}

// Utilization is the percentage of time the GPU and its memory were busy
// over NVML's last sample period.
type Utilization struct {
	GPU, Memory uint32
}

// Process is a compute process running on a device.
type Process struct {
	PID             uint32
	UsedMemoryBytes uint64
}

// Manager holds what discovery found and the host paths needed to hand
// devices to a job.
type Manager struct {
	opts options

	devices       []Device
	driverVersion string
	initErr       error // why there are no GPUs, if NVML failed

	mu      sync.Mutex
	lib     nvml.Interface // nil unless Init succeeded and Close has not run
	handles map[string]nvml.Device
}

type options struct {
	devRoot      string
	procRoot     string
	driverRoot   string
	ldCache      func() (io.Reader, error)
	deviceLookup func(path, permissions string) (*config.Device, error)
	mountCommand string
	log          *slog.Logger
}

// Option changes a host path or hook of a Manager.
type Option func(*options)

// WithDevRoot sets where the host's device nodes are (default /dev). Only
// for tests and unusual hosts: in a user namespace runc bind-mounts a node
// from its container path, so that must also be its host path.
func WithDevRoot(dir string) Option { return func(o *options) { o.devRoot = dir } }

// WithProcRoot sets where the host's procfs is (default /proc).
func WithProcRoot(dir string) Option { return func(o *options) { o.procRoot = dir } }

// WithDriverRoot sets the root the driver is installed under (default /),
// e.g. /run/nvidia/driver for a containerised driver. Library paths from the
// ld cache are resolved inside it.
func WithDriverRoot(dir string) Option { return func(o *options) { o.driverRoot = dir } }

// WithLdCache replaces how the host ld cache is read; f returns text in the
// format of `ldconfig -p`. The default runs /sbin/ldconfig -p on the
// driver root's /etc/ld.so.cache.
func WithLdCache(f func() (io.Reader, error)) Option { return func(o *options) { o.ldCache = f } }

// WithDeviceLookup replaces how a host device node is stat-ed. f has the
// signature of github.com/moby/sys/devices.DeviceFromPath and must return an
// error satisfying errors.Is(err, fs.ErrNotExist) for an absent node.
func WithDeviceLookup(f func(path, permissions string) (*config.Device, error)) Option {
	return func(o *options) { o.deviceLookup = f }
}

// WithMountCommand sets the host mount(8) used to put the job's copy of
// /proc/driver/nvidia/params in place (default /bin/mount); "" leaves the
// host's params visible. See Grant.Apply for why it takes a hook.
func WithMountCommand(path string) Option { return func(o *options) { o.mountCommand = path } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// New initialises NVML through lib and discovers the GPUs. It never fails:
// with a nil lib, or when Init fails (no driver: ERROR_LIBRARY_NOT_FOUND),
// the Manager has zero GPUs, Err says why, and lib is never called again,
// because any NVML call after a failed Init kills the process.
func New(lib nvml.Interface, opts ...Option) *Manager {
	m := &Manager{opts: options{
		devRoot:      "/dev",
		procRoot:     "/proc",
		driverRoot:   "/",
		mountCommand: "/bin/mount",
		log:          slog.Default(),
	}}
	for _, opt := range opts {
		opt(&m.opts)
	}
	if m.opts.ldCache == nil {
		m.opts.ldCache = m.runLdconfig
	}
	if m.opts.deviceLookup == nil {
		m.opts.deviceLookup = deviceFromPath
	}
	if lib == nil {
		m.initErr = fmt.Errorf("%w: no NVML library", ErrNoGPUs)
		return m
	}
	if ret := lib.Init(); ret != nvml.SUCCESS {
		m.initErr = fmt.Errorf("%w: NVML init: %w", ErrNoGPUs, ret)
		m.opts.log.Info("no GPUs: NVML unavailable", "error", ret.Error())
		return m
	}
	m.lib = lib
	m.handles = make(map[string]nvml.Device)
	if err := m.discover(); err != nil {
		m.initErr = err
		m.opts.log.Warn("GPU discovery failed", "error", err)
	}
	return m
}

func (m *Manager) discover() error {
	v, ret := m.lib.SystemGetDriverVersion()
	if ret != nvml.SUCCESS {
		return fmt.Errorf("%w: driver version: %w", ErrNoGPUs, ret)
	}
	m.driverVersion = v
	n, ret := m.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return fmt.Errorf("%w: device count: %w", ErrNoGPUs, ret)
	}
	for i := range n {
		h, ret := m.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			m.opts.log.Warn("skipping GPU", "index", i, "error", ret.Error())
			continue
		}
		d, err := m.describe(h, i)
		if err != nil {
			// A broken GPU (e.g. ERROR_GPU_IS_LOST) must not hide the others.
			m.opts.log.Warn("skipping GPU", "index", i, "error", err)
			continue
		}
		m.devices = append(m.devices, d)
	}
	return nil
}

// describe reads one GPU and, when it is in MIG mode, its MIG instances.
func (m *Manager) describe(h nvml.Device, index int) (Device, error) {
	d, err := basics(h)
	if err != nil {
		return Device{}, err
	}
	d.Index = index
	minor, ret := h.GetMinorNumber()
	if ret != nvml.SUCCESS {
		return Device{}, fmt.Errorf("minor number of %s: %w", d.UUID, ret)
	}
	d.Minor = minor
	m.handles[d.UUID] = h

	mode, _, ret := h.GetMigMode()
	if ret == nvml.ERROR_NOT_SUPPORTED || (ret == nvml.SUCCESS && mode != nvml.DEVICE_MIG_ENABLE) {
		return d, nil
	}
	if ret != nvml.SUCCESS {
		return Device{}, fmt.Errorf("MIG mode of %s: %w", d.UUID, ret)
	}
	count, ret := h.GetMaxMigDeviceCount()
	if ret != nvml.SUCCESS {
		return Device{}, fmt.Errorf("MIG device count of %s: %w", d.UUID, ret)
	}
	for j := range count {
		mh, ret := h.GetMigDeviceHandleByIndex(j)
		if ret == nvml.ERROR_NOT_FOUND || ret == nvml.ERROR_INVALID_ARGUMENT {
			continue // an empty slot
		}
		if ret != nvml.SUCCESS {
			return Device{}, fmt.Errorf("MIG device %d of %s: %w", j, d.UUID, ret)
		}
		mig, err := basics(mh)
		if err != nil {
			return Device{}, err
		}
		if mig.GPUInstanceID, ret = mh.GetGpuInstanceId(); ret != nvml.SUCCESS {
			return Device{}, fmt.Errorf("GPU instance of %s: %w", mig.UUID, ret)
		}
		if mig.ComputeInstanceID, ret = mh.GetComputeInstanceId(); ret != nvml.SUCCESS {
			return Device{}, fmt.Errorf("compute instance of %s: %w", mig.UUID, ret)
		}
		mig.Index, mig.Minor, mig.ParentUUID = index, minor, d.UUID
		m.handles[mig.UUID] = mh
		d.MIG = append(d.MIG, mig)
	}
	return d, nil
}

// basics reads what GPUs and MIG instances have in common.
func basics(h nvml.Device) (Device, error) {
	uuid, ret := h.GetUUID()
	if ret != nvml.SUCCESS {
		return Device{}, fmt.Errorf("UUID: %w", ret)
	}
	name, ret := h.GetName()
	if ret != nvml.SUCCESS {
		return Device{}, fmt.Errorf("name of %s: %w", uuid, ret)
	}
	mem, ret := h.GetMemoryInfo()
	if ret != nvml.SUCCESS {
		return Device{}, fmt.Errorf("memory of %s: %w", uuid, ret)
	}
	return Device{UUID: uuid, Name: name, MemoryBytes: mem.Total}, nil
}

// Err says why the Manager has no GPUs: nil when NVML initialised and
// discovery ran. It satisfies errors.Is(err, ErrNoGPUs) and carries the
// nvml.Return (e.g. nvml.ERROR_LIBRARY_NOT_FOUND).
func (m *Manager) Err() error { return m.initErr }

// DriverVersion is the host driver's version, "" without one.
func (m *Manager) DriverVersion() string { return m.driverVersion }

// Devices returns the GPUs found at start, in NVML index order.
func (m *Manager) Devices() []Device {
	out := make([]Device, len(m.devices))
	for i, d := range m.devices {
		d.MIG = append([]Device(nil), d.MIG...)
		out[i] = d
	}
	return out
}

// Snapshot asks NVML for the current utilisation, memory use and processes
// of every GPU and MIG instance. Fields NVML cannot report stay empty.
func (m *Manager) Snapshot() []Usage {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lib == nil {
		return nil
	}
	var out []Usage
	for _, d := range m.devices {
		out = append(out, usage(d.UUID, m.handles[d.UUID]))
		for _, mig := range d.MIG {
			out = append(out, usage(mig.UUID, m.handles[mig.UUID]))
		}
	}
	return out
}

func usage(uuid string, h nvml.Device) Usage {
	u := Usage{UUID: uuid}
	if r, ret := h.GetUtilizationRates(); ret == nvml.SUCCESS {
		u.Utilization = &Utilization{GPU: r.Gpu, Memory: r.Memory}
	}
	if mem, ret := h.GetMemoryInfo(); ret == nvml.SUCCESS {
		u.MemoryUsedBytes = mem.Used
	}
	if ps, ret := h.GetComputeRunningProcesses(); ret == nvml.SUCCESS {
		for _, p := range ps {
			u.Processes = append(u.Processes, Process{PID: p.Pid, UsedMemoryBytes: p.UsedGpuMemory})
		}
	}
	return u
}

// Close shuts NVML down if, and only if, Init succeeded. Devices stays
// valid; Snapshot returns nil afterwards.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lib == nil {
		return nil
	}
	lib := m.lib
	m.lib = nil
	if ret := lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("NVML shutdown: %w", ret)
	}
	return nil
}

// runLdconfig is the default ld cache reader.
func (m *Manager) runLdconfig() (io.Reader, error) {
	cache := filepath.Join(m.opts.driverRoot, "etc/ld.so.cache")
	out, err := exec.Command("/sbin/ldconfig", "-p", "-C", cache).Output()
	if err != nil {
		return nil, fmt.Errorf("ldconfig -p -C %s: %w", cache, err)
	}
	return bytes.NewReader(out), nil
}
