package gpu

import (
	"errors"
	"reflect"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
)

func TestDiscoverDGX(t *testing.T) {
	srv := dgx(t)
	m := New(srv, quiet)
	if err := m.Err(); err != nil {
		t.Fatalf("Err() = %v", err)
	}
	if got := m.DriverVersion(); got != "550.54.15" {
		t.Errorf("DriverVersion() = %q", got)
	}
	devs := m.Devices()
	if len(devs) != 8 {
		t.Fatalf("found %d GPUs, want 8", len(devs))
	}
	for i, d := range devs {
		want := uuidsOf(srv)[i]
		if d.UUID != want || d.Index != i || d.Minor != 7-i || d.Name != "Mock NVIDIA A100-SXM4-40GB" ||
			d.MemoryBytes != 40*1024<<20 || d.IsMIG() || len(d.MIG) != 0 {
			t.Errorf("device %d = %+v", i, d)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.ShutdownCalls()); n != 1 {
		t.Errorf("Shutdown called %d times, want 1", n)
	}
	if err := m.Close(); err != nil || len(srv.ShutdownCalls()) != 1 {
		t.Errorf("second Close: %v, %d Shutdown calls", err, len(srv.ShutdownCalls()))
	}
}

func TestDiscoverMIG(t *testing.T) {
	srv := dgx(t)
	migs := withMIG(t, srv, 7, 2)
	devs := New(srv, quiet).Devices()
	parent := devs[7]
	if len(parent.MIG) != 2 {
		t.Fatalf("GPU 7 has %d MIG instances, want 2", len(parent.MIG))
	}
	for ci, mig := range parent.MIG {
		want := Device{
			UUID: migs[ci], Index: 7, Name: "NVIDIA A100-SXM4-40GB MIG 1g.5gb", MemoryBytes: 5 << 30, Minor: 0,
			ParentUUID: parent.UUID, GPUInstanceID: 1, ComputeInstanceID: ci,
		}
		if !reflect.DeepEqual(mig, want) || !mig.IsMIG() {
			t.Errorf("MIG %d = %+v, want %+v", ci, mig, want)
		}
	}
	if len(devs[0].MIG) != 0 {
		t.Errorf("GPU 0 has MIG instances: %+v", devs[0].MIG)
	}
}

// Without a driver, Init fails and nothing else may be called: the mock
// panics on any function but Init.
func TestNoDriver(t *testing.T) {
	lib := failingInit()
	m := New(lib, quiet)
	if err := m.Err(); !errors.Is(err, ErrNoGPUs) || !errors.Is(err, nvml.ERROR_LIBRARY_NOT_FOUND) {
		t.Errorf("Err() = %v, want ErrNoGPUs and ERROR_LIBRARY_NOT_FOUND", err)
	}
	if d := m.Devices(); len(d) != 0 {
		t.Errorf("Devices() = %v", d)
	}
	if s := m.Snapshot(); s != nil {
		t.Errorf("Snapshot() = %v", s)
	}
	if _, err := NewAllocator(m).Acquire(t.Context(), "job", Request{Count: 1}); !errors.Is(err, ErrNoGPUs) {
		t.Errorf("Acquire: %v, want ErrNoGPUs", err)
	}
	if err := m.Close(); err != nil {
		t.Error(err)
	}
	if n := len(lib.InitCalls()); n != 1 {
		t.Errorf("Init called %d times", n)
	}
}

func TestNilLibrary(t *testing.T) {
	m := New(nil, quiet)
	if !errors.Is(m.Err(), ErrNoGPUs) || len(m.Devices()) != 0 || m.Close() != nil {
		t.Errorf("New(nil): err %v, devices %v", m.Err(), m.Devices())
	}
}

// The real go-nvml: on a host without the driver this proves that no call
// after the failed Init reaches the missing library (it would kill the test).
func TestRealNVMLWithoutDriver(t *testing.T) {
	m := New(nvml.New(), quiet)
	defer m.Close()
	if m.Err() == nil {
		t.Skipf("an NVIDIA driver is present (%d GPUs); this test is for hosts without one", len(m.Devices()))
	}
	if len(m.Devices()) != 0 || m.Snapshot() != nil {
		t.Errorf("no driver, yet devices %v", m.Devices())
	}
}

func TestDiscoverSkipsBrokenGPU(t *testing.T) {
	srv := dgx(t)
	srv.Devices[3] = &mock.Device{GetUUIDFunc: func() (string, nvml.Return) { return "", nvml.ERROR_GPU_IS_LOST }}
	m := New(srv, quiet)
	if m.Err() != nil {
		t.Fatal(m.Err())
	}
	devs := m.Devices()
	if len(devs) != 7 {
		t.Fatalf("found %d GPUs, want 7", len(devs))
	}
	if devs[3].Index != 4 {
		t.Errorf("after the lost GPU 3 comes index %d, want 4", devs[3].Index)
	}
}

func TestDiscoverCountFails(t *testing.T) {
	srv := dgx(t)
	srv.DeviceGetCountFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_UNKNOWN }
	m := New(srv, quiet)
	if !errors.Is(m.Err(), ErrNoGPUs) || !errors.Is(m.Err(), nvml.ERROR_UNKNOWN) || len(m.Devices()) != 0 {
		t.Errorf("Err() = %v, devices %v", m.Err(), m.Devices())
	}
	m.Close()
	if len(srv.ShutdownCalls()) != 1 {
		t.Error("Init succeeded, so Close must call Shutdown")
	}
}

func TestSnapshot(t *testing.T) {
	srv := dgx(t)
	migs := withMIG(t, srv, 7, 1)
	m := New(srv, quiet)
	snap := m.Snapshot()
	if len(snap) != 9 {
		t.Fatalf("Snapshot has %d entries, want 8 GPUs + 1 MIG", len(snap))
	}
	if u := snap[2]; u.UUID != uuidsOf(srv)[2] || u.Utilization == nil || u.Utilization.GPU != 20 || u.Utilization.Memory != 2 {
		t.Errorf("GPU 2: %+v", u)
	}
	if p := snap[1].Processes; len(p) != 1 || p[0].PID != 4242 || p[0].UsedMemoryBytes != 1<<30 {
		t.Errorf("GPU 1 processes: %+v", p)
	}
	if u := snap[8]; u.UUID != migs[0] || u.Utilization != nil || u.MemoryUsedBytes != 1<<20 {
		t.Errorf("MIG: %+v (NVML does not report its utilisation)", u)
	}
	m.Close()
	if s := m.Snapshot(); s != nil {
		t.Errorf("Snapshot after Close = %v", s)
	}
}

func TestDevicesIsACopy(t *testing.T) {
	srv := dgx(t)
	withMIG(t, srv, 0, 1)
	m := New(srv, quiet)
	d := m.Devices()
	d[0].MIG[0].UUID = "changed"
	d[1].UUID = "changed"
	if again := m.Devices(); again[0].MIG[0].UUID == "changed" || again[1].UUID == "changed" {
		t.Error("Devices() shares memory with the Manager")
	}
}
