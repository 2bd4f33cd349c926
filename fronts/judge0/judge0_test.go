package judge0

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/sandbox"
)

// fakeRunner answers every job with res, recording the request.
type fakeRunner struct {
	res  sandbox.Result
	reqs chan sandbox.Request
}

func (f *fakeRunner) Run(_ context.Context, req sandbox.Request) (*sandbox.Result, error) {
	if f.reqs != nil {
		f.reqs <- req
	}
	r := f.res
	return &r, nil
}

func testFront(run *fakeRunner, token string) http.Handler {
	p := sandbox.DefaultPolicy()
	fr := New(Options{Run: run, Policy: func() sandbox.Policy { return p }, AuthToken: func() string { return token },
		Runtimes: func() []sandbox.RuntimeInfo {
			return []sandbox.RuntimeInfo{{Name: "python", Version: "3.11.2", Aliases: []string{"py"}, Limits: p.Default, MaxLimits: p.Max}}
		}})
	mux := http.NewServeMux()
	fr.Register(mux)
	return mux
}

func call(t *testing.T, h http.Handler, method, path, body string) (int, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	var out map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

func TestVerdicts(t *testing.T) {
	s := &submission{CPUTimeLimit: 1, ExpectedOutput: ptr("a\n")}
	for _, tc := range []struct {
		name string
		st   sandbox.Status
		oc   sandbox.Outcome
		want int
	}{
		{"accepted, trailing space", sandbox.StatusOK, sandbox.Outcome{Stdout: "a  \n\n"}, statusAccepted},
		{"wrong answer", sandbox.StatusOK, sandbox.Outcome{Stdout: "b\n"}, statusWrong},
		{"no output", sandbox.StatusOK, sandbox.Outcome{}, statusWrong},
		{"over the limit within the extra time", sandbox.StatusOK, sandbox.Outcome{Stdout: "a", CPUMS: 1200}, statusTLE},
		{"cpu limit", sandbox.StatusCPULimit, sandbox.Outcome{Signal: "SIGKILL"}, statusTLE},
		{"wall clock", sandbox.StatusTimeout, sandbox.Outcome{Signal: "SIGKILL"}, statusTLE},
		{"sigsegv", sandbox.StatusSignaled, sandbox.Outcome{Signal: "SIGSEGV", ExitCode: -1}, statusSIGSEGV},
		{"sigxfsz", sandbox.StatusSignaled, sandbox.Outcome{Signal: "SIGXFSZ", ExitCode: -1}, statusSIGXFSZ},
		{"sigfpe", sandbox.StatusSignaled, sandbox.Outcome{Signal: "SIGFPE", ExitCode: -1}, statusSIGFPE},
		{"sigabrt", sandbox.StatusSignaled, sandbox.Outcome{Signal: "SIGABRT", ExitCode: -1}, statusSIGABRT},
		{"other signal", sandbox.StatusSignaled, sandbox.Outcome{Signal: "SIGUSR1", ExitCode: -1}, statusOther},
		{"out of memory", sandbox.StatusMemoryLimit, sandbox.Outcome{Signal: "SIGKILL", OOMKilled: true}, statusOther},
		{"nzec", sandbox.StatusError, sandbox.Outcome{ExitCode: 2}, statusNZEC},
		{"internal", sandbox.StatusInternalError, sandbox.Outcome{}, statusBoxErr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := s.judge(Record{State: StateDone, Result: &sandbox.Result{Status: tc.st, Outcome: tc.oc}})
			if v.status != tc.want {
				t.Errorf("status %d (%s), want %d", v.status, statusNames[v.status], tc.want)
			}
		})
	}
	v := s.judge(Record{State: StateDone, Result: &sandbox.Result{Status: sandbox.StatusCompileTimeout, Compile: &sandbox.StageResult{}}})
	if v.status != statusCE || *v.compileOutput != "Compilation time limit exceeded." {
		t.Errorf("compile timeout: %+v", v)
	}
}

func TestEncode64(t *testing.T) {
	if got := encode64([]byte("hello, Judge0\n")); got != "aGVsbG8sIEp1ZGdlMAo=\n" {
		t.Errorf("%q", got)
	}
	long := encode64(bytes.Repeat([]byte("x"), 100))
	if lines := strings.Split(strings.TrimSuffix(long, "\n"), "\n"); len(lines) != 3 || len(lines[0]) != 60 {
		t.Errorf("%q: want Ruby's 60-character lines", long)
	}
	if d, err := decodeBase64(long); err != nil || len(d) != 100 {
		t.Errorf("round trip: %v", err)
	}
}

func TestFields(t *testing.T) {
	if f, err := parseFields("*"); err != nil || len(f) != len(fieldNames) {
		t.Errorf("*: %v %v", f, err)
	}
	if f, _ := parseFields(""); len(f) != len(defaultFields) {
		t.Errorf("default: %v", f)
	}
	if _, err := parseFields("stdout,nope"); err == nil || err.Error() != "invalid fields: [nope]" {
		t.Errorf("%v", err)
	}
}

func TestUnzip(t *testing.T) {
	mk := func(names ...string) json.RawMessage {
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		for _, n := range names {
			w, _ := zw.Create(n)
			w.Write([]byte("x"))
		}
		zw.Close()
		raw, _ := json.Marshal(base64.StdEncoding.EncodeToString(b.Bytes()))
		return raw
	}
	if _, files, err := unzipFiles(mk("a.py", "dir/b.txt", "dir/")); err != nil || len(files) != 2 {
		t.Errorf("%v %v", files, err)
	}
	for _, bad := range []string{"../x", "/etc/x", "a/../../x", "run"} {
		if _, _, err := unzipFiles(mk(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, _, err := unzipFiles(json.RawMessage(`"aGVsbG8="`)); err == nil {
		t.Error("not a zip accepted")
	}
}

func TestCreateAndAuth(t *testing.T) {
	run := &fakeRunner{res: sandbox.Result{Status: sandbox.StatusOK, Runtime: "python", Version: "3.11.2",
		Outcome: sandbox.Outcome{Stdout: "hello, Judge0\n", CPUMS: 12, WallMS: 20, MemoryPeak: 8 << 20}}, reqs: make(chan sandbox.Request, 4)}
	h := testFront(run, "")
	code, out := call(t, h, "POST", "/submissions?wait=true", `{"source_code":"print(1)","language_id":"71","stdin":"Judge0","expected_output":"hello, Judge0","cpu_time_limit":2,"memory_limit":65536,"command_line_arguments":"a 'b c'"}`)
	if code != http.StatusCreated || out["stdout"] != "hello, Judge0\n" || out["time"] != "0.012" || out["memory"] != float64(8192) {
		t.Fatalf("%d %v", code, out)
	}
	req := <-run.reqs
	if req.Limits.CPUTime != 3*time.Second || req.Limits.Memory != 64<<20 || string(req.Stdin) != "Judge0" ||
		len(req.Args) != 2 || req.Args[1] != "b c" || req.Language != "python" {
		t.Errorf("request %+v", req)
	}
	code, out = call(t, h, "POST", "/submissions", `{"source_code":"x","language_id":71,"memory_limit":99999999999,"cpu_time_limit":"x"}`)
	if code != http.StatusUnprocessableEntity || out["memory_limit"] == nil || out["cpu_time_limit"] == nil {
		t.Errorf("%d %v", code, out)
	}
	h = testFront(run, "secret")
	if code, _ := call(t, h, "GET", "/statuses", ""); code != http.StatusUnauthorized {
		t.Errorf("no token: %d", code)
	}
	req2 := httptest.NewRequest("GET", "/statuses", nil)
	req2.Header.Set("X-Auth-Token", "secret")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req2)
	if w.Code != http.StatusOK {
		t.Errorf("with token: %d", w.Code)
	}
}
