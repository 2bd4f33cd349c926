package server

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/rootfs"
	"github.com/sandboxd/sandboxd/sandbox"
)

// fakeEngine runs no container: Run answers at once, or blocks until release.
type fakeEngine struct {
	mu      sync.Mutex
	jobs    []sandbox.JobInfo
	killed  []string
	policy  sandbox.Policy
	release chan struct{}
	entered chan struct{} // if set, gets a value when Run is called
}

func (f *fakeEngine) Run(ctx context.Context, req sandbox.Request) (*sandbox.Result, error) {
	if f.entered != nil {
		f.entered <- struct{}{}
	}
	if f.release != nil {
		<-f.release
	}
	return &sandbox.Result{ID: "sbx-1", Status: sandbox.StatusOK, Outcome: sandbox.Outcome{Stdout: "secret output"}}, nil
}
func (f *fakeEngine) Load() (int, int) { return len(f.jobs), 1 }
func (f *fakeEngine) Jobs() []sandbox.JobInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.jobs
}
func (f *fakeEngine) Kill(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, j := range f.jobs {
		if j.ID == id {
			f.killed = append(f.killed, id)
			return nil
		}
	}
	return fmt.Errorf("%w: %q", sandbox.ErrJobNotFound, id)
}
func (f *fakeEngine) CgroupMode() sandbox.CgroupMode { return sandbox.CgroupV2 }
func (f *fakeEngine) Policy() sandbox.Policy         { return f.policy }
func (f *fakeEngine) PoolIdle() int                  { return 2 }

func adminServer(t *testing.T, eng *fakeEngine, store RootfsStore) (*Server, *Gate) {
	gate := NewGate(eng, nil)
	s := New(gate, Options{})
	(&Admin{Engine: eng, Gate: gate, Store: store, Rootfs: "sha256:abc", Version: "v1.2", Started: time.Now().Add(-time.Minute),
		MaxJobs: 4, MaxQueue: 8, UploadDir: t.TempDir()}).Register(s)
	return s, gate
}

func do(t *testing.T, h http.Handler, method, path string, body []byte) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, bytes.NewReader(body)))
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s %s: %d %q is not JSON", method, path, rec.Code, rec.Body)
	}
	return rec.Code, out
}

func TestAdminStatusJobsKill(t *testing.T) {
	eng := &fakeEngine{policy: sandbox.DefaultPolicy(), jobs: []sandbox.JobInfo{{ID: "sbx-a", Started: time.Now()}}}
	s, _ := adminServer(t, eng, nil)

	code, st := do(t, s, "GET", "/v1/admin/status", nil)
	if code != 200 || st["state"] != "serving" || st["version"] != "v1.2" || st["cgroup_mode"] != "v2" || st["rootfs"] != "sha256:abc" || st["uptime_seconds"].(float64) < 59 {
		t.Errorf("status: %d %v", code, st)
	}
	if jobs := st["jobs"].(map[string]any); jobs["running"] != 1.0 || jobs["queued"] != 1.0 {
		t.Errorf("status jobs: %v", jobs)
	}
	if lim := st["limits"].(map[string]any)["max"].(map[string]any); lim["timeout_ms"] != 300000.0 {
		t.Errorf("status max limits: %v", lim)
	}

	code, js := do(t, s, "GET", "/v1/admin/jobs", nil)
	if list := js["jobs"].([]any); code != 200 || len(list) != 1 || list[0].(map[string]any)["id"] != "sbx-a" {
		t.Errorf("jobs: %d %v", code, js)
	}
	if code, _ := do(t, s, "POST", "/v1/admin/jobs/sbx-a/kill", nil); code != 200 || len(eng.killed) != 1 {
		t.Errorf("kill sbx-a: %d, killed %v", code, eng.killed)
	}
	if code, _ := do(t, s, "POST", "/v1/admin/jobs/sbx-none/kill", nil); code != 404 {
		t.Errorf("kill unknown: %d, want 404", code)
	}
}

// Draining refuses new jobs with 503 on every front while running ones finish.
func TestAdminDrainResume(t *testing.T) {
	eng := &fakeEngine{policy: sandbox.DefaultPolicy(), release: make(chan struct{}), entered: make(chan struct{}, 8)}
	s, gate := adminServer(t, eng, nil)
	running := make(chan int)
	go func() {
		code, _ := do(t, s, "POST", "/v1/execute", []byte(`{"code":"x"}`))
		running <- code
	}()
	<-eng.entered // it has reached the engine
	if code, ans := do(t, s, "POST", "/v1/admin/drain", nil); code != 200 || ans["draining"] != true || !gate.Draining() {
		t.Fatalf("drain: %d %v", code, ans)
	}
	for _, path := range []string{"/v1/execute", "/execute"} {
		if code, ans := do(t, s, "POST", path, []byte(`{"code":"x"}`)); code != 503 {
			t.Errorf("%s while draining: %d %v, want 503", path, code, ans)
		}
	}
	if _, st := do(t, s, "GET", "/v1/admin/status", nil); st["draining"] != true || st["state"] != "draining" {
		t.Errorf("status while draining: draining %v state %v", st["draining"], st["state"])
	}
	close(eng.release)
	if code := <-running; code != 200 {
		t.Errorf("the job running when drain began: %d, want 200", code)
	}
	if code, _ := do(t, s, "POST", "/v1/admin/resume", nil); code != 200 || gate.Draining() {
		t.Fatalf("resume: %d", code)
	}
	if code, _ := do(t, s, "POST", "/v1/execute", []byte(`{"code":"x"}`)); code != 200 {
		t.Errorf("after resume: %d, want 200", code)
	}
	if _, st := do(t, s, "GET", "/v1/admin/status", nil); st["draining"] != false || st["state"] != "serving" {
		t.Errorf("status after resume: draining %v state %v", st["draining"], st["state"])
	}
}

// The job line names the job, its status, figures and client; the code and output only
// with log_code (and output never).
func TestGateLogLine(t *testing.T) {
	var buf bytes.Buffer
	gate := NewGate(&fakeEngine{}, slog.New(slog.NewJSONHandler(&buf, nil)))
	ctx := context.WithValue(context.Background(), clientKey{}, Client{Unix: true, UID: 1234, PID: 99})
	req := sandbox.Request{Code: "print('secret code')"}
	if _, err := gate.Run(ctx, req); err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("log line %q: %v", buf.String(), err)
	}
	for k, want := range map[string]any{"msg": "job done", "job": "sbx-1", "status": "ok", "client": "uid=1234 pid=99"} {
		if line[k] != want {
			t.Errorf("log %s = %v, want %v", k, line[k], want)
		}
	}
	for _, k := range []string{"wall_ms", "cpu_user_ms", "memory_peak_bytes", "limits"} {
		if _, ok := line[k]; !ok {
			t.Errorf("log line lacks %s: %s", k, buf.String())
		}
	}
	if strings.Contains(buf.String(), "secret") {
		t.Errorf("code or output logged by default: %s", buf.String())
	}
	buf.Reset()
	gate.SetLogCode(true)
	gate.Run(ctx, req)
	if !strings.Contains(buf.String(), "secret code") || strings.Contains(buf.String(), "secret output") {
		t.Errorf("with log_code, want the code and not the output: %s", buf.String())
	}
}

func TestAdminRootfs(t *testing.T) {
	store, err := rootfs.NewStore(t.TempDir(), rootfs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := adminServer(t, &fakeEngine{}, store)
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "usr/bin/python3", Mode: 0o755, Size: 2, Typeflag: tar.TypeReg})
	tw.Write([]byte("#!"))
	tw.Close()

	code, img := do(t, s, "POST", "/v1/admin/rootfs", tb.Bytes())
	if code != 200 || !strings.HasPrefix(fmt.Sprint(img["digest"]), "sha256:") || img["in_use"] != false {
		t.Fatalf("import: %d %v", code, img)
	}
	if _, leak := img["Path"]; leak {
		t.Errorf("import answer shows a host path: %v", img)
	}
	code, ls := do(t, s, "GET", "/v1/admin/rootfs", nil)
	if list := ls["images"].([]any); code != 200 || len(list) != 1 || list[0].(map[string]any)["digest"] != img["digest"] {
		t.Errorf("ls: %d %v", code, ls)
	}
	if code, ans := do(t, s, "POST", "/v1/admin/rootfs", []byte("not a tarball at all")); code != 400 {
		t.Errorf("import of junk: %d %v, want 400", code, ans)
	}
}
