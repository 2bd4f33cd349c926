package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/gpu"
	"github.com/sandboxd/sandboxd/sandbox"
	"github.com/sandboxd/sandboxd/server"
)

// These tests drive the HTTP fronts with a fake runner: they need no root, no cgroups and
// no rootfs, so anyone can work on the request-parsing layer.

func fakeAPI(t *testing.T, opts server.Options) (*fakeRunner, string) {
	t.Helper()
	f := &fakeRunner{}
	ts := httptest.NewServer(server.New(f, opts))
	t.Cleanup(ts.Close)
	return f, ts.URL
}

// send makes one request and decodes the answer, which must be JSON.
func send(t *testing.T, method, url, body string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: status %d, body is not JSON: %q", method, url, resp.StatusCode, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	return resp.StatusCode, resp.Header, out
}

// Each limit's wire forms reach the engine as the sandbox.Request they mean.
func TestParseLimits(t *testing.T) {
	f, url := fakeAPI(t, server.Options{})
	const mib, gib = int64(1 << 20), int64(1 << 30)
	cases := []struct {
		name, limits string
		want         sandbox.Limits
		gpus         gpu.Request
	}{
		{"none", `null`, sandbox.Limits{}, gpu.Request{}},
		{"empty", `{}`, sandbox.Limits{}, gpu.Request{}},
		{"memory MB", `{"memory": "512MB"}`, sandbox.Limits{Memory: 512 * mib}, gpu.Request{}},
		{"memory m", `{"memory": "512m"}`, sandbox.Limits{Memory: 512 * mib}, gpu.Request{}},
		{"memory MiB", `{"memory": "512MiB"}`, sandbox.Limits{Memory: 512 * mib}, gpu.Request{}},
		{"memory GB", `{"memory": "1GB"}`, sandbox.Limits{Memory: gib}, gpu.Request{}},
		{"memory g", `{"memory": " 1g "}`, sandbox.Limits{Memory: gib}, gpu.Request{}},
		{"memory bytes", `{"memory": 134217728}`, sandbox.Limits{Memory: 128 * mib}, gpu.Request{}},
		{"memory bytes string", `{"memory": "1048576"}`, sandbox.Limits{Memory: mib}, gpu.Request{}},
		{"storage", `{"storage": "16m"}`, sandbox.Limits{Storage: 16 * mib}, gpu.Request{}},
		{"file_size", `{"file_size": "1KB"}`, sandbox.Limits{FileSize: 1024}, gpu.Request{}},
		{"stack", `{"stack": "16MB"}`, sandbox.Limits{Stack: 16 * mib}, gpu.Request{}},
		{"io bps", `{"io_read_bps": "1MB", "io_write_bps": 1000}`, sandbox.Limits{IOReadBPS: mib, IOWriteBPS: 1000}, gpu.Request{}},
		{"io iops and weight", `{"io_read_iops": 100, "io_write_iops": "200", "io_weight": 500}`, sandbox.Limits{IOReadIOPS: 100, IOWriteIOPS: 200, IOWeight: 500}, gpu.Request{}},
		{"cpus fraction", `{"cpus": 0.5}`, sandbox.Limits{CPUs: 0.5}, gpu.Request{}},
		{"cpus string", `{"cpus": "2"}`, sandbox.Limits{CPUs: 2}, gpu.Request{}},
		{"cpus tiny", `{"cpus": "0.001"}`, sandbox.Limits{CPUs: 0.001}, gpu.Request{}}, // the engine's floor refuses it
		{"pids", `{"pids": 32, "open_files": "2048"}`, sandbox.Limits{Pids: 32, OpenFiles: 2048}, gpu.Request{}},
		{"timeout seconds", `{"timeout": 5}`, sandbox.Limits{Timeout: 5 * time.Second}, gpu.Request{}},
		{"timeout fraction", `{"timeout": 2.5}`, sandbox.Limits{Timeout: 2500 * time.Millisecond}, gpu.Request{}},
		{"timeout seconds string", `{"timeout": "10"}`, sandbox.Limits{Timeout: 10 * time.Second}, gpu.Request{}},
		{"timeout duration", `{"timeout": "1500ms"}`, sandbox.Limits{Timeout: 1500 * time.Millisecond}, gpu.Request{}},
		{"cpu_time minutes", `{"cpu_time": "5m"}`, sandbox.Limits{CPUTime: 5 * time.Minute}, gpu.Request{}},
		{"a limit null", `{"memory": null}`, sandbox.Limits{}, gpu.Request{}},
		{"gpus 0", `{"gpus": 0}`, sandbox.Limits{}, gpu.Request{}},
		{"gpus count", `{"gpus": 2}`, sandbox.Limits{}, gpu.Request{Count: 2}},
		{"gpus count string", `{"gpus": "1"}`, sandbox.Limits{}, gpu.Request{Count: 1}},
		{"gpus all", `{"gpus": "all"}`, sandbox.Limits{}, gpu.Request{All: true}},
		{"gpus uuids", `{"gpus": ["GPU-a", "MIG-b"]}`, sandbox.Limits{}, gpu.Request{UUIDs: []string{"GPU-a", "MIG-b"}}},
		{"gpus indices", `{"gpus": [0, 3]}`, sandbox.Limits{}, gpu.Request{Indices: []int{0, 3}}},
		{"gpu_wait", `{"gpus": 1, "gpu_wait": "2s"}`, sandbox.Limits{}, gpu.Request{Count: 1, Wait: 2 * time.Second}},
		{"gpu_wait 0", `{"gpus": 1, "gpu_wait": 0}`, sandbox.Limits{}, gpu.Request{Count: 1}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, r := send(t, "POST", url+"/v1/execute", `{"code": "print(1)", "stdin": "in", "limits": `+c.limits+`}`)
			if code != 200 || r["status"] != "ok" {
				t.Fatalf("HTTP %d: %v", code, r)
			}
			reqs := f.requests()
			if len(reqs) != i+1 {
				t.Fatalf("runner saw %d requests, want %d", len(reqs), i+1)
			}
			got := reqs[i]
			if got.Code != "print(1)" || string(got.Stdin) != "in" {
				t.Errorf("code %q stdin %q", got.Code, got.Stdin)
			}
			if got.Limits != c.want {
				t.Errorf("limits %+v, want %+v", got.Limits, c.want)
			}
			if !reflect.DeepEqual(got.GPUs, c.gpus) {
				t.Errorf("gpus %+v, want %+v", got.GPUs, c.gpus)
			}
		})
	}
}

// Bad input gets a 4xx JSON error naming the field, worded for people, and never
// reaches the runner.
func TestParseRefusals(t *testing.T) {
	f, url := fakeAPI(t, server.Options{MaxBodyBytes: 64 << 10, MaxCodeBytes: 16 << 10})
	type refusal struct {
		name, path, body string
		code             int
		field, msg       string // msg: a part of the error message
	}
	cases := []refusal{
		{"trailing brackets", "/v1/execute", `{"code":"print(1)"}]]]`, 400, "", "unexpected data after the JSON object at byte 19"},
		{"second object", "/v1/execute", `{"code":"1"} {"code":"2"}`, 400, "", "unexpected data after the JSON object"},
		{"trailing word", "/v1/execute", `{"code":"1"}x`, 400, "", "unexpected data after the JSON object"},
		{"trailing data on a seed", "/submit_code", `{"code":"1"},`, 400, "", "unexpected data after the JSON object"},
		{"top-level array", "/v1/execute", `[{"code":"1"}]`, 400, "", "the request body must be a JSON object"},
		{"top-level string", "/execute", `"print(1)"`, 400, "", "the request body must be a JSON object"},
		{"top-level null", "/submit_code", `null`, 400, "", "the request body must be a JSON object"},
		{"duplicate key", "/v1/execute", `{"code":"1","code":"2"}`, 400, "code", "code: appears more than once"},
		{"duplicate limit", "/v1/execute", `{"code":"1","limits":{"pids":8,"pids":900}}`, 400, "limits.pids", "limits.pids: appears more than once"},
		{"duplicate in an array", "/v1/execute", `{"code":"1","limits":{"gpus":[{"a":1,"a":2}]}}`, 400, "limits.gpus[0].a", "appears more than once"},
		{"duplicate seed resource", "/execute", `{"code":"1","resources":{"ram":"1GB","ram":"16MB"}}`, 400, "resources.ram", "appears more than once"},
		{"duplicate unknown key on a seed", "/submit_code", `{"code":"1","x":1,"x":2}`, 400, "x", "appears more than once"},
		{"code a number", "/v1/execute", `{"code": 42}`, 400, "code", "code: must be a string, not a number"},
		{"limits a number", "/v1/execute", `{"code": "1", "limits": 5}`, 400, "limits", "limits: must be an object, not a number"},
		{"stdin an array", "/v1/execute", `{"code": "1", "stdin": [1]}`, 400, "stdin", "stdin: must be a string, not an array"},
		{"pids a boolean", "/v1/execute", `{"code": "1", "limits": {"pids": true}}`, 400, "limits.pids", "limits.pids: must be a number or a string, not a boolean"},
		{"memory an object", "/v1/execute", `{"code": "1", "limits": {"memory": {}}}`, 400, "limits.memory", "not an object"},
		{"seed code a number", "/submit_code", `{"code": 1}`, 400, "code", "code: must be a string, not a number"},
		{"seed resources a string", "/execute", `{"code": "1", "resources": "big"}`, 400, "resources", "resources: must be an object, not a string"},
		{"unknown field", "/v1/execute", `{"code": "1", "cod": "2"}`, 400, "", `unknown field "cod"`},
		{"unknown limit", "/v1/execute", `{"code": "1", "limits": {"ram": "1GB"}}`, 400, "", `unknown field "ram"`},
		{"malformed", "/v1/execute", `{"code": "print(1)"`, 400, "", "truncated"},
		{"bad token", "/v1/execute", `{"code": 'x'}`, 400, "", "malformed JSON at byte"},
		{"empty", "/v1/execute", ``, 400, "", "empty"},
		{"missing code", "/v1/execute", `{"stdin": "x"}`, 400, "code", "code: is required"},
		{"bad unit", "/v1/execute", `{"code": "1", "limits": {"memory": "12 parsecs"}}`, 400, "limits.memory", "cannot parse size"},
		{"bad duration", "/v1/execute", `{"code": "1", "limits": {"timeout": "soon"}}`, 400, "limits.timeout", "cannot parse duration"},
		{"fractional count", "/v1/execute", `{"code": "1", "limits": {"pids": 2.5}}`, 400, "limits.pids", "whole number"},
		{"fractional bytes", "/v1/execute", `{"code": "1", "limits": {"memory": 1.5}}`, 400, "limits.memory", "whole number of bytes"},
		{"not a number", "/v1/execute", `{"code": "1", "limits": {"cpus": "many"}}`, 400, "limits.cpus", "cannot parse CPUs"},
		{"NaN cpus", "/v1/execute", `{"code": "1", "limits": {"cpus": "NaN"}}`, 400, "limits.cpus", "cannot parse CPUs"},
		{"huge number", "/v1/execute", `{"code": "1", "limits": {"pids": 1e400}}`, 400, "limits.pids", "not a valid number"},
		{"far too long", "/v1/execute", `{"code": "1", "limits": {"timeout": 1e9}}`, 400, "limits.timeout", "far too long"},
		{"negative gpus", "/v1/execute", `{"code": "1", "limits": {"gpus": -1}}`, 400, "limits.gpus", "count"},
		{"negative gpu index", "/v1/execute", `{"code": "1", "limits": {"gpus": [-1]}}`, 400, "limits.gpus[0]", "UUID or index"},
		{"negative gpu_wait", "/v1/execute", `{"code": "1", "limits": {"gpus": 1, "gpu_wait": -1}}`, 400, "limits.gpu_wait", "must not be negative"},
		{"empty gpu list", "/v1/execute", `{"code": "1", "limits": {"gpus": []}}`, 400, "limits.gpus", "empty list"},
		{"mixed gpu list", "/v1/execute", `{"code": "1", "limits": {"gpus": ["GPU-a", 1]}}`, 400, "limits.gpus", "mixes"},
		{"seed bad ram", "/execute", `{"code": "1", "resources": {"ram": "lots"}}`, 400, "resources.ram", "resources.ram: cannot parse size"},
		{"seed ram 0", "/execute", `{"code": "1", "resources": {"ram": "0"}}`, 400, "resources.ram", "resources.ram: must be greater than 0"},
		{"seed cpu negative", "/execute", `{"code": "1", "resources": {"cpu": "-2"}}`, 400, "resources.cpu", "resources.cpu: must not be negative"},
		{"seed gpu negative", "/execute", `{"code": "1", "resources": {"gpu": "-1"}}`, 400, "resources.gpu", "resources.gpu: must not be negative"},
		{"seed bad task", "/execute", `{"task_type": "train_model", "code": "1"}`, 400, "task_type", "not supported"},
		{"seed missing code", "/submit_code", `{}`, 400, "code", "code: is required"},
		{"code too big", "/v1/execute", `{"code": "` + strings.Repeat("#", 20<<10) + `"}`, 413, "code", "code: exceeds 16384 bytes"},
		{"body too big", "/v1/execute", `{"code": "` + strings.Repeat("#", 70<<10) + `"}`, 413, "", "request body exceeds 65536 bytes"},
		{"body too big on a seed", "/execute", `{"code": "` + strings.Repeat("#", 70<<10) + `"}`, 413, "", "request body exceeds 65536 bytes"},
		{"nested too deep", "/submit_code", `{"code": "1", "x": ` + strings.Repeat("[", 32) + strings.Repeat("]", 32) + `}`, 400, "", "nested deeper than 32 levels"},
		{"deep array", "/v1/execute", strings.Repeat("[", 100) + strings.Repeat("]", 100), 400, "", "nested deeper than 32 levels"},
		{"deep in a string is fine, trailing data is not", "/v1/execute", `{"code": "` + strings.Repeat("[", 100) + `"}]`, 400, "", "unexpected data"},
	}
	// Every limit: 0 and negative are refused, naming the field (omitting it is the default).
	for _, l := range []string{"cpus", "cpu_time", "memory", "storage", "pids", "timeout", "open_files", "file_size", "stack",
		"io_read_bps", "io_write_bps", "io_read_iops", "io_write_iops", "io_weight"} {
		cases = append(cases,
			refusal{l + " 0", "/v1/execute", `{"code": "1", "limits": {"` + l + `": 0}}`, 400, "limits." + l, "limits." + l + ": must be greater than 0 (omit it for the default)"},
			refusal{l + ` "0"`, "/v1/execute", `{"code": "1", "limits": {"` + l + `": "0"}}`, 400, "limits." + l, "must be greater than 0"},
			refusal{l + " negative", "/v1/execute", `{"code": "1", "limits": {"` + l + `": -1}}`, 400, "limits." + l, "limits." + l + ": must "},
		)
	}
	for _, s := range []string{"cpu", "ram", "storage"} {
		cases = append(cases, refusal{"seed " + s + " 0", "/execute", `{"code": "1", "resources": {"` + s + `": 0}}`, 400, "resources." + s, "resources." + s + ": must be greater than 0"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := len(f.requests())
			code, _, r := send(t, "POST", url+c.path, c.body)
			if code != c.code {
				t.Errorf("HTTP %d, want %d: %v", code, c.code, r)
			}
			msg, _ := r["error"].(string)
			if !strings.Contains(msg, c.msg) {
				t.Errorf("error %q, want it to say %q", msg, c.msg)
			}
			if strings.Contains(msg, "json:") || strings.Contains(msg, "struct") || strings.Contains(msg, "Go ") {
				t.Errorf("error %q speaks Go, not to a person", msg)
			}
			if got, _ := r["field"].(string); got != c.field {
				t.Errorf("field %q, want %q (%s)", got, c.field, msg)
			}
			if n := len(f.requests()); n != before {
				t.Errorf("a refused request reached the runner")
			}
		})
	}
	// Whitespace after the object is not trailing data.
	if code, _, r := send(t, "POST", url+"/v1/execute", " {\"code\": \"1\"} \r\n\t "); code != 200 {
		t.Errorf("whitespace around the body: HTTP %d %v", code, r)
	}
	// 32 levels is the maximum, not past it.
	if code, _, r := send(t, "POST", url+"/submit_code", `{"code": "1", "x": `+strings.Repeat("[", 31)+strings.Repeat("]", 31)+`}`); code != 200 {
		t.Errorf("32 levels: HTTP %d %v", code, r)
	}
}

// The seed endpoints map their fields onto the engine's, and the engine's refusals come
// back in the seed's own field names.
func TestParseSeedFields(t *testing.T) {
	f, url := fakeAPI(t, server.Options{})
	p := sandbox.DefaultPolicy()
	f.policy = &p
	f.result = canned(sandbox.StatusOK, 0, "out\n", "err\n")

	// The README's example, as the seed documents it.
	code, _, r := send(t, "POST", url+"/execute", `{"task_type": "execute_code", "code": "print('Hello, World!')",
		"resources": {"cpu": "2", "gpu": "0", "ram": "512MB", "storage": "1GB"}}`)
	if code != 200 {
		t.Fatalf("HTTP %d: %v", code, r)
	}
	jsonEqual(t, r, `{"output": "out\nerr\n"}`)
	got := f.requests()[0]
	if want := (sandbox.Limits{CPUs: 2, Memory: 512 << 20, Storage: 1 << 30}); got.Code != "print('Hello, World!')" || got.Limits != want || !reflect.DeepEqual(got.GPUs, gpu.Request{}) {
		t.Errorf("request %+v, want the code, limits %+v and no GPUs", got, want)
	}
	if code, _, r := send(t, "POST", url+"/execute", `{"code": "1", "resources": {"gpu": 2}}`); code != 200 || f.requests()[1].GPUs.Count != 2 {
		t.Errorf("gpu 2: HTTP %d %v, request %+v", code, r, f.requests()[1])
	}

	for _, c := range []struct{ name, resources, field string }{
		{"ram below the floor", `{"ram": "1MB"}`, "resources.ram"},
		{"ram above the maximum", `{"ram": "100GB"}`, "resources.ram"},
		{"cpu below the floor", `{"cpu": "0.001"}`, "resources.cpu"},
		{"cpu above the maximum", `{"cpu": 64}`, "resources.cpu"},
		{"storage above the maximum", `{"storage": "100GB"}`, "resources.storage"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, r := send(t, "POST", url+"/execute", `{"code": "1", "resources": `+c.resources+`}`)
			msg, _ := r["error"].(string)
			if code != 400 || r["field"] != c.field || !strings.HasPrefix(msg, c.field+": ") || strings.Contains(msg, "limits.") {
				t.Errorf("HTTP %d %v: want 400 naming %s in the seed's terms", code, r, c.field)
			}
		})
	}
	// The same refusal on /v1 names /v1's field.
	if code, _, r := send(t, "POST", url+"/v1/execute", `{"code": "1", "limits": {"memory": "1MB"}}`); code != 400 || r["field"] != "limits.memory" {
		t.Errorf("/v1 memory 1MB: HTTP %d %v", code, r)
	}

	// /submit_code's answer is the seed's shape, from the runner's result.
	f.policy = nil
	f.result = canned(sandbox.StatusError, 1, "before\n", "Traceback:\nValueError: bad\n")
	code, _, r = send(t, "POST", url+"/submit_code", `{"code": "raise ValueError('bad')"}`)
	if code != 200 {
		t.Fatalf("HTTP %d: %v", code, r)
	}
	jsonEqual(t, r, `{"status": "failure", "output": "before\n", "error": "ValueError: bad", "return_code": 1, "timeout": false}`)
}

// A known path with the wrong method gets 405 with Allow; an unknown path 404; both JSON.
func TestMethodNotAllowed(t *testing.T) {
	srv := server.New(&fakeRunner{}, server.Options{})
	(&server.Admin{}).Register(srv)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	for _, c := range []struct {
		method, path string
		code         int
		allow        string
	}{
		{"GET", "/v1/execute", 405, "POST"},
		{"PUT", "/execute", 405, "POST"},
		{"GET", "/submit_code", 405, "POST"},
		{"POST", "/healthz", 405, "GET, HEAD"},
		{"DELETE", "/v1/gpus", 405, "GET, HEAD"},
		{"GET", "/v1/admin/drain", 405, "POST"},
		{"POST", "/v1/admin/jobs/sbx-1", 404, ""},
		{"GET", "/v2/execute", 404, ""},
		{"POST", "/", 404, ""},
		{"GET", "/v1/execute/more", 404, ""},
	} {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			code, h, r := send(t, c.method, ts.URL+c.path, "")
			if code != c.code {
				t.Errorf("HTTP %d, want %d: %v", code, c.code, r)
			}
			if got := h.Get("Allow"); got != c.allow {
				t.Errorf("Allow %q, want %q", got, c.allow)
			}
			msg, _ := r["error"].(string)
			if !strings.Contains(msg, c.method+" ") || !strings.Contains(msg, c.path) {
				t.Errorf("error %q does not say what was asked", msg)
			}
			if len(r) != 1 {
				t.Errorf("answer %v is not the API's {\"error\": ...}", r)
			}
		})
	}
	// The right method still reaches its handler.
	if code, _, r := send(t, "GET", ts.URL+"/healthz", ""); code != 200 || r["status"] != "ok" {
		t.Errorf("GET /healthz: %d %v", code, r)
	}
}
