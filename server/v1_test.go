package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/sandbox"
	"github.com/sandboxd/sandboxd/server"
)

// The job core's fields through /v1/execute: files in their encodings, output
// encodings, and refusals naming the field the client sent.
func TestExecuteJobCoreFields(t *testing.T) {
	f := newAPI(t, sandbox.Options{})
	b64 := base64.StdEncoding.EncodeToString
	cases := []struct {
		name, body string
		status     int
		check      func(t *testing.T, got map[string]any)
	}{
		{"files base64 and utf8", `{"files": [{"name": "m.py", "content": "print(open('d.bin','rb').read(), open('t.txt').read())"},
			{"name": "d.bin", "content": "` + b64([]byte{0, 255}) + `", "encoding": "base64"}, {"name": "t.txt", "content": "é", "encoding": "utf8"}]}`,
			200, func(t *testing.T, got map[string]any) {
				if got["stdout"] != "b'\\x00\\xff' é\n" || got["runtime"] != "python" {
					t.Errorf("%v", got)
				}
			}},
		{"output base64", `{"code": "import sys; sys.stdout.buffer.write(b'\\xff\\x00')", "output_encoding": "base64"}`, 200,
			func(t *testing.T, got map[string]any) {
				if got["stdout"] != b64([]byte{0xff, 0}) || got["output_encoding"] != "base64" {
					t.Errorf("%v", got)
				}
			}},
		{"invalid utf-8 flagged", `{"code": "import sys; sys.stdout.buffer.write(b'a\\xffb')"}`, 200, func(t *testing.T, got map[string]any) {
			if got["stdout"] != "a\uFFFDb" || got["stdout_lossy"] != true {
				t.Errorf("%v", got)
			}
		}},
		{"tests", `{"code": "print(input())", "tests": [{"stdin": "a", "expected_output": "a"}, {"stdin": "b", "expected_output": "c"}]}`, 200,
			func(t *testing.T, got map[string]any) {
				tests, _ := got["tests"].([]any)
				if got["status"] != "wrong_answer" || got["tests_passed"] != 1.0 || len(tests) != 2 || tests[1].(map[string]any)["verdict"] != "wrong_answer" {
					t.Errorf("%v", got)
				}
			}},
		{"collect", `{"code": "open('r.json','w').write('{}')", "collect": ["*.json"]}`, 200, func(t *testing.T, got map[string]any) {
			files, _ := got["files"].([]any)
			if len(files) != 1 || files[0].(map[string]any)["content"] != b64([]byte("{}")) {
				t.Errorf("%v", got)
			}
		}},
		{"unknown language", `{"language": "cobol", "code": "x"}`, 400, func(t *testing.T, got map[string]any) {
			if got["field"] != "language" || !strings.Contains(got["error"].(string), "python") {
				t.Errorf("%v", got)
			}
		}},
		{"bad base64", `{"files": [{"name": "a.py", "content": "%%%", "encoding": "base64"}]}`, 400, fieldIs("files[0].content")},
		{"bad encoding", `{"files": [{"name": "a.py", "content": "", "encoding": "rot13"}]}`, 400, fieldIs("files[0].encoding")},
		{"escaping name", `{"code": "1", "files": [{"name": "../../etc/x", "content": "x"}]}`, 400, fieldIs("files[0].name")},
		{"bad output encoding", `{"code": "1", "output_encoding": "hex"}`, 400, fieldIs("output_encoding")},
		{"no code nor files", `{"stdin": "x"}`, 400, fieldIs("code")},
		{"compile limit for python", `{"code": "1", "limits": {"compile_timeout": 5}}`, 400, fieldIs("limits.compile_timeout")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, got := f.post("/v1/execute", c.body)
			if status != c.status {
				t.Fatalf("HTTP %d, want %d: %v", status, c.status, got)
			}
			c.check(t, got)
		})
	}
}

func fieldIs(field string) func(*testing.T, map[string]any) {
	return func(t *testing.T, got map[string]any) {
		t.Helper()
		if got["field"] != field {
			t.Errorf("field %v, want %s: %v", got["field"], field, got["error"])
		}
	}
}

// GET /v1/runtimes lists the engine's runtimes with their limits.
func TestRuntimesEndpoint(t *testing.T) {
	f := newAPI(t, sandbox.Options{})
	ts := httptest.NewServer(server.New(f.e, server.Options{Runtimes: f.e.Runtimes}))
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/v1/runtimes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Runtimes []struct {
			Name     string   `json:"name"`
			Aliases  []string `json:"aliases"`
			Compiled bool     `json:"compiled"`
			Limits   struct {
				TimeoutMS int64 `json:"timeout_ms"`
			} `json:"limits"`
		} `json:"runtimes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || len(got.Runtimes) != 1 || got.Runtimes[0].Name != "python" ||
		got.Runtimes[0].Compiled || got.Runtimes[0].Limits.TimeoutMS != 10000 || len(got.Runtimes[0].Aliases) == 0 {
		t.Errorf("%v %+v", err, got)
	}
}

// A client that goes away from a blocking /v1/execute cancels its job: the container is
// killed at once, not at the job's timeout.
func TestDisconnectCancels(t *testing.T) {
	f := newAPI(t, sandbox.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.url+"/v1/execute",
		strings.NewReader(`{"code": "import time; time.sleep(30)", "limits": {"timeout": 60}}`))
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("the request finished")
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(f.e.Jobs()) > 0 || f.running() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the job still runs after its client left: %+v", f.e.Jobs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	testenv.NoLeftovers(t, f.e)
}

func (f *apiFixture) running() int {
	r, q := f.e.Load()
	return r + q
}
