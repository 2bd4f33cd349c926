package server

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sandboxd/sandboxd/gpu"
	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/sandbox"
)

func TestMetricsCountRejections(t *testing.T) {
	m := NewMetrics(Gauges{Load: func() (int, int) { return 2, 3 }})
	statuses := []int{200, 400, 400, 401, 403, 404, 409, 413, 429, 503}
	h := m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(statuses[0])
		statuses = statuses[1:]
	}))
	for range len(statuses) {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}
	want := map[string]float64{"invalid": 2, "unauthorized": 1, "forbidden": 1, "gpus_busy": 1, "too_large": 1, "busy": 1, "unavailable": 1}
	for reason, n := range want {
		if got := testutil.ToFloat64(m.rejected.WithLabelValues(reason)); got != n {
			t.Errorf("rejected{reason=%q} = %v, want %v", reason, got, n)
		}
	}
}

func TestMetricsObserveJobs(t *testing.T) {
	m := NewMetrics(Gauges{
		Load: func() (int, int) { return 2, 3 },
		GPUs: func() []gpu.Status { return []gpu.Status{{LeasedBy: "sbx-1"}, {}, {LeasedBy: "sbx-2"}} },
	})
	m.JobDone(sandbox.JobInfo{QueueWait: time.Second}, &sandbox.Result{Status: sandbox.StatusTimeout, Outcome: sandbox.Outcome{Wall: 2 * time.Second}}, nil)
	m.JobDone(sandbox.JobInfo{}, &sandbox.Result{Status: sandbox.StatusOK}, errors.New("rmdir cgroup: EBUSY"))
	exp := scrape(t, m.Handler(), nil)
	for _, line := range []string{
		`sandboxd_jobs_total{status="timeout"} 1`,
		`sandboxd_jobs_total{status="ok"} 1`,
		`sandboxd_jobs_total{status="memory_limit"} 0`,
		`sandboxd_job_duration_seconds_count 2`,
		`sandboxd_job_duration_seconds_sum 2`,
		`sandboxd_job_queue_wait_seconds_sum 1`,
		`sandboxd_cgroup_cleanup_failures_total 1`,
		`sandboxd_jobs_running 2`,
		`sandboxd_jobs_queued 3`,
		`sandboxd_pool_size 0`,
		`sandboxd_gpus 3`,
		`sandboxd_gpu_leases 2`,
	} {
		if !strings.Contains(exp, line+"\n") {
			t.Errorf("exposition lacks %q", line)
		}
	}
}

func scrape(t *testing.T, h http.Handler, do func(*http.Request) (*http.Response, error)) string {
	t.Helper()
	req := httptest.NewRequest("GET", "/metrics", nil)
	if do == nil {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Body.String()
	}
	resp, err := do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A real job through the daemon's stack (metrics, auth, gate, API) shows in /metrics,
// which a TCP client reaches with the API token.
func TestMetricsAfterRealJob(t *testing.T) {
	var e *sandbox.Engine
	m := NewMetrics(Gauges{Load: func() (int, int) { return e.Load() }})
	e = testenv.Engine(t, sandbox.Options{Observer: m})
	var auth Auth
	auth.SetTokens("tok", "")
	s := New(NewGate(e, nil), Options{})
	s.Handle("GET /metrics", m.Handler())
	tcp, _, base := serveBoth(t, m.Wrap(auth.Wrap(s)))

	post := func(body, tok string) int {
		req, _ := http.NewRequest("POST", base+"/v1/execute", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := tcp.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(`{"code":"import sys; sys.exit(3)"}`, "tok"); code != 200 {
		t.Fatalf("job: HTTP %d", code)
	}
	if code := post(`{"code":"x"}`, "bad"); code != 401 {
		t.Fatalf("wrong token: HTTP %d", code)
	}
	e.Settle() // a job's end is observed once its teardown, just after its answer, is done
	if code := post(`{"code":"x","limits":{"memory":"1TB"}}`, "tok"); code != 400 {
		t.Fatalf("too much memory: HTTP %d", code)
	}
	exp := scrape(t, nil, func(r *http.Request) (*http.Response, error) {
		req, _ := http.NewRequest("GET", base+"/metrics", nil)
		req.Header.Set("Authorization", "Bearer tok")
		return tcp.Do(req)
	})
	for _, line := range []string{
		`sandboxd_jobs_total{status="error"} 1`,
		`sandboxd_job_duration_seconds_count 1`,
		`sandboxd_job_queue_wait_seconds_count 1`,
		`sandboxd_jobs_running 0`,
		`sandboxd_requests_rejected_total{reason="unauthorized"} 1`,
		`sandboxd_requests_rejected_total{reason="invalid"} 1`,
		`sandboxd_cgroup_cleanup_failures_total 0`,
		`go_goroutines `,
		`process_open_fds `,
	} {
		if !strings.Contains(exp, line) {
			t.Errorf("exposition lacks %q", line)
		}
	}
}
