package gpu

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
)

var quiet = WithLogger(slog.New(slog.DiscardHandler))

// dgx returns go-nvml's fake DGX A100 (8 GPUs) with the live-info calls it
// leaves unset filled in, since an unset mock function panics. Minor
// numbers run backwards (7-index), as nothing promises they match indices.
func dgx(t *testing.T) *dgxa100.Server {
	t.Helper()
	srv := dgxa100.New()
	for i, h := range srv.Devices {
		d := h.(*dgxa100.Device)
		d.Minor = 7 - i
		d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: uint32(10 * i), Memory: uint32(i)}, nvml.SUCCESS
		}
		d.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
			if i != 1 {
				return nil, nvml.SUCCESS
			}
			return []nvml.ProcessInfo{{Pid: 4242, UsedGpuMemory: 1 << 30}}, nvml.SUCCESS
		}
	}
	return srv
}

// withMIG puts the server's GPU i in MIG mode with one GPU instance (gi 1)
// split into n compute instances, and returns their UUIDs.
func withMIG(t *testing.T, srv *dgxa100.Server, i, n int) []string {
	t.Helper()
	d := srv.Devices[i].(*dgxa100.Device)
	d.SetMigMode(nvml.DEVICE_MIG_ENABLE)
	var migs []nvml.Device
	var uuids []string
	for ci := range n {
		uuid := fmt.Sprintf("MIG-%d-%d", i, ci)
		uuids = append(uuids, uuid)
		migs = append(migs, migDevice(uuid, 1, ci))
	}
	d.GetMaxMigDeviceCountFunc = func() (int, nvml.Return) { return 7, nvml.SUCCESS }
	d.GetMigDeviceHandleByIndexFunc = func(j int) (nvml.Device, nvml.Return) {
		if j >= len(migs) {
			return nil, nvml.ERROR_NOT_FOUND
		}
		return migs[j], nvml.SUCCESS
	}
	return uuids
}

func migDevice(uuid string, gi, ci int) *mock.Device {
	return &mock.Device{
		GetUUIDFunc:              func() (string, nvml.Return) { return uuid, nvml.SUCCESS },
		GetNameFunc:              func() (string, nvml.Return) { return "NVIDIA A100-SXM4-40GB MIG 1g.5gb", nvml.SUCCESS },
		GetMemoryInfoFunc:        func() (nvml.Memory, nvml.Return) { return nvml.Memory{Total: 5 << 30, Used: 1 << 20}, nvml.SUCCESS },
		GetGpuInstanceIdFunc:     func() (int, nvml.Return) { return gi, nvml.SUCCESS },
		GetComputeInstanceIdFunc: func() (int, nvml.Return) { return ci, nvml.SUCCESS },
		GetUtilizationRatesFunc: func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{}, nvml.ERROR_NOT_SUPPORTED
		},
		GetComputeRunningProcessesFunc: func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS },
	}
}

func uuidsOf(srv *dgxa100.Server) []string {
	var out []string
	for _, h := range srv.Devices {
		out = append(out, h.(*dgxa100.Device).UUID)
	}
	return out
}

// failingInit is an NVML without a driver: only Init is set, so any other
// call panics and fails the test.
func failingInit() *mock.Interface {
	return &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }}
}
