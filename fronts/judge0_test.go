package fronts_test

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// j0 calls the Judge0 front with the configured X-Auth-Token.
func j0(t *testing.T, method, path string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			r = strings.NewReader(b)
		default:
			data, err := json.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			r = bytes.NewReader(data)
		}
	}
	return do(t, method, daemonURL+path, r, "X-Auth-Token", judge0Token, "Content-Type", "application/json")
}

func j0JSON(t *testing.T, method, path string, body any, wantStatus int, v any) {
	t.Helper()
	code, b := j0(t, method, path, body)
	if code != wantStatus {
		t.Fatalf("%s %s: %d %s, want %d", method, path, code, b, wantStatus)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

func needPython(t *testing.T) {
	t.Helper()
	need(t)
	if _, ok := installed("python"); !ok {
		t.Skip("python is not installed")
	}
}

// sameJSON compares a body with the JSON Judge0's docs show.
func sameJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%v: %s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

// poll waits for a token's submission to leave In Queue and Processing.
func poll(t *testing.T, token, query string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var s map[string]any
		j0JSON(t, "GET", "/submissions/"+token+query, nil, http.StatusOK, &s)
		if st, ok := s["status"].(map[string]any); !ok || st["id"].(float64) > 2 {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("submission %s still pending: %v", token, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const pyHello = "name = input()\nprint(f'hello, {name}')\n"

// TestJudge0DocExamples replays every request and response example in Judge0's API
// docs (docs/api/**), with Judge0 CE's Python (71) in place of the examples' C (4,
// an id CE no longer has) where the example is about the request, not the language.
func TestJudge0DocExamples(t *testing.T) {
	needPython(t)
	var token string
	t.Run("create: token", func(t *testing.T) {
		var r map[string]string
		j0JSON(t, "POST", "/submissions", map[string]any{"source_code": pyHello, "language_id": 71, "stdin": "world"}, http.StatusCreated, &r)
		if len(r) != 1 || r["token"] == "" {
			t.Fatalf("%v, want {token}", r)
		}
		token = r["token"]
	})
	t.Run("create: language_id can't be blank", func(t *testing.T) {
		code, b := j0(t, "POST", "/submissions", map[string]any{"source_code": pyHello})
		if code != http.StatusUnprocessableEntity {
			t.Fatalf("%d", code)
		}
		sameJSON(t, b, `{"language_id": ["can't be blank"]}`)
	})
	t.Run("create: language doesn't exist", func(t *testing.T) {
		code, b := j0(t, "POST", "/submissions", map[string]any{"source_code": pyHello, "language_id": 150000, "stdin": "world", "expected_output": "hello, world"})
		if code != http.StatusUnprocessableEntity {
			t.Fatalf("%d", code)
		}
		sameJSON(t, b, `{"language_id": ["language with id 150000 doesn't exist"]}`)
	})
	t.Run("create: wall_time_limit above the maximum", func(t *testing.T) {
		var cfg map[string]any
		j0JSON(t, "GET", "/config_info", nil, http.StatusOK, &cfg)
		code, b := j0(t, "POST", "/submissions", map[string]any{
			"source_code": pyHello, "language_id": 71, "number_of_runs": 1, "stdin": "Judge0", "expected_output": "hello, Judge0",
			"cpu_time_limit": 1, "cpu_extra_time": 0.5, "wall_time_limit": 100000, "memory_limit": 128000, "stack_limit": 128000,
			"enable_per_process_and_thread_time_limit": false, "enable_per_process_and_thread_memory_limit": false, "max_file_size": 1024,
		})
		if code != http.StatusUnprocessableEntity {
			t.Fatalf("%d %s", code, b)
		}
		sameJSON(t, b, fmt.Sprintf(`{"wall_time_limit": ["must be less than or equal to %v"]}`, cfg["max_wall_time_limit"]))
	})
	t.Run("create: base64 source", func(t *testing.T) {
		var r map[string]string
		// The docs send "input" (not an attribute: Rails drops it) beside base64 code.
		j0JSON(t, "POST", "/submissions?base64_encoded=true", map[string]any{
			"source_code": base64.StdEncoding.EncodeToString([]byte("print('hi')")), "language_id": 71, "input": "SnVkZ2Uw",
		}, http.StatusCreated, &r)
		if r["token"] == "" {
			t.Fatalf("%v", r)
		}
		s := poll(t, r["token"], "")
		if s["stdout"] != "hi\n" {
			t.Errorf("%v", s)
		}
	})
	t.Run("create: wait with output that is not UTF-8", func(t *testing.T) {
		var r map[string]string
		j0JSON(t, "POST", "/submissions?wait=true", map[string]any{"language_id": 71,
			"source_code": "import sys\nsys.stdout.buffer.write(b'\\xfe')\n"}, http.StatusCreated, &r)
		if r["token"] == "" || r["error"] != "some attributes for this submission cannot be converted to UTF-8, use base64_encoded=true query parameter" {
			t.Fatalf("%v", r)
		}
		// Get a Submission: 400 without base64, the bytes with it.
		code, b := j0(t, "GET", "/submissions/"+r["token"], nil)
		if code != http.StatusBadRequest {
			t.Errorf("GET: %d %s", code, b)
		}
		sameJSON(t, b, `{"error": "some attributes for this submission cannot be converted to UTF-8, use base64_encoded=true query parameter"}`)
		var s map[string]any
		j0JSON(t, "GET", "/submissions/"+r["token"]+"?base64_encoded=true", nil, http.StatusOK, &s)
		if s["stdout"] != "/g==\n" {
			t.Errorf("stdout %v, want Ruby's encode64 of 0xfe", s["stdout"])
		}
	})
	t.Run("create: wait, Accepted", func(t *testing.T) {
		var s map[string]any
		j0JSON(t, "POST", "/submissions?wait=true", map[string]any{"source_code": pyHello, "language_id": "71", "stdin": "Judge0", "expected_output": "hello, Judge0"},
			http.StatusCreated, &s)
		keys := sortedKeys(s)
		if want := []string{"compile_output", "memory", "message", "status", "stderr", "stdout", "time", "token"}; !reflect.DeepEqual(keys, want) {
			t.Errorf("fields %v, want %v", keys, want)
		}
		if s["stdout"] != "hello, Judge0\n" || s["stderr"] != nil || s["compile_output"] != nil || s["message"] != nil {
			t.Errorf("%v", s)
		}
		if st := s["status"].(map[string]any); st["id"] != float64(3) || st["description"] != "Accepted" {
			t.Errorf("status %v", st)
		}
		if _, ok := s["time"].(string); !ok {
			t.Errorf("time %v is not a decimal string", s["time"])
		}
		if m, ok := s["memory"].(float64); !ok || m <= 0 {
			t.Errorf("memory %v", s["memory"])
		}
	})
	t.Run("get: fields", func(t *testing.T) {
		poll(t, token, "")
		var s map[string]any
		j0JSON(t, "GET", "/submissions/"+token+"?fields=stdout,stderr,status_id,language_id", nil, http.StatusOK, &s)
		sameJSON(t, mustJSON(s), `{"stdout": "hello, world\n", "status_id": 3, "language_id": 71, "stderr": null}`)
	})
	t.Run("get: default and base64", func(t *testing.T) {
		var s map[string]any
		j0JSON(t, "POST", "/submissions?wait=true", map[string]any{"source_code": pyHello, "language_id": 71, "stdin": "Judge0"}, http.StatusCreated, &s)
		var g map[string]any
		j0JSON(t, "GET", "/submissions/"+s["token"].(string)+"?base64_encoded=true", nil, http.StatusOK, &g)
		if g["stdout"] != "aGVsbG8sIEp1ZGdlMAo=\n" || len(g) != 8 {
			t.Errorf("%v, want the docs' base64 stdout and 8 fields", g)
		}
	})
	t.Run("get: invalid fields", func(t *testing.T) {
		code, b := j0(t, "GET", "/submissions/"+token+"?fields=stdout,nope,zilch", nil)
		if code != http.StatusBadRequest {
			t.Errorf("%d", code)
		}
		sameJSON(t, b, `{"error": "invalid fields: [nope, zilch]"}`)
	})
	t.Run("batch", func(t *testing.T) {
		subs := []map[string]any{{"language_id": 71, "source_code": "print(\"hello from Python\")"}}
		if _, ok := installed("bash"); ok {
			subs = append([]map[string]any{{"language_id": 46, "source_code": "echo hello from Bash"}}, subs...)
		}
		if _, ok := installed("ruby"); ok {
			subs = append(subs, map[string]any{"language_id": 72, "source_code": "puts(\"hello from Ruby\")"})
		}
		var created []map[string]string
		j0JSON(t, "POST", "/submissions/batch", map[string]any{"submissions": subs}, http.StatusCreated, &created)
		var tokens []string
		for _, c := range created {
			tokens = append(tokens, c["token"])
		}
		for _, tok := range tokens {
			poll(t, tok, "")
		}
		var got struct {
			Submissions []map[string]any `json:"submissions"`
		}
		j0JSON(t, "GET", "/submissions/batch?tokens="+strings.Join(tokens, ",")+"&fields=token,stdout,stderr,status_id,language_id", nil, http.StatusOK, &got)
		for i, s := range got.Submissions {
			lang := map[float64]string{46: "Bash", 71: "Python", 72: "Ruby"}[s["language_id"].(float64)]
			if s["stdout"] != "hello from "+lang+"\n" || s["status_id"] != float64(3) || s["token"] != tokens[i] || s["stderr"] != nil || len(s) != 5 {
				t.Errorf("submission %d: %v", i, s)
			}
		}
		// The docs' mixed batch: a good one, an unknown language, a blank source.
		code, b := j0(t, "POST", "/submissions/batch", map[string]any{"submissions": []map[string]any{
			{"language_id": 71, "source_code": "print(1)"},
			{"language_id": 123456789, "source_code": "print(\"hello from Python\")"},
			{"language_id": 71, "source_code": ""},
		}})
		var mixed []map[string]any
		if code != http.StatusCreated || json.Unmarshal(b, &mixed) != nil || len(mixed) != 3 || mixed[0]["token"] == nil {
			t.Fatalf("%d %s", code, b)
		}
		sameJSON(t, mustJSON(mixed[1]), `{"language_id": ["language with id 123456789 doesn't exist"]}`)
		sameJSON(t, mustJSON(mixed[2]), `{"source_code": ["can't be blank"]}`)
	})
	t.Run("languages", func(t *testing.T) {
		var l map[string]any
		j0JSON(t, "GET", "/languages/71", nil, http.StatusOK, &l)
		rt, _ := installed("python")
		if l["id"] != float64(71) || l["name"] != "Python ("+rt.Version+")" || l["is_archived"] != false || l["source_file"] == nil {
			t.Errorf("%v", l)
		}
		for _, k := range []string{"compile_cmd", "run_cmd"} {
			if _, ok := l[k]; !ok {
				t.Errorf("no %s", k)
			}
		}
		var list []map[string]any
		j0JSON(t, "GET", "/languages", nil, http.StatusOK, &list)
		for _, l := range list {
			if len(l) != 2 || l["id"] == nil || l["name"] == nil {
				t.Errorf("languages entry %v, want {id, name}", l)
			}
		}
		if len(list) == 0 {
			t.Error("no languages")
		}
		j0JSON(t, "GET", "/languages/all", nil, http.StatusOK, &list)
		for _, l := range list {
			if l["is_archived"] != false {
				t.Errorf("languages/all entry %v", l)
			}
		}
		if code, _ := j0(t, "GET", "/languages/4", nil); code != http.StatusNotFound {
			t.Errorf("/languages/4: %d", code)
		}
	})
	t.Run("statuses", func(t *testing.T) {
		code, b := j0(t, "GET", "/statuses", nil)
		if code != http.StatusOK {
			t.Fatal(code)
		}
		sameJSON(t, b, `[{"id":1,"description":"In Queue"},{"id":2,"description":"Processing"},{"id":3,"description":"Accepted"},
			{"id":4,"description":"Wrong Answer"},{"id":5,"description":"Time Limit Exceeded"},{"id":6,"description":"Compilation Error"},
			{"id":7,"description":"Runtime Error (SIGSEGV)"},{"id":8,"description":"Runtime Error (SIGXFSZ)"},
			{"id":9,"description":"Runtime Error (SIGFPE)"},{"id":10,"description":"Runtime Error (SIGABRT)"},
			{"id":11,"description":"Runtime Error (NZEC)"},{"id":12,"description":"Runtime Error (Other)"},
			{"id":13,"description":"Internal Error"},{"id":14,"description":"Exec Format Error"}]`)
	})
	t.Run("config_info, about, version", func(t *testing.T) {
		var cfg map[string]any
		j0JSON(t, "GET", "/config_info", nil, http.StatusOK, &cfg)
		for _, k := range []string{"enable_wait_result", "enable_compiler_options", "allowed_languages_for_compile_options",
			"enable_command_line_arguments", "enable_submission_delete", "max_queue_size", "cpu_time_limit", "cpu_extra_time",
			"wall_time_limit", "memory_limit", "stack_limit", "max_processes_and_or_threads",
			"enable_per_process_and_thread_time_limit", "enable_per_process_and_thread_memory_limit", "max_file_size",
			"allow_enable_network", "enable_network", "number_of_runs"} {
			if _, ok := cfg[k]; !ok {
				t.Errorf("config_info has no %s", k)
			}
		}
		var about map[string]any
		j0JSON(t, "GET", "/about", nil, http.StatusOK, &about)
		for _, k := range []string{"version", "homepage", "source_code", "maintainer"} {
			if _, ok := about[k]; !ok {
				t.Errorf("about has no %s", k)
			}
		}
		if code, b := j0(t, "GET", "/version", nil); code != http.StatusOK || string(b) != about["version"] {
			t.Errorf("/version: %d %q", code, b)
		}
	})
	t.Run("unauthenticated", func(t *testing.T) {
		for _, hdr := range [][]string{nil, {"X-Auth-Token", "wrong"}} {
			code, b := do(t, "GET", daemonURL+"/languages", nil, hdr...)
			if code != http.StatusUnauthorized || len(b) != 0 {
				t.Errorf("token %v: %d %q, want 401 with no body", hdr, code, b)
			}
		}
	})
}

func sortedKeys(m map[string]any) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	sort.Strings(k)
	return k
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// TestJudge0Verdicts sends a batch of 20 with mixed verdicts and polls them.
func TestJudge0Verdicts(t *testing.T) {
	needPython(t)
	py := func(code string, extra ...any) map[string]any {
		s := map[string]any{"language_id": 71, "source_code": code}
		for i := 0; i+1 < len(extra); i += 2 {
			s[extra[i].(string)] = extra[i+1]
		}
		return s
	}
	kill := func(sig string) string { return "import os, signal\nos.kill(os.getpid(), signal." + sig + ")\n" }
	cases := []struct {
		sub    map[string]any
		status int
		check  func(t *testing.T, s map[string]any)
	}{
		{py("print('a')", "expected_output", "a"), 3, nil},
		{py("print('a  ')\nprint()", "expected_output", "a\n"), 3, nil},
		{py("print('b')", "expected_output", "a"), 4, nil},
		{py("print(input()[::-1])", "stdin", "abc", "expected_output", "cba"), 3, nil},
		{py("while True: pass", "cpu_time_limit", 0.5, "cpu_extra_time", 0.2), 5, nil},
		{py("import time\ntime.sleep(3)", "wall_time_limit", 1), 5, nil},
		{py("import sys\nsys.exit(3)"), 11, func(t *testing.T, s map[string]any) {
			if s["exit_code"] != float64(3) || s["message"] != "Exited with error status 3" {
				t.Errorf("%v", s)
			}
		}},
		{py("raise ValueError('x')"), 11, func(t *testing.T, s map[string]any) {
			if !strings.Contains(fmt.Sprint(s["stderr"]), "ValueError") {
				t.Errorf("stderr %v", s["stderr"])
			}
		}},
		{py(kill("SIGSEGV")), 7, func(t *testing.T, s map[string]any) {
			if s["exit_signal"] != float64(11) {
				t.Errorf("exit_signal %v", s["exit_signal"])
			}
		}},
		// Python ignores SIGXFSZ; with the default action back, the file size limit kills.
		{py("import signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_DFL)\n" + kill("SIGXFSZ")), 8, nil},
		{py("import signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_DFL)\nf = open('big', 'wb')\nf.write(b'x' * 4096)\nf.close()", "max_file_size", 1), 8, nil},
		{py(kill("SIGFPE")), 9, nil},
		{py("import os\nos.abort()"), 10, nil},
		{py(kill("SIGKILL")), 12, nil},
		{py(kill("SIGUSR1")), 12, nil},
		{py("x = bytearray(400 << 20)", "memory_limit", 65536), 12, nil},
		{py("import sys\nprint(sys.argv[1:])", "command_line_arguments", "a 'b c' d;rm", "expected_output", "['a', 'b c', 'drm']"), 3, nil},
		{py("print('run')", "number_of_runs", 3, "expected_output", "run"), 3, nil},
		{py("print(1/0)"), 11, nil},
		// More CPU time than a warm container's rlimits allow: the job runs cold, not
		// as an internal error.
		{py("print('ok')", "cpu_time_limit", 20, "expected_output", "ok"), 3, nil},
	}
	if len(cases) != 20 {
		t.Fatalf("%d cases, want a batch of 20", len(cases))
	}
	var subs []map[string]any
	for _, c := range cases {
		subs = append(subs, c.sub)
	}
	var created []map[string]any
	j0JSON(t, "POST", "/submissions/batch", map[string]any{"submissions": subs}, http.StatusCreated, &created)
	for i, c := range cases {
		tok, _ := created[i]["token"].(string)
		if tok == "" {
			t.Errorf("case %d refused: %v", i, created[i])
			continue
		}
		s := poll(t, tok, "?fields=*")
		if st := s["status"].(map[string]any); st["id"] != float64(c.status) {
			t.Errorf("case %d (%s): status %v, want %d; %v", i, c.sub["source_code"], st, c.status, s)
			continue
		}
		if c.check != nil {
			c.check(t, s)
		}
	}
}

// TestJudge0Fields checks fields=*, base64 round trips, additional_files and limits.
func TestJudge0Fields(t *testing.T) {
	needPython(t)
	t.Run("fields=*", func(t *testing.T) {
		var s map[string]any
		j0JSON(t, "POST", "/submissions?wait=true&fields=*", map[string]any{"language_id": 71, "source_code": "print('x')",
			"cpu_time_limit": 2, "memory_limit": 256000}, http.StatusCreated, &s)
		if len(s) != 40 {
			t.Errorf("%d fields, want all 40: %v", len(s), sortedKeys(s))
		}
		if s["cpu_time_limit"] != "2.0" || s["memory_limit"] != float64(256000) || s["language"].(map[string]any)["id"] != float64(71) ||
			s["status_id"] != float64(3) || s["finished_at"] == nil || s["created_at"] == nil || s["wall_time"] == nil {
			t.Errorf("%v", s)
		}
	})
	t.Run("base64 round trip", func(t *testing.T) {
		enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
		code := "import sys\ndata = sys.stdin.buffer.read()\nsys.stdout.buffer.write(bytes(reversed(data)))\nsys.stderr.buffer.write(b'\\xff\\x00err')\n"
		stdin := "\x00\x01\xfe\xffend"
		var s map[string]any
		j0JSON(t, "POST", "/submissions?base64_encoded=true&wait=true&fields=stdout,stderr,stdin,source_code,status,expected_output",
			map[string]any{"language_id": 71, "source_code": enc(code), "stdin": enc(stdin), "expected_output": enc("dne\xff\xfe\x01\x00")},
			http.StatusCreated, &s)
		dec := func(k string) string {
			b, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(s[k].(string), "\n", ""))
			if err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			return string(b)
		}
		if dec("stdout") != "dne\xff\xfe\x01\x00" || dec("stderr") != "\xff\x00err" || dec("stdin") != stdin || dec("source_code") != code {
			t.Errorf("%v", s)
		}
		if s["status"].(map[string]any)["id"] != float64(3) {
			t.Errorf("status %v", s["status"])
		}
	})
	t.Run("additional_files", func(t *testing.T) {
		var zbuf bytes.Buffer
		zw := zip.NewWriter(&zbuf)
		w, _ := zw.Create("helper.py")
		io.WriteString(w, "VALUE = 'from the zip'\n")
		w, _ = zw.Create("data/input.txt")
		io.WriteString(w, "zipped data\n")
		zw.Close()
		var s map[string]any
		j0JSON(t, "POST", "/submissions?wait=true", map[string]any{"language_id": 71,
			"source_code":      "import helper\nprint(helper.VALUE, open('data/input.txt').read().strip())",
			"additional_files": base64.StdEncoding.EncodeToString(zbuf.Bytes())}, http.StatusCreated, &s)
		if s["stdout"] != "from the zip zipped data\n" {
			t.Errorf("%v", s)
		}
		// A zip whose name climbs out of the working directory is refused.
		zbuf.Reset()
		zw = zip.NewWriter(&zbuf)
		w, _ = zw.Create("../escape.py")
		io.WriteString(w, "x")
		zw.Close()
		code, b := j0(t, "POST", "/submissions?wait=true", map[string]any{"language_id": 71, "source_code": "print(1)",
			"additional_files": base64.StdEncoding.EncodeToString(zbuf.Bytes())})
		if code != http.StatusUnprocessableEntity || !strings.Contains(string(b), "additional_files") {
			t.Errorf("%d %s", code, b)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		for _, tc := range []struct {
			body  map[string]any
			field string
		}{
			{map[string]any{"cpu_time_limit": 100000}, "cpu_time_limit"},
			{map[string]any{"memory_limit": 1 << 40}, "memory_limit"},
			{map[string]any{"memory_limit": 2048}, "memory_limit"},
			{map[string]any{"max_processes_and_or_threads": 0}, "max_processes_and_or_threads"},
			{map[string]any{"number_of_runs": 21}, "number_of_runs"},
			{map[string]any{"enable_network": true}, "enable_network"},
			{map[string]any{"compiler_options": "-O2"}, "compiler_options"},
			{map[string]any{"redirect_stderr_to_stdout": true}, "redirect_stderr_to_stdout"},
			{map[string]any{"enable_per_process_and_thread_time_limit": true}, "enable_per_process_and_thread_time_limit"},
			{map[string]any{"callback_url": "ftp://x"}, "callback_url"},
			{map[string]any{"callback_url": "http://example.com/x"}, "callback_url"}, // off host, not allowed by default
			{map[string]any{"additional_files": "not base64!"}, "additional_files"},
			{map[string]any{"wall_time_limit": "soon"}, "wall_time_limit"},
		} {
			body := map[string]any{"language_id": 71, "source_code": "print(1)"}
			for k, v := range tc.body {
				body[k] = v
			}
			code, b := j0(t, "POST", "/submissions?wait=true", body)
			var e map[string][]string
			if code != http.StatusUnprocessableEntity || json.Unmarshal(b, &e) != nil || len(e[tc.field]) == 0 {
				t.Errorf("%v: %d %s, want 422 naming %s", tc.body, code, b, tc.field)
			}
		}
	})
}

// TestJudge0Callback checks the callback: a PUT of the finished submission, base64,
// to a loopback server.
func TestJudge0Callback(t *testing.T) {
	needPython(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	type call struct {
		method string
		body   []byte
	}
	got := make(chan call, 4)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- call{r.Method, b}
	})}
	go srv.Serve(ln)
	defer srv.Close()
	var created map[string]string
	j0JSON(t, "POST", "/submissions", map[string]any{"language_id": 71, "source_code": "print('called back')",
		"callback_url": "http://" + ln.Addr().String() + "/judge0"}, http.StatusCreated, &created)
	select {
	case c := <-got:
		var s map[string]any
		if c.method != http.MethodPut || json.Unmarshal(c.body, &s) != nil {
			t.Fatalf("%s %s", c.method, c.body)
		}
		if s["token"] != created["token"] || s["stdout"] != base64.StdEncoding.EncodeToString([]byte("called back\n"))+"\n" ||
			s["status"].(map[string]any)["id"] != float64(3) || len(s) != 8 {
			t.Errorf("callback body %s", c.body)
		}
	case <-time.After(time.Minute):
		t.Fatal("no callback within a minute")
	}
}

// judge0IDs are Judge0 CE's language ids for the runtimes sandboxd ships.
var judge0IDs = map[string]int{"bash": 46, "c": 50, "c++": 54, "go": 60, "java": 62, "javascript": 63,
	"python": 71, "ruby": 72, "rust": 73, "typescript": 74}

// TestJudge0Languages runs the hello program of every installed runtime through its
// Judge0 CE id, and checks /languages lists exactly those.
func TestJudge0Languages(t *testing.T) {
	need(t)
	var list []map[string]any
	j0JSON(t, "GET", "/languages", nil, http.StatusOK, &list)
	listed := map[int]string{}
	for _, l := range list {
		listed[int(l["id"].(float64))] = l["name"].(string)
	}
	var subs []map[string]any
	var want []string
	for _, rt := range runtimes {
		name, code, ok := helloFor(rt)
		id, known := judge0IDs[name]
		if !ok || !known {
			t.Errorf("runtime %s has no Judge0 id or hello program in this test", rt.Name)
			continue
		}
		if n := listed[id]; !strings.Contains(n, rt.Version) {
			t.Errorf("language %d is %q, want %s's version %s in it", id, n, rt.Name, rt.Version)
		}
		delete(listed, id)
		subs = append(subs, map[string]any{"language_id": id, "source_code": code, "command_line_arguments": "x 'y z'",
			"expected_output": "hello from " + name + "\nx\ny z"})
		want = append(want, name)
	}
	if len(listed) > 0 {
		t.Errorf("languages listed without an installed runtime: %v", listed)
	}
	var created []map[string]any
	j0JSON(t, "POST", "/submissions/batch", map[string]any{"submissions": subs}, http.StatusCreated, &created)
	for i, c := range created {
		tok, _ := c["token"].(string)
		if tok == "" {
			t.Errorf("%s refused: %v", want[i], c)
			continue
		}
		s := poll(t, tok, "?fields=status,stdout,stderr,compile_output,language")
		if st := s["status"].(map[string]any); st["id"] != float64(3) {
			t.Errorf("%s: %v", want[i], s)
		}
	}
	t.Logf("Judge0 ran: %s", strings.Join(want, ", "))
}

// TestCompileErrors: a compile error through both fronts, for each installed compiled
// runtime (Judge0: Compilation Error with compile_output; Piston: a compile stage with
// a non-zero code, repeated as run).
func TestCompileErrors(t *testing.T) {
	need(t)
	broken := map[string]string{"c": "int main(void) { return }\n", "c++": "int main() { return }\n",
		"go": "package main\nfunc main() { x }\n", "java": "public class Main { void f( }\n",
		"rust": "fn main() { let }\n", "typescript": "const x: number = 'not a number';\n"}
	ran := 0
	for _, rt := range runtimes {
		name, _, _ := helloFor(rt)
		code, ok := broken[name]
		if !rt.Compiled || !ok {
			continue
		}
		ran++
		t.Run(name, func(t *testing.T) {
			var s map[string]any
			j0JSON(t, "POST", "/submissions?wait=true", map[string]any{"language_id": judge0IDs[name], "source_code": code},
				http.StatusCreated, &s)
			if st := s["status"].(map[string]any); st["id"] != float64(6) || s["compile_output"] == nil || s["stdout"] != nil {
				t.Errorf("judge0: %v", s)
			}
			status, b := post(t, daemonURL+"/api/v2/execute", map[string]any{"language": rt.Name, "version": rt.Version,
				"files": []map[string]any{{"content": code}}})
			var r pistonResult
			if status != http.StatusOK || json.Unmarshal(b, &r) != nil || r.Compile == nil || r.Compile.Code == nil ||
				*r.Compile.Code == 0 || r.Compile.Output == "" || r.Run.Output != r.Compile.Output {
				t.Errorf("piston: %d %s", status, b)
			}
		})
	}
	if ran == 0 {
		t.Skip("no compiled runtime is installed here (their images are missing)")
	}
}
