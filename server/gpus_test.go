package server_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"

	"github.com/sandboxd/sandboxd/gpu"
	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/sandbox"
	"github.com/sandboxd/sandboxd/server"
)

func listGPUs(t *testing.T, url string) []map[string]any {
	t.Helper()
	resp, err := http.Get(url + "/v1/gpus")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ GPUs []map[string]any }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.GPUs
}

// A fake 8-GPU server (go-nvml's dgxa100 mock) behind the real API. This machine has no
// /dev/nvidia* nodes, so a granted job cannot start: that proves the lease is released
// on an error half-way. scripts/gpu-smoke.sh runs the real path on a GPU host.
func TestGPURequests(t *testing.T) {
	srv := dgxa100.New()
	for _, h := range srv.Devices { // live-info calls the mock leaves unset (unset panics)
		d := h.(*dgxa100.Device)
		d.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{Gpu: 5}, nvml.SUCCESS }
		d.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) { return nil, nvml.SUCCESS }
	}
	mgr := gpu.New(srv)
	alloc := gpu.NewAllocator(mgr)
	e := testenv.Engine(t, sandbox.Options{GPUs: alloc})
	ts := httptest.NewServer(server.New(e, server.Options{GPUs: server.GPUInfo(mgr, alloc)}))
	defer ts.Close()
	f := &apiFixture{t: t, e: e, url: ts.URL}

	gpus := listGPUs(t, ts.URL)
	if len(gpus) != 8 {
		t.Fatalf("listed %d GPUs, want 8: %v", len(gpus), gpus)
	}
	first := gpus[0]["uuid"].(string)
	if !strings.HasPrefix(first, "GPU-") || gpus[0]["leased_by"] != "" {
		t.Errorf("first GPU %v", gpus[0])
	}
	for _, c := range []struct {
		name, body string
		code       int
		field      string
	}{
		{"too many", `{"code": "1", "limits": {"gpus": 9}}`, 400, "limits.gpus"},
		{"unknown uuid", `{"code": "1", "limits": {"gpus": ["GPU-00000000-0000-0000-0000-000000000000"]}}`, 400, "limits.gpus"},
		{"mixed", `{"code": "1", "limits": {"gpus": ["` + first + `", 1]}}`, 400, "limits.gpus"},
		{"bad type", `{"code": "1", "limits": {"gpus": {"n": 1}}}`, 400, "limits.gpus"},
		{"granted but no device nodes here", `{"code": "1", "limits": {"gpus": ["` + first + `"]}}`, 500, ""},
		{"seed count", `{"task_type": "execute_code", "code": "1", "resources": {"gpu": "9"}}`, 400, "resources.gpu"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := "/v1/execute"
			if strings.Contains(c.body, "task_type") {
				path = "/execute"
			}
			code, r := f.post(path, c.body)
			if code != c.code || (c.field != "" && r["field"] != c.field) {
				t.Errorf("HTTP %d %v; want %d on %q", code, r, c.code, c.field)
			}
		})
	}
	for _, g := range listGPUs(t, ts.URL) {
		if g["leased_by"] != "" {
			t.Errorf("lease not released: %v", g)
		}
	}
}

func TestNoGPUs(t *testing.T) {
	f := newAPI(t, sandbox.Options{})
	code, r := f.post("/v1/execute", `{"code": "1", "limits": {"gpus": 1}}`)
	if code != 400 || r["field"] != "limits.gpus" {
		t.Errorf("HTTP %d %v", code, r)
	}
	code, r = f.post("/execute", `{"task_type": "execute_code", "code": "print(1)", "resources": {"gpu": "0"}}`)
	if code != 200 || r["output"] != "1\n" {
		t.Errorf("gpu 0: HTTP %d %v", code, r)
	}
	if g := listGPUs(t, f.url); len(g) != 0 {
		t.Errorf("listed %v", g)
	}
}
