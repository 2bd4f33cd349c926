package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sandboxd/sandboxd/api"
	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/jobs"
	"github.com/sandboxd/sandboxd/sandbox"
	"github.com/sandboxd/sandboxd/server"
)

type jobsFixture struct {
	t   *testing.T
	e   *sandbox.Engine
	m   *jobs.Manager
	url string
}

// newJobsAPI serves the API with the async endpoints on a real engine and a job
// manager with its own store.
func newJobsAPI(t *testing.T, eopts sandbox.Options, jopts jobs.Options) *jobsFixture {
	t.Helper()
	e := testenv.Engine(t, eopts)
	jopts.Dir, jopts.Engine = t.TempDir(), e
	if jopts.Slots == 0 {
		jopts.Slots = 4
	}
	jopts.Callbacks = map[string]jobs.CallbackEncoder{"": server.JobCallback}
	m, err := jobs.New(jopts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // before the engine's Close
		if err := m.Close(context.Background()); err != nil {
			t.Errorf("close job manager: %v", err)
		}
	})
	srv := server.New(e, server.Options{MaxBodyBytes: 256 << 10, MaxCodeBytes: 16 << 10})
	(&server.Jobs{Manager: m, Signal: e.Signal, MaxBatch: 10}).Register(srv)
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &jobsFixture{t: t, e: e, m: m, url: ts.URL}
}

// do sends a request and decodes the JSON answer into out (when not nil).
func (f *jobsFixture) do(method, path, body string, hdr map[string]string, out any) *http.Response {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.url+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		f.t.Errorf("%s %s: Content-Type %q: %s", method, path, ct, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			f.t.Fatalf("%s %s: HTTP %d, not JSON: %q", method, path, resp.StatusCode, raw)
		}
	}
	return resp
}

func (f *jobsFixture) submit(body string, hdr map[string]string) api.Job {
	f.t.Helper()
	var j api.Job
	if resp := f.do("POST", "/v1/jobs", body, hdr, &j); resp.StatusCode != 202 {
		f.t.Fatalf("submit: HTTP %d: %+v", resp.StatusCode, j)
	}
	return j
}

func (f *jobsFixture) wait(id string) api.Job {
	f.t.Helper()
	var j api.Job
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		if resp := f.do("GET", "/v1/jobs/"+id+"?wait=30s", "", nil, &j); resp.StatusCode != 200 {
			f.t.Fatalf("get %s: HTTP %d", id, resp.StatusCode)
		}
		if j.State == "done" || j.State == "lost" {
			return j
		}
	}
	f.t.Fatalf("job %s not done in a minute: %+v", id, j)
	return j
}

// waitRunning waits until the job's program runs (its engine job holds a slot).
func (f *jobsFixture) waitRunning(id string) {
	f.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, j := range f.e.Jobs() {
			if j.ID == id {
				time.Sleep(300 * time.Millisecond) // python is up
				return
			}
		}
	}
	f.t.Fatalf("job %s never ran", id)
}

// Submit answers at once with an id; polling, long-polling and the list see it through
// to its result, the same as /v1/execute's.
func TestJobsSubmitAndWait(t *testing.T) {
	f := newJobsAPI(t, sandbox.Options{}, jobs.Options{})
	start := time.Now()
	j := f.submit(`{"code": "import time; time.sleep(0.5); print('async \\xff'.encode('latin-1').decode('latin-1'))", "output_encoding": "utf8"}`, nil)
	if !strings.HasPrefix(j.ID, "sbx-") || j.State != "queued" || time.Since(start) > 400*time.Millisecond {
		t.Fatalf("submit took %v: %+v", time.Since(start), j)
	}
	var now api.Job
	f.do("GET", "/v1/jobs/"+j.ID, "", nil, &now)
	if now.State != "queued" && now.State != "running" {
		t.Errorf("state right after submit: %s", now.State)
	}
	done := f.wait(j.ID)
	if done.State != "done" || done.Result == nil || done.Result.Status != "ok" || done.Result.Stdout != "async \u00ff\n" || done.Result.ID != j.ID {
		t.Fatalf("%+v %+v", done, done.Result)
	}
	if done.Started == nil || done.Finished == nil || done.Runs != 1 {
		t.Errorf("times and runs: %+v", done)
	}
	var list api.JobList
	f.do("GET", "/v1/jobs?state=done&limit=10", "", nil, &list)
	if len(list.Jobs) != 1 || list.Jobs[0].ID != j.ID || list.Jobs[0].Result != nil {
		t.Errorf("list: %+v", list)
	}
	// base64 output is kept as asked.
	b := f.wait(f.submit(`{"code": "import sys; sys.stdout.buffer.write(b'\\xff\\x00')", "output_encoding": "base64"}`, nil).ID)
	if b.Result.Stdout != "/wA=" || b.Result.OutputEncoding != "base64" {
		t.Errorf("base64: %+v", b.Result)
	}
	testenv.NoLeftovers(t, f.e)
}

// DELETE of a queued job: it never runs; of a running one: killed, status cancelled.
func TestJobsCancel(t *testing.T) {
	f := newJobsAPI(t, sandbox.Options{MaxJobs: 1}, jobs.Options{Slots: 1})
	running := f.submit(`{"code": "import time; print('started', flush=True); time.sleep(30)"}`, nil)
	f.waitRunning(running.ID)
	queued := f.submit(`{"code": "open('/tmp/x','w'); print('ran')"}`, nil)
	var j api.Job
	if resp := f.do("DELETE", "/v1/jobs/"+queued.ID, "", nil, &j); resp.StatusCode != 200 || j.State != "done" || j.Result.Status != "cancelled" {
		t.Fatalf("cancel queued: HTTP %d %+v %+v", resp.StatusCode, j, j.Result)
	}
	if j.Started != nil || j.Runs != 0 {
		t.Errorf("the cancelled queued job ran: %+v", j)
	}
	start := time.Now()
	f.do("DELETE", "/v1/jobs/"+running.ID, "", nil, &j)
	j = f.wait(running.ID)
	if j.Result.Status != "cancelled" || time.Since(start) > 5*time.Second {
		t.Fatalf("cancel running: after %v: %+v", time.Since(start), j.Result)
	}
	if len(f.e.Jobs()) != 0 {
		t.Errorf("still running: %v", f.e.Jobs())
	}
	// Cancelling a finished job changes nothing.
	f.do("DELETE", "/v1/jobs/"+running.ID, "", nil, &j)
	if j.Result.Status != "cancelled" {
		t.Errorf("%+v", j.Result)
	}
	testenv.NoLeftovers(t, f.e)
}

// The same Idempotency-Key gets the same job, however often it is sent.
func TestJobsIdempotency(t *testing.T) {
	f := newJobsAPI(t, sandbox.Options{}, jobs.Options{})
	hdr := map[string]string{"Idempotency-Key": "grader-42"}
	first := f.submit(`{"code": "print(1)"}`, hdr)
	var again api.Job
	if resp := f.do("POST", "/v1/jobs", `{"code": "print(1)"}`, hdr, &again); resp.StatusCode != 200 || again.ID != first.ID {
		t.Fatalf("HTTP %d: %+v, want job %s", resp.StatusCode, again, first.ID)
	}
	f.wait(first.ID)
	f.do("POST", "/v1/jobs", `{"code": "print(1)"}`, hdr, &again)
	if again.ID != first.ID || again.State != "done" || again.Result == nil {
		t.Errorf("after it finished: %+v", again)
	}
	var list api.JobList
	f.do("GET", "/v1/jobs", "", nil, &list)
	if len(list.Jobs) != 1 {
		t.Errorf("%d jobs ran for one key", len(list.Jobs))
	}
	other := f.submit(`{"code": "print(1)"}`, map[string]string{"Idempotency-Key": "grader-43"})
	if other.ID == first.ID {
		t.Error("another key got the same job")
	}
	f.wait(other.ID)
	testenv.NoLeftovers(t, f.e)
}

// The callback gets the job, as GET shows it, POSTed to a loopback server; a 500 is
// tried again with backoff; the job shows how delivery went.
func TestJobsCallback(t *testing.T) {
	var calls atomic.Int32
	got := make(chan api.Job, 1)
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			http.Error(w, "not yet", 500)
			return
		}
		var j api.Job
		if r.Method != "POST" || r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&j) != nil {
			t.Errorf("callback: %s %s", r.Method, r.Header.Get("Content-Type"))
		}
		got <- j
	}))
	defer cb.Close()
	f := newJobsAPI(t, sandbox.Options{}, jobs.Options{CallbackBackoff: 50 * time.Millisecond})
	j := f.submit(`{"code": "print('called back')", "callback_url": "`+cb.URL+`/done"}`, nil)
	select {
	case cj := <-got:
		if cj.ID != j.ID || cj.State != "done" || cj.Result == nil || cj.Result.Stdout != "called back\n" {
			t.Errorf("callback body: %+v", cj)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no callback; %d calls", calls.Load())
	}
	var final api.Job
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		f.do("GET", "/v1/jobs/"+j.ID, "", nil, &final)
		if final.Callback != nil && final.Callback.State == "delivered" {
			break
		}
	}
	if c := final.Callback; c == nil || c.State != "delivered" || c.Attempts != 3 || c.URL != cb.URL+"/done" {
		t.Errorf("callback status: %+v", c)
	}

	// A callback that always fails is given up after the bounded attempts.
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", 503) }))
	defer dead.Close()
	j = f.submit(`{"code": "print(2)", "callback_url": "`+dead.URL+`"}`, nil)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		f.do("GET", "/v1/jobs/"+j.ID, "", nil, &final)
		if final.Callback != nil && final.Callback.State != "pending" {
			break
		}
	}
	if c := final.Callback; c == nil || c.State != "failed" || c.Attempts != 5 || c.LastError != "HTTP 503" {
		t.Errorf("failing callback: %+v", c)
	}
	testenv.NoLeftovers(t, f.e)
}

// A full async queue answers 429 with Retry-After; the jobs it holds still run.
func TestJobsQueueFull(t *testing.T) {
	f := newJobsAPI(t, sandbox.Options{MaxJobs: 1}, jobs.Options{Slots: 1, MaxQueue: 1})
	a := f.submit(`{"code": "import time; time.sleep(1)"}`, nil)
	f.waitRunning(a.ID)
	b := f.submit(`{"code": "print('b')"}`, nil)
	var e api.Error
	resp := f.do("POST", "/v1/jobs", `{"code": "print('c')"}`, nil, &e)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || e.Error == "" {
		t.Fatalf("HTTP %d Retry-After %q: %+v", resp.StatusCode, resp.Header.Get("Retry-After"), e)
	}
	if r := f.wait(b.ID); r.Result.Stdout != "b\n" {
		t.Errorf("%+v", r.Result)
	}
	f.wait(a.ID)
	testenv.NoLeftovers(t, f.e)
}

// readLines reads NDJSON events, noting when each arrived.
func readLines(t *testing.T, r io.Reader) (evs []api.Event, at []time.Time) {
	t.Helper()
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var ev api.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("not a JSON line: %q", sc.Text())
		}
		evs, at = append(evs, ev), append(at, time.Now())
	}
	return evs, at
}

// /v1/execute with Accept: application/x-ndjson streams output as the program writes
// it, in order, then the result; a capped stream says so once and stops.
func TestExecuteStream(t *testing.T) {
	f := newJobsAPI(t, sandbox.Options{OutputLimit: 1000}, jobs.Options{})
	post := func(body string) *http.Response {
		req, _ := http.NewRequest("POST", f.url+"/v1/execute", strings.NewReader(body))
		req.Header.Set("Accept", "application/x-ndjson")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := post(`{"code": "import sys, time\nfor i in range(4):\n    print(i, flush=True)\n    print('e', i, file=sys.stderr, flush=True)\n    time.sleep(0.3)"}`)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != server.NDJSON {
		t.Fatalf("HTTP %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	evs, at := readLines(t, resp.Body)
	resp.Body.Close()
	var out, errs string
	for _, ev := range evs[1 : len(evs)-1] {
		switch ev.Type {
		case "stdout":
			out += ev.Data
		case "stderr":
			errs += ev.Data
		default:
			t.Errorf("unexpected event %+v", ev)
		}
	}
	if evs[0].Type != "stage" || evs[0].Stage != "run" {
		t.Errorf("first event %+v", evs[0])
	}
	last := evs[len(evs)-1]
	if last.Type != "result" || last.Result == nil || last.Result.Status != "ok" || last.Result.Stdout != "0\n1\n2\n3\n" {
		t.Fatalf("last event %+v", last)
	}
	if out != "0\n1\n2\n3\n" || errs != "e 0\ne 1\ne 2\ne 3\n" {
		t.Errorf("streams %q %q", out, errs)
	}
	// As produced: the first chunk came well before the result.
	if gap := at[len(at)-1].Sub(at[1]); gap < 700*time.Millisecond {
		t.Errorf("the first output came only %v before the result: not streamed", gap)
	}

	// Caps: 1000 bytes of stdout, then one truncated event, then nothing of stdout.
	resp = post(`{"code": "import time\nfor i in range(30):\n    print('x' * 99, flush=True)\n    time.sleep(0.01)"}`)
	evs, _ = readLines(t, resp.Body)
	resp.Body.Close()
	n, truncs, afterTrunc := 0, 0, 0
	for _, ev := range evs {
		if ev.Type != "stdout" {
			continue
		}
		if truncs > 0 {
			afterTrunc++
		}
		n += len(ev.Data)
		if ev.Truncated {
			truncs++
		}
	}
	last = evs[len(evs)-1]
	if n != 1000 || truncs != 1 || afterTrunc != 0 || !last.Result.StdoutTruncated || len(last.Result.Stdout) != 1000 {
		t.Errorf("capped stream: %d bytes, %d truncated events, %d after; result truncated %v", n, truncs, afterTrunc, last.Result.StdoutTruncated)
	}

	// Invalid UTF-8 is replaced in text chunks and flagged; a character split across
	// writes is not.
	resp = post(`{"code": "import sys, time\nsys.stdout.buffer.write(b'\\xe2\\x82'); sys.stdout.flush(); time.sleep(0.2)\nsys.stdout.buffer.write(b'\\xac \\xff\\n')"}`)
	evs, _ = readLines(t, resp.Body)
	resp.Body.Close()
	out, lossy := "", false
	for _, ev := range evs {
		if ev.Type == "stdout" {
			out += ev.Data
			lossy = lossy || ev.Lossy
		}
	}
	if out != "€ \ufffd\n" || !lossy {
		t.Errorf("text chunks %q lossy %v", out, lossy)
	}

	// A refused request is an ordinary JSON error.
	resp = post(`{"code": "1", "limits": {"memory": "1TB"}}`)
	var e api.Error
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != 400 || e.Field != "limits.memory" {
		t.Errorf("HTTP %d %+v", resp.StatusCode, e)
	}
	testenv.NoLeftovers(t, f.e)
}

// A streaming client that goes away cancels its job.
func TestStreamDisconnectCancels(t *testing.T) {
	f := newJobsAPI(t, sandbox.Options{}, jobs.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", f.url+"/v1/execute",
		strings.NewReader(`{"code": "import time\nprint('up', flush=True)\ntime.sleep(60)", "limits": {"timeout": 90}}`))
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && !strings.Contains(sc.Text(), `"up`) { // print writes "up", then "\n"
	}
	if len(f.e.Jobs()) != 1 {
		t.Fatalf("jobs running: %v", f.e.Jobs())
	}
	cancel()
	resp.Body.Close()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && len(f.e.Jobs()) > 0; {
		time.Sleep(20 * time.Millisecond)
	}
	if len(f.e.Jobs()) != 0 {
		t.Errorf("the job outlived its client: %v", f.e.Jobs())
	}
	testenv.NoLeftovers(t, f.e)
}

// GET /v1/jobs/{id}/events follows a running async job, then gives its result; for
// a finished job, the result alone.
func TestJobEvents(t *testing.T) {
	f := newJobsAPI(t, sandbox.Options{}, jobs.Options{})
	j := f.submit(`{"code": "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.2)"}`, nil)
	resp, err := http.Get(f.url + "/v1/jobs/" + j.ID + "/events")
	if err != nil {
		t.Fatal(err)
	}
	evs, _ := readLines(t, resp.Body)
	resp.Body.Close()
	out := ""
	for _, ev := range evs {
		if ev.Type == "stdout" {
			out += ev.Data
		}
	}
	last := evs[len(evs)-1]
	if out != "0\n1\n2\n" || last.Type != "result" || last.State != "done" || last.Result.Stdout != "0\n1\n2\n" {
		t.Fatalf("events %+v", evs)
	}
	resp, err = http.Get(f.url + "/v1/jobs/" + j.ID + "/events")
	if err != nil {
		t.Fatal(err)
	}
	evs, _ = readLines(t, resp.Body)
	resp.Body.Close()
	if len(evs) != 1 || evs[0].Type != "result" || evs[0].Result.Stdout != "0\n1\n2\n" {
		t.Errorf("finished job's events: %+v", evs)
	}
	testenv.NoLeftovers(t, f.e)
}

func wsDial(t *testing.T, f *jobsFixture) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(f.url, "http")+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func wsSend(t *testing.T, c *websocket.Conn, v string) {
	t.Helper()
	if err := c.Write(context.Background(), websocket.MessageText, []byte(v)); err != nil {
		t.Fatal(err)
	}
}

// wsNext reads events until one of type typ (stdout: until its data holds want).
func wsNext(t *testing.T, c *websocket.Conn, typ, want string) api.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for %s %q: %v", typ, want, err)
		}
		var ev api.Event
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatalf("not JSON: %q", b)
		}
		if ev.Type == typ && strings.Contains(ev.Data, want) {
			return ev
		}
		if ev.Type == "result" || ev.Type == "error" && typ != "error" {
			t.Fatalf("waiting for %s %q, got %+v %+v", typ, want, ev, ev.Result)
		}
	}
}

// A WebSocket job is fed stdin as it asks for it, gets a signal, and ends normally.
func TestWebSocket(t *testing.T) {
	f := newJobsAPI(t, sandbox.Options{}, jobs.Options{})
	c := wsDial(t, f)
	// One write per line (unbuffered print writes the text and the newline apart).
	wsSend(t, c, `{"code": "import signal, sys\nsignal.signal(signal.SIGINT, lambda *a: sys.stdout.write('got SIGINT\\n'))\nfor line in sys.stdin:\n    sys.stdout.write(line.upper())\nprint('eof')"}`)
	wsSend(t, c, `{"type": "stdin", "data": "hello\n"}`)
	wsNext(t, c, "stdout", "HELLO\n")
	// Interactive: the second line is sent only after the first was answered.
	wsSend(t, c, `{"type": "stdin", "data": "again\n"}`)
	wsNext(t, c, "stdout", "AGAIN\n")
	wsSend(t, c, `{"type": "signal", "signal": "SIGINT"}`)
	wsNext(t, c, "stdout", "got SIGINT\n")
	// Bad messages are answered with an error naming the field; the job goes on.
	wsSend(t, c, `{"type": "signal", "signal": "SIGSEGV"}`)
	if ev := wsNext(t, c, "error", ""); ev.Field != "signal" {
		t.Errorf("%+v", ev)
	}
	wsSend(t, c, `{"type": "dance"}`)
	if ev := wsNext(t, c, "error", ""); ev.Field != "type" {
		t.Errorf("%+v", ev)
	}
	wsSend(t, c, `{"type": "stdin", "data": 5}`)
	if ev := wsNext(t, c, "error", ""); ev.Field != "data" {
		t.Errorf("%+v", ev)
	}
	wsSend(t, c, `{"type": "stdin_close"}`)
	res := wsNext(t, c, "result", "")
	if res.Result == nil || res.Result.Status != "ok" || res.Result.Stdout != "HELLO\nAGAIN\ngot SIGINT\neof\n" {
		t.Fatalf("%+v", res.Result)
	}
	if _, _, err := c.Read(context.Background()); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Errorf("closed with %v", err)
	}

	// A bad request: an error naming the field, and a policy-violation close.
	c = wsDial(t, f)
	wsSend(t, c, `{"code": "1", "limits": {"timeout": "soon"}}`)
	if ev := wsNext(t, c, "error", ""); ev.Field != "limits.timeout" {
		t.Errorf("%+v", ev)
	}
	if _, _, err := c.Read(context.Background()); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Errorf("closed with %v", err)
	}

	// A client that goes away cancels its job.
	c = wsDial(t, f)
	wsSend(t, c, `{"code": "import time\nprint('up', flush=True)\ntime.sleep(60)", "limits": {"timeout": 90}}`)
	wsNext(t, c, "stdout", "up")
	c.CloseNow()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && len(f.e.Jobs()) > 0; {
		time.Sleep(20 * time.Millisecond)
	}
	if len(f.e.Jobs()) != 0 {
		t.Errorf("the job outlived its client: %v", f.e.Jobs())
	}
	testenv.NoLeftovers(t, f.e)
}

// A batch answers its results in order, more jobs than slots; async, their ids.
func TestBatch(t *testing.T) {
	f := newJobsAPI(t, sandbox.Options{MaxJobs: 2, MaxQueue: 0}, jobs.Options{Slots: 2})
	var jobsJSON []string
	for i := range 6 {
		// Later jobs finish first: order is the request's, not completion's.
		jobsJSON = append(jobsJSON, fmt.Sprintf(`{"code": "import time; time.sleep(%g); print(%d)"}`, 0.3-float64(i)*0.05, i))
	}
	body := `{"jobs": [` + strings.Join(jobsJSON, ",") + `]}`
	var out struct {
		Results []api.Result `json:"results"`
	}
	if resp := f.do("POST", "/v1/batch", body, nil, &out); resp.StatusCode != 200 || len(out.Results) != 6 {
		t.Fatalf("HTTP %d: %+v", resp.StatusCode, out)
	}
	for i, r := range out.Results {
		if r.Status != "ok" || r.Stdout != fmt.Sprintf("%d\n", i) {
			t.Errorf("result %d: %s %q", i, r.Status, r.Stdout)
		}
	}
	var async api.BatchResponse
	if resp := f.do("POST", "/v1/batch", `{"async": true, "jobs": [`+strings.Join(jobsJSON[:3], ",")+`]}`, nil, &async); resp.StatusCode != 202 || len(async.Jobs) != 3 {
		t.Fatalf("HTTP %d: %+v", resp.StatusCode, async)
	}
	for i, j := range async.Jobs {
		if r := f.wait(j.ID); r.Result.Stdout != fmt.Sprintf("%d\n", i) {
			t.Errorf("async %d: %+v", i, r.Result)
		}
	}

	// A batch client that goes away cancels its jobs, running and waiting.
	ctx, cancel := context.WithCancel(context.Background())
	sleep := `{"code": "import time; time.sleep(60)", "limits": {"timeout": 90}}`
	req, _ := http.NewRequestWithContext(ctx, "POST", f.url+"/v1/batch", strings.NewReader(`{"jobs": [`+sleep+","+sleep+","+sleep+`]}`))
	go http.DefaultClient.Do(req)
	for deadline := time.Now().Add(20 * time.Second); len(f.e.Jobs()) < 2 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if len(f.e.Jobs()) != 2 {
		t.Fatalf("batch jobs running: %v", f.e.Jobs())
	}
	cancel()
	for deadline := time.Now().Add(10 * time.Second); len(f.e.Jobs()) > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if len(f.e.Jobs()) != 0 {
		t.Errorf("the batch's jobs outlived its client: %v", f.e.Jobs())
	}
	testenv.NoLeftovers(t, f.e)
}

// Bad input to the async endpoints: a 4xx JSON error naming the field; nothing runs.
func TestJobsBadRequests(t *testing.T) {
	f := newJobsAPI(t, sandbox.Options{}, jobs.Options{})
	eleven := `{"jobs": [` + strings.TrimSuffix(strings.Repeat(`{"code": "1"},`, 11), ",") + `]}`
	for _, c := range []struct {
		name, method, path, body string
		hdr                      map[string]string
		code                     int
		field                    string
	}{
		{"unknown job", "GET", "/v1/jobs/sbx-nosuchjob", "", nil, 404, ""},
		{"unknown job events", "GET", "/v1/jobs/sbx-nosuchjob/events", "", nil, 404, ""},
		{"cancel unknown", "DELETE", "/v1/jobs/sbx-nosuchjob", "", nil, 404, ""},
		{"malformed wait", "GET", "/v1/jobs/sbx-nosuchjob?wait=soon", "", nil, 400, "wait"},
		{"negative wait", "GET", "/v1/jobs/sbx-nosuchjob?wait=-1s", "", nil, 400, "wait"},
		{"wait too long", "GET", "/v1/jobs/sbx-nosuchjob?wait=10m", "", nil, 400, "wait"},
		{"bad state", "GET", "/v1/jobs?state=finished", "", nil, 400, "state"},
		{"bad limit", "GET", "/v1/jobs?limit=0", "", nil, 400, "limit"},
		{"unknown cursor", "GET", "/v1/jobs?after=sbx-nosuchjob", "", nil, 400, "after"},
		{"callback not http", "POST", "/v1/jobs", `{"code": "1", "callback_url": "ftp://127.0.0.1/x"}`, nil, 400, "callback_url"},
		{"callback off host", "POST", "/v1/jobs", `{"code": "1", "callback_url": "http://192.0.2.1/x"}`, nil, 400, "callback_url"},
		{"callback not a URL", "POST", "/v1/jobs", `{"code": "1", "callback_url": "::"}`, nil, 400, "callback_url"},
		{"job limit", "POST", "/v1/jobs", `{"code": "1", "limits": {"memory": "1TB"}}`, nil, 400, "limits.memory"},
		{"job unknown field", "POST", "/v1/jobs", `{"code": "1", "retyr": true}`, nil, 400, ""},
		{"job missing code", "POST", "/v1/jobs", `{"retry": true}`, nil, 400, "code"},
		{"long idempotency key", "POST", "/v1/jobs", `{"code": "1"}`, map[string]string{"Idempotency-Key": strings.Repeat("k", 300)}, 400, "Idempotency-Key"},
		{"batch too big", "POST", "/v1/batch", eleven, nil, 400, "jobs"},
		{"batch empty", "POST", "/v1/batch", `{"jobs": []}`, nil, 400, "jobs"},
		{"batch missing jobs", "POST", "/v1/batch", `{}`, nil, 400, "jobs"},
		{"batch bad job", "POST", "/v1/batch", `{"jobs": [{"code": "1"}, {"code": "1", "limits": {"pids": 2.5}}]}`, nil, 400, "jobs[1].limits.pids"},
		{"batch bad language", "POST", "/v1/batch", `{"jobs": [{"code": "1", "language": "cobol"}]}`, nil, 400, "jobs[0].language"},
		{"batch bad callback", "POST", "/v1/batch", `{"async": true, "jobs": [{"code": "1", "callback_url": "gopher://x"}]}`, nil, 400, "jobs[0].callback_url"},
		{"ws without upgrade", "GET", "/v1/ws", "", nil, 426, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var e api.Error
			if c.code == 426 { // the WebSocket library answers in text
				resp, err := http.Get(f.url + c.path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode/100 != 4 {
					t.Errorf("HTTP %d", resp.StatusCode)
				}
				return
			}
			resp := f.do(c.method, c.path, c.body, c.hdr, &e)
			if resp.StatusCode != c.code || e.Error == "" || e.Field != c.field {
				t.Errorf("HTTP %d field %q (%s), want %d %q", resp.StatusCode, e.Field, e.Error, c.code, c.field)
			}
		})
	}
	var list api.JobList
	f.do("GET", "/v1/jobs", "", nil, &list)
	if len(list.Jobs) != 0 {
		t.Errorf("bad requests made jobs: %+v", list.Jobs)
	}
	testenv.NoLeftovers(t, f.e)
}

// While the daemon drains, new async jobs get 503; after it resumes, 202.
func TestJobsDraining(t *testing.T) {
	var draining atomic.Bool
	f := newJobsAPI(t, sandbox.Options{}, jobs.Options{Draining: draining.Load})
	draining.Store(true)
	var e api.Error
	if resp := f.do("POST", "/v1/jobs", `{"code": "print(1)"}`, nil, &e); resp.StatusCode != 503 || e.Error == "" {
		t.Errorf("draining: HTTP %d %+v", resp.StatusCode, e)
	}
	draining.Store(false)
	f.wait(f.submit(`{"code": "print(1)"}`, nil).ID)
	testenv.NoLeftovers(t, f.e)
}
