package server

import (
	"net/http"

	"github.com/sandboxd/sandboxd/gpu"
)

// gpuView is one leasable device in GET /v1/gpus.
type gpuView struct {
	UUID            string   `json:"uuid"`
	Index           int      `json:"index"`
	Name            string   `json:"name"`
	MemoryBytes     uint64   `json:"memory_bytes"`
	Minor           int      `json:"minor"`
	Parent          string   `json:"parent,omitempty"` // MIG instances: the GPU's UUID
	LeasedBy        string   `json:"leased_by"`        // job id, "" when free
	UtilizationPct  *uint32  `json:"utilization_pct,omitempty"`
	MemoryUsedBytes uint64   `json:"memory_used_bytes"`
	ProcessPIDs     []uint32 `json:"process_pids,omitempty"` // host pids
}

// GPUSource is what GET /v1/gpus reads: leases and live usage. nil means no GPUs.
type GPUSource interface {
	List() []gpu.Status
	Snapshot() []gpu.Usage
}

// gpuList builds GET /v1/gpus' answer.
func gpuList(src GPUSource) []gpuView {
	out := []gpuView{}
	if src == nil {
		return out
	}
	usage := map[string]gpu.Usage{}
	for _, u := range src.Snapshot() {
		usage[u.UUID] = u
	}
	for _, st := range src.List() {
		v := gpuView{UUID: st.UUID, Index: st.Index, Name: st.Name, MemoryBytes: st.MemoryBytes,
			Minor: st.Minor, Parent: st.ParentUUID, LeasedBy: st.LeasedBy}
		if u, ok := usage[st.UUID]; ok {
			if u.Utilization != nil {
				pct := u.Utilization.GPU
				v.UtilizationPct = &pct
			}
			v.MemoryUsedBytes = u.MemoryUsedBytes
			for _, p := range u.Processes {
				v.ProcessPIDs = append(v.ProcessPIDs, p.PID)
			}
		}
		out = append(out, v)
	}
	return out
}

func (s *Server) gpus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"gpus": gpuList(s.opts.GPUs)})
}

// gpuInfo joins an allocator's leases with its manager's live usage.
type gpuInfo struct {
	*gpu.Allocator
	m *gpu.Manager
}

func (g gpuInfo) Snapshot() []gpu.Usage { return g.m.Snapshot() }

// GPUInfo makes a GPUSource from a manager and its allocator.
func GPUInfo(m *gpu.Manager, a *gpu.Allocator) GPUSource { return gpuInfo{Allocator: a, m: m} }
