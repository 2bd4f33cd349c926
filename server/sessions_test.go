package server_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/api"
	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/sandbox"
	"github.com/sandboxd/sandboxd/server"
)

// call sends a request and decodes the JSON answer into out (when not nil).
func call(t *testing.T, method, url, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d, not JSON: %q", method, url, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode
}

// /v1/sessions through the real API on a real kernel: create, cells keeping state,
// rich results, an error, NDJSON streaming, files, refusals, the cap, delete.
func TestSessionsAPI(t *testing.T) {
	testenv.SkipOnSlowCPU(t, "an IPython kernel with numpy and pandas takes minutes to start")
	e := testenv.Engine(t, sandbox.Options{Sessions: sandbox.SessionOptions{Max: 2}})
	ts := httptest.NewServer(server.New(e, server.Options{Sessions: e}))
	t.Cleanup(ts.Close)
	u := ts.URL + "/v1/sessions"

	var errBody map[string]string
	if code := call(t, "POST", u, `{"ttl": "soon"}`, &errBody); code != 400 || errBody["field"] != "ttl" {
		t.Fatalf("bad ttl: %d %v", code, errBody)
	}
	if code := call(t, "POST", u, `{"limits": {"memory": "1TB"}}`, &errBody); code != 400 || errBody["field"] != "limits.memory" {
		t.Fatalf("bad memory: %d %v", code, errBody)
	}
	var sess api.Session
	code := call(t, "POST", u, `{"ttl": 60, "limits": {"timeout": 3}}`, &sess)
	if code == http.StatusNotImplemented {
		t.Skip("the test rootfs has no ipykernel (set SANDBOXD_ROOTFS to the python image with python3-ipykernel)")
	}
	if code != 201 || sess.ID == "" || sess.Status != "idle" || sess.TTL != 60 || sess.CellTimeout != 3 {
		t.Fatalf("create: %d %+v", code, sess)
	}
	su := u + "/" + sess.ID
	var cell api.CellResult
	call(t, "POST", su+"/execute", `{"code": "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2]})"}`, &cell)
	if code := call(t, "POST", su+"/execute", `{"code": "print('rows', len(df)); df"}`, &cell); code != 200 ||
		cell.Stdout != "rows 2\n" || len(cell.Results) != 1 || !strings.Contains(string(cell.Results[0].Data["text/html"]), "<table") ||
		!cell.Results[0].IsMain || cell.ExecutionCount != 2 {
		t.Fatalf("cell: %d %+v", code, cell)
	}
	call(t, "POST", su+"/execute", `{"code": "raise ValueError('nope')"}`, &cell)
	if cell.Status != "error" || cell.Error == nil || cell.Error.Name != "ValueError" || cell.Error.Value != "nope" {
		t.Fatalf("error cell: %+v", cell)
	}
	if code := call(t, "POST", su+"/execute", `{}`, &errBody); code != 400 || errBody["field"] != "code" {
		t.Fatalf("no code: %d %v", code, errBody)
	}

	// POST .../interrupt stops a sleeping cell with KeyboardInterrupt; the session goes on.
	sleeping := make(chan api.CellResult, 1)
	go func() {
		var r api.CellResult
		call(t, "POST", su+"/execute", `{"code": "import time\ntime.sleep(20)"}`, &r)
		sleeping <- r
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var now api.Session
		if call(t, "GET", su, "", &now); now.Status == "busy" || time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(200 * time.Millisecond)
	if code := call(t, "POST", su+"/interrupt", "", nil); code != 204 {
		t.Fatalf("interrupt: %d", code)
	}
	if r := <-sleeping; r.Error == nil || r.Error.Name != "KeyboardInterrupt" || r.TimedOut || r.SessionEnded != "" {
		t.Fatalf("interrupted cell: %+v", r)
	}

	// Streamed: stdout lines arrive as events, then the result.
	req, _ := http.NewRequest("POST", su+"/execute", strings.NewReader(`{"code": "import sys, time\nfor i in range(3):\n    print(i, flush=True); time.sleep(0.05)\n7*6"}`))
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	var done *api.CellResult
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var ev api.CellEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		types = append(types, ev.Type)
		if ev.Type == "done" {
			done = ev.Done
		}
	}
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "application/x-ndjson" || done == nil || done.Stdout != "0\n1\n2\n" ||
		types[0] != "stdout" || types[len(types)-2] != "result" {
		t.Fatalf("stream: %v %+v", types, done)
	}

	// Files: in, used by a cell, out, listed; confinement refused by field.
	if code := call(t, "PUT", su+"/files/in/data.csv", "a,b\n1,2\n", nil); code != 204 {
		t.Fatalf("put: %d", code)
	}
	call(t, "POST", su+"/execute", `{"code": "pd.read_csv('in/data.csv').to_csv('out.csv', index=False)"}`, &cell)
	resp, err = http.Get(su + "/files/out.csv")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "a,b\n1,2\n" {
		t.Fatalf("get: %d %q", resp.StatusCode, b)
	}
	if code := call(t, "GET", su+"/files/missing", "", &errBody); code != 404 {
		t.Fatalf("missing file: %d", code)
	}
	if code := call(t, "PUT", su+"/files/a/../../x", "x", &errBody); code != 400 && code != 404 && code != 301 {
		t.Fatalf("escape: %d %v", code, errBody)
	}
	var files api.SessionFiles
	call(t, "GET", su+"/files", "", &files)
	names := map[string]string{}
	for _, f := range files.Files {
		names[f.Name] = f.Type
	}
	if names["in"] != "dir" || names["in/data.csv"] != "file" || names["out.csv"] != "file" {
		t.Fatalf("list: %+v", files)
	}

	// The cap: a second session fits, a third gets 429.
	var other api.Session
	if code := call(t, "POST", u, ``, &other); code != 201 {
		t.Fatalf("second: %d", code)
	}
	if code := call(t, "POST", u, ``, &errBody); code != 429 {
		t.Fatalf("over the cap: %d %v", code, errBody)
	}
	var list api.SessionList
	if call(t, "GET", u, "", &list); len(list.Sessions) != 2 {
		t.Fatalf("list: %+v", list)
	}
	for _, id := range []string{sess.ID, other.ID} {
		var gone api.Session
		if code := call(t, "DELETE", u+"/"+id, "", &gone); code != 200 || gone.Status != "deleted" {
			t.Fatalf("delete: %d %+v", code, gone)
		}
	}
	if code := call(t, "GET", su, "", &errBody); code != 404 {
		t.Fatalf("after delete: %d", code)
	}
	if code := call(t, "POST", su+"/execute", `{"code": "1"}`, &errBody); code != 404 {
		t.Fatalf("execute after delete: %d", code)
	}
	testenv.NoLeftovers(t, e)
}
