package fronts_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

type pistonStage struct {
	Stdout   string   `json:"stdout"`
	Stderr   string   `json:"stderr"`
	Output   string   `json:"output"`
	Code     *int     `json:"code"`
	Signal   *string  `json:"signal"`
	Message  *string  `json:"message"`
	Status   *string  `json:"status"`
	CPUTime  *float64 `json:"cpu_time"`
	WallTime *float64 `json:"wall_time"`
	Memory   *int64   `json:"memory"`
}

type pistonResult struct {
	Language string       `json:"language"`
	Version  string       `json:"version"`
	Run      pistonStage  `json:"run"`
	Compile  *pistonStage `json:"compile"`
	Message  string       `json:"message"`
}

// TestPistonClient runs piston-client's documented calls, unchanged, for every
// installed runtime: runtimes(), execute(language, code), and execute(language, code,
// options) with stdin, args and limits.
func TestPistonClient(t *testing.T) {
	need(t)
	type pistonCase struct {
		Language string         `json:"language"`
		Code     string         `json:"code"`
		Options  map[string]any `json:"options,omitempty"`
	}
	var cases []pistonCase
	var names []string
	for _, rt := range runtimes {
		_, code, ok := helloFor(rt)
		if !ok {
			t.Errorf("runtime %s has no hello program in this test's table: add one", rt.Name)
			continue
		}
		names = append(names, rt.Name)
		cases = append(cases,
			pistonCase{Language: rt.Name, Code: code},
			pistonCase{Language: rt.Name, Code: code, Options: map[string]any{
				"version": "*", "stdin": "ignored\n", "args": []string{"first", "second arg"},
				"runTimeout": 8000, "compileTimeout": 30000, "runMemoryLimit": 256 << 20, "compileMemoryLimit": -1,
			}})
	}
	for lang := range hello {
		if _, ok := installed(lang); !ok && lang != "c++" || lang == "c++" && !hasCpp() {
			t.Logf("runtime %s is not installed here (its image is missing): not covered", lang)
		}
	}
	spec, _ := json.Marshal(cases)
	var out struct {
		Runtimes []struct {
			Language string   `json:"language"`
			Version  string   `json:"version"`
			Aliases  []string `json:"aliases"`
		} `json:"runtimes"`
		Results []pistonResult `json:"results"`
	}
	node(t, "piston.mjs", &out, daemonURL, string(spec))

	if len(out.Runtimes) != len(runtimes) {
		t.Errorf("runtimes(): %d runtimes, /v1/runtimes has %d", len(out.Runtimes), len(runtimes))
	}
	for i, rt := range out.Runtimes {
		if i < len(runtimes) && (rt.Language != runtimes[i].Name || rt.Version != runtimes[i].Version || rt.Aliases == nil) {
			t.Errorf("runtimes()[%d] = %+v, want %s %s with aliases", i, rt, runtimes[i].Name, runtimes[i].Version)
		}
	}
	if len(out.Results) != len(cases) {
		t.Fatalf("%d results for %d calls", len(out.Results), len(cases))
	}
	for i, res := range out.Results {
		c := cases[i]
		name := c.Language
		if c.Options != nil {
			name += " with options"
		}
		t.Run(name, func(t *testing.T) {
			if res.Message != "" {
				t.Fatalf("refused: %s", res.Message)
			}
			want := "hello from " + displayName(c.Language)
			if c.Options != nil {
				want += "\nfirst\nsecond arg"
			} else {
				want += "\n1\n2\n3" // piston-client's default args
			}
			want += "\n"
			rt, _ := installed(c.Language)
			switch {
			case res.Language != rt.Name || res.Version != rt.Version:
				t.Errorf("ran %s %s, want %s %s", res.Language, res.Version, rt.Name, rt.Version)
			case res.Run.Stdout != want:
				t.Errorf("stdout %q, want %q (stderr %q, compile %+v)", res.Run.Stdout, want, res.Run.Stderr, res.Compile)
			case res.Run.Output != res.Run.Stdout+res.Run.Stderr && res.Run.Stderr == "":
				t.Errorf("output %q, stdout %q", res.Run.Output, res.Run.Stdout)
			case res.Run.Code == nil || *res.Run.Code != 0 || res.Run.Signal != nil || res.Run.Status != nil:
				t.Errorf("code %v signal %v status %v, want 0, null, null", res.Run.Code, res.Run.Signal, res.Run.Status)
			case res.Run.WallTime == nil || *res.Run.WallTime <= 0 || res.Run.Memory == nil:
				t.Errorf("no wall_time or memory: %+v", res.Run)
			case rt.Compiled != (res.Compile != nil):
				t.Errorf("compiled %v, compile stage %+v", rt.Compiled, res.Compile)
			}
		})
	}
	t.Logf("piston-client ran against: %s", strings.Join(names, ", "))
}

func hasCpp() bool {
	_, a := installed("c++")
	_, b := installed("cpp")
	return a || b
}

// displayName is the language as its hello program names it.
func displayName(lang string) string {
	if rt, ok := installed(lang); ok {
		if n, _, ok := helloFor(rt); ok {
			return n
		}
	}
	return lang
}

// TestPistonExecute covers Piston's statuses and refusals over plain HTTP, with no
// Content-Type as piston-client sends.
func TestPistonExecute(t *testing.T) {
	need(t)
	if _, ok := installed("python"); !ok {
		t.Skip("python is not installed")
	}
	url := daemonURL + "/api/v2/execute"
	py := func(code string, extra map[string]any) map[string]any {
		b := map[string]any{"language": "python", "version": "3.x", "files": []map[string]any{{"content": code}}}
		for k, v := range extra {
			b[k] = v
		}
		return b
	}
	str := func(s string) *string { return &s }
	for _, tc := range []struct {
		name   string
		body   map[string]any
		status *string
		signal *string
		check  func(t *testing.T, r pistonResult)
	}{
		{"exit code", py("import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)", nil), str("RE"), nil,
			func(t *testing.T, r pistonResult) {
				// output is both streams in the order their chunks were read: python
				// writes unbuffered ("out", "\n", "err", "\n"), and two pipes read apart
				// may interleave them, as in Piston.
				if *r.Run.Code != 3 || r.Run.Stdout != "out\n" || r.Run.Stderr != "err\n" || !interleaves(r.Run.Output, r.Run.Stdout, r.Run.Stderr) {
					t.Errorf("code %v stdout %q stderr %q output %q", deref(r.Run.Code), r.Run.Stdout, r.Run.Stderr, r.Run.Output)
				}
			}},
		{"signal", py("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", nil), str("SG"), str("SIGSEGV"), nil},
		{"wall timeout", py("import time; time.sleep(5)", map[string]any{"run_timeout": 500}), str("TO"), str("SIGKILL"), nil},
		{"cpu time", py("while True: pass", map[string]any{"run_cpu_time": 300, "run_timeout": 5000}), str("TO"), str("SIGKILL"), nil},
		{"stdin and args", py("import sys; print(sys.stdin.read().upper(), sys.argv[1:])", map[string]any{"stdin": "abc", "args": []string{"x", "y"}}), nil, nil,
			func(t *testing.T, r pistonResult) {
				if r.Run.Stdout != "ABC ['x', 'y']\n" {
					t.Errorf("stdout %q", r.Run.Stdout)
				}
			}},
		{"files base64 and hex", map[string]any{"language": "py", "version": "*", "files": []map[string]any{
			{"name": "main.py", "content": "import util, pathlib\nprint(util.X, pathlib.Path('data.bin').read_bytes())"},
			{"name": "util.py", "content": "WCA9IDQy", "encoding": "base64"},
			{"name": "data.bin", "content": "00ff", "encoding": "hex"},
		}}, nil, nil,
			func(t *testing.T, r pistonResult) {
				if r.Run.Stdout != "42 b'\\x00\\xff'\n" {
					t.Errorf("stdout %q", r.Run.Stdout)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, b := post(t, url, tc.body)
			if code != http.StatusOK {
				t.Fatalf("%d %s", code, b)
			}
			var r pistonResult
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			if !eqPtr(r.Run.Status, tc.status) || (tc.signal != nil && !eqPtr(r.Run.Signal, tc.signal)) {
				t.Errorf("status %v signal %v, want %v %v: %s", deref(r.Run.Status), deref(r.Run.Signal), deref(tc.status), deref(tc.signal), b)
			}
			if r.Run.Signal != nil && r.Run.Code != nil {
				t.Errorf("both code and signal: %s", b)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
	// Refusals: 400 {"message": ...} naming the field, never a 500.
	for _, tc := range []struct {
		name, body, want string
	}{
		{"no language", `{"version":"*","files":[{"content":"x"}]}`, "language is required as a string"},
		{"no version", `{"language":"python","files":[{"content":"x"}]}`, "version is required as a string"},
		{"no files", `{"language":"python","version":"*"}`, "files is required as an array"},
		{"file content", `{"language":"python","version":"*","files":[{"name":"a"}]}`, "files[0].content is required as a string"},
		{"unknown runtime", `{"language":"cobol","version":"*","files":[{"content":"x"}]}`, "cobol-* runtime is unknown"},
		{"unknown version", `{"language":"python","version":"2.x","files":[{"content":"x"}]}`, "python-2.x runtime is unknown"},
		{"no utf8 file", `{"language":"python","version":"*","files":[{"content":"eA==","encoding":"base64"}]}`, "files must include at least one utf8 encoded file"},
		{"timeout above max", `{"language":"python","version":"*","files":[{"content":"x"}],"run_timeout":99999999}`, "run_timeout cannot exceed the configured limit of"},
		{"memory not a number", `{"language":"python","version":"*","files":[{"content":"x"}],"run_memory_limit":"lots"}`, "If specified, run_memory_limit must be a number"},
		{"memory below the floor", `{"language":"python","version":"*","files":[{"content":"x"}],"run_memory_limit":1000}`, "run_memory_limit"},
		{"bad file name", `{"language":"python","version":"*","files":[{"content":"x"},{"name":"../x","content":"y"}]}`, "files[1].name"},
		{"bad encoding", `{"language":"python","version":"*","files":[{"content":"x","encoding":"rot13"}]}`, "files[0].encoding"},
		{"not json", `{"language":`, "not a JSON object"},
	} {
		t.Run("refuse "+tc.name, func(t *testing.T) {
			code, b := post(t, url, tc.body)
			var e struct {
				Message string `json:"message"`
			}
			if code != http.StatusBadRequest || json.Unmarshal(b, &e) != nil || !strings.Contains(e.Message, tc.want) {
				t.Errorf("%d %s, want 400 with %q", code, b, tc.want)
			}
		})
	}
}

func eqPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// interleaves says whether s is a and b merged, each keeping its own order.
func interleaves(s, a, b string) bool {
	if len(s) != len(a)+len(b) {
		return false
	}
	// ok[j] after row i: s[:i+j] merges a[:i] and b[:j].
	ok := make([]bool, len(b)+1)
	for i := 0; i <= len(a); i++ {
		for j := 0; j <= len(b); j++ {
			switch {
			case i == 0 && j == 0:
				ok[j] = true
			case i == 0:
				ok[j] = ok[j-1] && b[j-1] == s[j-1]
			case j == 0:
				ok[j] = ok[j] && a[i-1] == s[i-1]
			default:
				ok[j] = (ok[j] && a[i-1] == s[i+j-1]) || (ok[j-1] && b[j-1] == s[i+j-1])
			}
		}
	}
	return ok[len(b)]
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestPistonConnect drives WS /api/v2/connect with the npm ws client: stdin sent
// interactively, signals, and Piston's close codes.
func TestPistonConnect(t *testing.T) {
	need(t)
	if _, ok := installed("python"); !ok {
		t.Skip("python is not installed")
	}
	url := strings.Replace(daemonURL, "http://", "ws://", 1) + "/api/v2/connect"
	type wsOut struct {
		Messages []map[string]any `json:"messages"`
		Close    struct {
			Code   int    `json:"code"`
			Reason string `json:"reason"`
		} `json:"close"`
		Error string `json:"error"`
	}
	for _, tc := range []struct {
		scenario string
		code     int
		reason   string
		check    func(t *testing.T, o wsOut)
	}{
		{"interactive", 4999, "Job Completed", func(t *testing.T, o wsOut) {
			var types, stdout []string
			for _, m := range o.Messages {
				types = append(types, m["type"].(string))
				if m["type"] == "data" && m["stream"] == "stdout" {
					stdout = append(stdout, m["data"].(string))
				}
			}
			if got := strings.Join(stdout, ""); got != "got line1\ngot line2\n" {
				t.Errorf("stdout %q, want both lines answered in turn; messages %v", got, o.Messages)
			}
			if types[0] != "runtime" || types[1] != "stage" || types[len(types)-1] != "exit" {
				t.Errorf("message types %v", types)
			}
			last := o.Messages[len(o.Messages)-1]
			if last["stage"] != "run" || last["code"] != float64(0) || last["signal"] != nil {
				t.Errorf("exit %v", last)
			}
		}},
		{"signal", 4999, "Job Completed", func(t *testing.T, o wsOut) {
			last := o.Messages[len(o.Messages)-1]
			if last["type"] != "exit" || last["signal"] != "SIGTERM" {
				t.Errorf("last message %v, want exit by SIGTERM", last)
			}
		}},
		{"data-before-init", 4003, "Not yet initialized", nil},
		{"no-init", 4001, "Initialization Timeout", nil},
		{"bad-signal", 4005, "Invalid signal", nil},
		{"stdout-write", 4004, "Can only write to stdin", nil},
		{"twice", 4000, "Already Initialized", nil},
		{"bad-init", 4002, "Notified Error", func(t *testing.T, o wsOut) {
			if len(o.Messages) != 1 || o.Messages[0]["type"] != "error" || !strings.Contains(o.Messages[0]["message"].(string), "runtime is unknown") {
				t.Errorf("messages %v", o.Messages)
			}
		}},
	} {
		t.Run(tc.scenario, func(t *testing.T) {
			var o wsOut
			node(t, "ws.mjs", &o, url, tc.scenario)
			if o.Error != "" || o.Close.Code != tc.code || o.Close.Reason != tc.reason {
				t.Fatalf("closed %d %q (error %q), want %d %q; messages %v", o.Close.Code, o.Close.Reason, o.Error, tc.code, tc.reason, o.Messages)
			}
			if tc.check != nil {
				tc.check(t, o)
			}
		})
	}
}
