package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/sandbox"
	"github.com/sandboxd/sandboxd/server"
)

type apiFixture struct {
	t   *testing.T
	e   *sandbox.Engine
	url string
}

func newAPI(t *testing.T, opts sandbox.Options) *apiFixture {
	e := testenv.Engine(t, opts)
	ts := httptest.NewServer(server.New(e, server.Options{MaxBodyBytes: 64 << 10, MaxCodeBytes: 16 << 10}))
	t.Cleanup(ts.Close)
	return &apiFixture{t: t, e: e, url: ts.URL}
}

// post sends body to path and decodes the JSON answer; every answer must be JSON.
func (f *apiFixture) post(path, body string) (int, map[string]any) {
	f.t.Helper()
	resp, err := http.Post(f.url+path, "application/json", strings.NewReader(body))
	if err != nil {
		f.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		f.t.Fatalf("POST %s: status %d, body is not JSON: %q", path, resp.StatusCode, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		f.t.Errorf("Content-Type %q", ct)
	}
	testenv.NoLeftovers(f.t, f.e)
	return resp.StatusCode, out
}

func jsonEqual(t *testing.T, got map[string]any, want string) {
	t.Helper()
	var w map[string]any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	g, _ := json.Marshal(got)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(g, wb) {
		t.Errorf("got  %s\nwant %s", g, wb)
	}
}

// The seeds' README examples, sent as they are, get the answers the READMEs show.
func TestSeedExamples(t *testing.T) {
	f := newAPI(t, sandbox.Options{})
	t.Run("execute", func(t *testing.T) {
		code, got := f.post("/execute", `{
      "task_type": "execute_code",
      "code": "print('Hello, World!')",
      "resources": {
        "cpu": "2",
        "gpu": "0",
        "ram": "512MB",
        "storage": "1GB"
      }
    }`)
		if code != 200 {
			t.Fatalf("status %d: %v", code, got)
		}
		jsonEqual(t, got, `{"output": "Hello, World!\n"}`)
	})
	t.Run("submit_code success", func(t *testing.T) {
		_, got := f.post("/submit_code", `{"code": "print(\"Hello from FastAPI!\")"}`)
		jsonEqual(t, got, `{"status": "success", "output": "Hello from FastAPI!\n", "error": "", "return_code": 0, "timeout": false}`)
	})
	t.Run("submit_code syntax error", func(t *testing.T) {
		_, got := f.post("/submit_code", `{"code": "print(\"unclosed\""}`)
		jsonEqual(t, got, `{"status": "failure", "output": "", "error": "SyntaxError: '(' was never closed", "return_code": 1, "timeout": false}`)
	})
	t.Run("submit_code timeout", func(t *testing.T) {
		if testing.Short() {
			t.Skip("takes the seed's 10 s timeout")
		}
		_, got := f.post("/submit_code", `{"code": "while True: pass"}`)
		jsonEqual(t, got, `{"status": "failure", "output": "", "error": "TimeoutExpired: Command exceeded 10 seconds.", "return_code": -1, "timeout": true}`)
	})
	t.Run("submit_code exception", func(t *testing.T) {
		_, got := f.post("/submit_code", `{"code": "print('before')\nraise ValueError('bad value')"}`)
		jsonEqual(t, got, `{"status": "failure", "output": "before\n", "error": "ValueError: bad value", "return_code": 1, "timeout": false}`)
	})
}

func TestExecute(t *testing.T) {
	f := newAPI(t, sandbox.Options{})
	cases := []struct {
		name, body string
		status     string
		check      func(t *testing.T, r map[string]any)
	}{
		{"hello", `{"code": "print('hello')"}`, "ok", func(t *testing.T, r map[string]any) {
			if r["stdout"] != "hello\n" || r["exit_code"] != 0.0 {
				t.Errorf("%v", r)
			}
		}},
		{"exception", `{"code": "1/0"}`, "error", func(t *testing.T, r map[string]any) {
			if !strings.Contains(r["stderr"].(string), "ZeroDivisionError: division by zero") || r["exit_code"] != 1.0 {
				t.Errorf("%v", r)
			}
		}},
		{"timeout", `{"code": "import time\ntime.sleep(30)", "limits": {"timeout": "700ms"}}`, "timeout", func(t *testing.T, r map[string]any) {
			if ms := r["wall_ms"].(float64); ms < 700 || ms > 3000 {
				t.Errorf("wall %v ms for a 700 ms timeout", ms)
			}
		}},
		{"memory limit", `{"code": "b = [bytearray(1 << 20) for _ in range(300)]", "limits": {"memory": "64MB"}}`, "memory_limit", func(t *testing.T, r map[string]any) {
			if r["oom_killed"] != true || r["limits"].(map[string]any)["memory_bytes"] != float64(64<<20) {
				t.Errorf("%v", r)
			}
		}},
		{"storage cap", `{"code": "open('/tmp/f','wb').write(b'x' * (3 << 20))", "limits": {"storage": "2MB"}}`, "error", func(t *testing.T, r map[string]any) {
			if !strings.Contains(r["stderr"].(string), "No space left on device") {
				t.Errorf("%v", r)
			}
		}},
		{"no network", `{"code": "import socket\ntry:\n    socket.create_connection(('10.0.0.1', 80), timeout=2)\nexcept OSError as e:\n    print(e.errno)\ntry:\n    socket.getaddrinfo('example.com', 80)\nexcept OSError as e:\n    print('dns', type(e).__name__)"}`, "ok", func(t *testing.T, r map[string]any) {
			if r["stdout"] != "101\ndns gaierror\n" { // ENETUNREACH
				t.Errorf("%v", r)
			}
		}},
		{"stdin", `{"code": "print(input()[::-1])", "stdin": "olleh\n"}`, "ok", func(t *testing.T, r map[string]any) {
			if r["stdout"] != "hello\n" {
				t.Errorf("%v", r)
			}
		}},
		{"non-root", `{"code": "import os\nprint(os.getuid(), os.geteuid(), os.getgid())"}`, "ok", func(t *testing.T, r map[string]any) {
			if r["stdout"] != "1000 1000 1000\n" {
				t.Errorf("%v", r)
			}
		}},
		{"limits in numbers", `{"code": "print(1)", "limits": {"cpus": 0.5, "memory": 134217728, "storage": "16m", "pids": 32, "timeout": 5}}`, "ok", func(t *testing.T, r map[string]any) {
			l := r["limits"].(map[string]any)
			if l["cpus"] != 0.5 || l["memory_bytes"] != float64(128<<20) || l["storage_bytes"] != float64(16<<20) || l["pids"] != 32.0 || l["timeout_ms"] != 5000.0 {
				t.Errorf("%v", l)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, r := f.post("/v1/execute", c.body)
			if code != 200 || r["status"] != c.status {
				t.Fatalf("HTTP %d status %v, want %s: %v", code, r["status"], c.status, r)
			}
			c.check(t, r)
		})
	}
}

// Bad input gets a 4xx JSON error naming the field; nothing runs, nothing is left.
func TestBadRequests(t *testing.T) {
	f := newAPI(t, sandbox.Options{})
	cases := []struct {
		name, path, body string
		code             int
		field            string
	}{
		{"malformed", "/v1/execute", `{"code": "print(1)"`, 400, ""},
		{"not an object", "/v1/execute", `[1,2]`, 400, ""},
		{"empty", "/v1/execute", ``, 400, ""},
		{"missing code", "/v1/execute", `{"stdin": "x"}`, 400, "code"},
		{"code wrong type", "/v1/execute", `{"code": 42}`, 400, "code"},
		{"unknown field", "/v1/execute", `{"code": "1", "cod": "2"}`, 400, ""},
		{"unknown language", "/v1/execute", `{"code": "1", "language": "cobol"}`, 400, "language"},
		{"bad unit", "/v1/execute", `{"code": "1", "limits": {"memory": "12 parsecs"}}`, 400, "limits.memory"},
		{"negative cpus", "/v1/execute", `{"code": "1", "limits": {"cpus": -1}}`, 400, "limits.cpus"},
		{"bad timeout", "/v1/execute", `{"code": "1", "limits": {"timeout": "soon"}}`, 400, "limits.timeout"},
		{"fractional pids", "/v1/execute", `{"code": "1", "limits": {"pids": 2.5}}`, 400, "limits.pids"},
		{"limits wrong type", "/v1/execute", `{"code": "1", "limits": {"memory": true}}`, 400, "limits.memory"},
		{"above maximum", "/v1/execute", `{"code": "1", "limits": {"memory": "100GB"}}`, 400, "limits.memory"},
		{"timeout above maximum", "/v1/execute", `{"code": "1", "limits": {"timeout": 86400}}`, 400, "limits.timeout"},
		{"code too big", "/v1/execute", `{"code": "` + strings.Repeat("#", 20<<10) + `"}`, 413, "code"},
		{"body too big", "/v1/execute", `{"code": "` + strings.Repeat("#", 70<<10) + `"}`, 413, ""},
		{"deep nesting", "/v1/execute", strings.Repeat("[", 100) + strings.Repeat("]", 100), 400, ""},
		{"seed bad ram", "/execute", `{"task_type": "execute_code", "code": "1", "resources": {"ram": "lots"}}`, 400, "resources.ram"},
		{"seed bad task", "/execute", `{"task_type": "train_model", "code": "1"}`, 400, "task_type"},
		{"seed missing code", "/submit_code", `{}`, 400, "code"},
		{"no such endpoint", "/v2/execute", `{}`, 404, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, r := f.post(c.path, c.body)
			if code != c.code {
				t.Errorf("HTTP %d, want %d: %v", code, c.code, r)
			}
			msg, _ := r["error"].(string)
			if msg == "" {
				t.Errorf("no error message: %v", r)
			}
			if got, _ := r["field"].(string); got != c.field {
				t.Errorf("field %q, want %q (%s)", got, c.field, msg)
			}
		})
	}
	resp, err := http.Get(f.url + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz after bad requests: %v %v", resp, err)
	}
	resp.Body.Close()
}

// With every slot and queue place taken, more requests get 429 and a JSON message.
func TestBusy(t *testing.T) {
	f := newAPI(t, sandbox.Options{MaxJobs: 1, MaxQueue: 0})
	var wg sync.WaitGroup
	codes := make([]int, 4)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(f.url+"/v1/execute", "application/json", strings.NewReader(`{"code": "import time; time.sleep(1)"}`))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			codes[i] = resp.StatusCode
			if resp.StatusCode == 429 && resp.Header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		}()
	}
	wg.Wait()
	var ok, busy int
	for _, c := range codes {
		switch c {
		case 200:
			ok++
		case 429:
			busy++
		}
	}
	if ok != 1 || busy != 3 {
		t.Errorf("codes %v: want one 200 and three 429", codes)
	}
}
