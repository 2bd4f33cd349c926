package piston

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/sandbox"
)

func TestStage(t *testing.T) {
	for _, tc := range []struct {
		name           string
		st             sandbox.Status
		oc             sandbox.Outcome
		status, signal string // "" for null
		code           bool   // code set (not null)
	}{
		{"ok", sandbox.StatusOK, sandbox.Outcome{}, "", "", true},
		{"exit", sandbox.StatusError, sandbox.Outcome{ExitCode: 2}, "RE", "", true},
		{"signal", sandbox.StatusSignaled, sandbox.Outcome{ExitCode: -1, Signal: "SIGSEGV"}, "SG", "SIGSEGV", false},
		{"oom", sandbox.StatusMemoryLimit, sandbox.Outcome{ExitCode: -1, Signal: "SIGKILL"}, "SG", "SIGKILL", false},
		{"timeout", sandbox.StatusTimeout, sandbox.Outcome{ExitCode: -1}, "TO", "SIGKILL", false},
		{"cpu", sandbox.StatusCPULimit, sandbox.Outcome{ExitCode: -1, Signal: "SIGKILL"}, "TO", "SIGKILL", false},
		{"stdout cap", sandbox.StatusOK, sandbox.Outcome{StdoutTruncated: true}, "OL", "", true},
		{"stderr cap", sandbox.StatusOK, sandbox.Outcome{StderrTruncated: true}, "EL", "", true},
		{"internal", sandbox.StatusInternalError, sandbox.Outcome{ExitCode: -1}, "XX", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := stage(tc.st, tc.oc, "")
			s := func(p *string) string {
				if p == nil {
					return ""
				}
				return *p
			}
			if s(v.Status) != tc.status || s(v.Signal) != tc.signal || (v.Code != nil) != tc.code {
				t.Errorf("status %q signal %q code %v", s(v.Status), s(v.Signal), v.Code)
			}
			if v.Status != nil && v.Message == nil {
				t.Error("a status without a message")
			}
		})
	}
}

type fakeRunner struct{ req chan sandbox.Request }

func (f fakeRunner) Run(_ context.Context, req sandbox.Request) (*sandbox.Result, error) {
	f.req <- req
	if req.Events != nil {
		req.Events(sandbox.Event{Type: sandbox.EventStdout, Stage: sandbox.StageRun, Data: []byte("a")})
		req.Events(sandbox.Event{Type: sandbox.EventStderr, Stage: sandbox.StageRun, Data: []byte("b")})
		req.Events(sandbox.Event{Type: sandbox.EventStdout, Stage: sandbox.StageRun, Data: []byte("c")})
	}
	return &sandbox.Result{Status: sandbox.StatusOK, Runtime: "python", Version: "3.11.2",
		Outcome: sandbox.Outcome{Stdout: "ac", Stderr: "b"}}, nil
}

func TestExecuteMapping(t *testing.T) {
	run := fakeRunner{req: make(chan sandbox.Request, 1)}
	max := sandbox.DefaultPolicy().Max
	f := New(Options{Run: run, Runtimes: func() []sandbox.RuntimeInfo {
		return []sandbox.RuntimeInfo{{Name: "python", Version: "3.11.2", Aliases: []string{"py"}, MaxLimits: max}}
	}})
	mux := http.NewServeMux()
	f.Register(mux)
	body := `{"language":"py","version":"3.x","files":[{"content":"print(1)"},{"name":"d.bin","content":"00ff","encoding":"hex"}],` +
		`"run_timeout":1500,"run_memory_limit":-1,"compile_timeout":10000,"run_cpu_time":700}`
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest("POST", "/api/v2/execute", strings.NewReader(body)))
	if w.Code != http.StatusOK {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	req := <-run.req
	if req.Code != "print(1)" || len(req.Files) != 1 || string(req.Files[0].Content) != "\x00\xff" ||
		req.Limits.Timeout != 1500*time.Millisecond || req.Limits.Memory != max.Memory || req.Limits.CPUTime != 700*time.Millisecond ||
		req.CompileLimits != (sandbox.Limits{}) {
		t.Errorf("request %+v", req)
	}
	var v executeView
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if v.Run.Output != "abc" || v.Language != "python" {
		t.Errorf("output %q (want the streams in the order read)", v.Run.Output)
	}
}
