package jobs

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/sandbox"
)

// Results keep their output bytes exactly, invalid UTF-8 included, in every outcome.
func TestResultRoundTrip(t *testing.T) {
	st, err := openStore(filepath.Join(t.TempDir(), "jobs.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	raw := "ok \xff\xfe half \xe2\x82 end\x00"
	res := &sandbox.Result{ID: "sbx-a", Status: sandbox.StatusWrongAnswer, Outcome: sandbox.Outcome{Stdout: raw, Stderr: "e" + raw, ExitCode: 3},
		Compile: &sandbox.StageResult{Status: sandbox.StatusOK, Outcome: sandbox.Outcome{Stderr: "warn\xc3"}},
		Tests:   []sandbox.TestResult{{Verdict: sandbox.StatusPassed, Outcome: sandbox.Outcome{Stdout: "1\xff"}}, {Outcome: sandbox.Outcome{Stderr: "\x80"}}},
		Files:   []sandbox.CollectedFile{{Name: "out.bin", Size: 2, Content: []byte{0, 0xff}}}}
	rec := Record{ID: "sbx-a", State: StateQueued, Submitted: time.Now()}
	if _, err := st.create(&rec, nil); err != nil {
		t.Fatal(err)
	}
	rec.State = StateDone
	sr := storeResult(res)
	if _, err := st.finish(&rec, &sr); err != nil {
		t.Fatal(err)
	}
	if res.Stdout != raw || res.Tests[0].Stdout != "1\xff" || res.Compile.Stderr != "warn\xc3" {
		t.Fatal("storing changed the caller's result")
	}
	got, err := st.get("sbx-a")
	if err != nil {
		t.Fatal(err)
	}
	r := got.Result
	switch {
	case r == nil:
		t.Fatal("no result")
	case r.Stdout != raw || r.Stderr != "e"+raw || r.ExitCode != 3 || r.Status != sandbox.StatusWrongAnswer:
		t.Errorf("run outcome %q %q %d %s", r.Stdout, r.Stderr, r.ExitCode, r.Status)
	case r.Compile == nil || r.Compile.Stderr != "warn\xc3":
		t.Errorf("compile %+v", r.Compile)
	case len(r.Tests) != 2 || r.Tests[0].Stdout != "1\xff" || r.Tests[1].Stderr != "\x80" || r.Tests[0].Verdict != sandbox.StatusPassed:
		t.Errorf("tests %+v", r.Tests)
	case len(r.Files) != 1 || string(r.Files[0].Content) != "\x00\xff":
		t.Errorf("files %+v", r.Files)
	}
}

// A request marked retry is stored so that it can run again, bytes exact.
func TestRequestRoundTrip(t *testing.T) {
	exp := "x\xff"
	req := sandbox.Request{Language: "python", Code: "print('\xff')", Files: []sandbox.File{{Name: "a", Content: []byte{1, 2}}},
		Stdin: []byte("in\x00"), Args: []string{"-v"}, Env: map[string]string{"A": "b"}, Tests: []sandbox.Test{{Stdin: []byte("t"), Expected: &exp}},
		Limits: sandbox.Limits{Memory: 64 << 20, Timeout: 3 * time.Second}}
	got := storeRequest(req).request("sbx-b")
	if got.ID != "sbx-b" || got.Code != req.Code || string(got.Files[0].Content) != "\x01\x02" || string(got.Stdin) != "in\x00" ||
		got.Limits != req.Limits || *got.Tests[0].Expected != exp || got.Env["A"] != "b" {
		t.Errorf("%+v", got)
	}
}

// Retention drops finished jobs oldest first, by age, count and bytes, never an
// unfinished one, and forgets their idempotency keys.
func TestPrune(t *testing.T) {
	st, err := openStore(filepath.Join(t.TempDir(), "jobs.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	old := time.Now().Add(-time.Hour)
	add := func(id string, state State, at time.Time, key string) {
		rec := Record{ID: id, State: StateQueued, Submitted: at, IdempotencyKey: key}
		if _, err := st.create(&rec, nil); err != nil {
			t.Fatal(err)
		}
		if state.Final() {
			rec.State, rec.Finished = state, at
			sr := storeResult(&sandbox.Result{ID: id, Outcome: sandbox.Outcome{Stdout: "0123456789"}})
			if _, err := st.finish(&rec, &sr); err != nil {
				t.Fatal(err)
			}
		}
	}
	add("sbx-1", StateDone, old, "k1")
	add("sbx-2", StateQueued, old, "")
	add("sbx-3", StateLost, old.Add(time.Minute), "")
	add("sbx-4", StateDone, time.Now(), "")
	add("sbx-5", StateDone, time.Now(), "")
	add("sbx-6", StateRunning, time.Now(), "")
	ids := func() (out []string) {
		_ = st.all(func(r Record) { out = append(out, r.ID) })
		return out
	}
	count, bytes, err := st.stats()
	if err != nil || count != 6 {
		t.Fatalf("stats %d %d %v", count, bytes, err)
	}
	// By age: the two finished before the cutoff.
	n, freed, err := st.prune(time.Now().Add(-30*time.Minute), count, 100, bytes, 1<<30)
	if err != nil || n != 2 || freed == 0 {
		t.Fatalf("pruned %d (%d bytes): %v", n, freed, err)
	}
	if got := ids(); len(got) != 4 || got[0] != "sbx-2" {
		t.Errorf("left %v", got)
	}
	if rec := (Record{ID: "sbx-7", Submitted: time.Now(), IdempotencyKey: "k1"}); true {
		if existing, err := st.create(&rec, nil); err != nil || existing != nil {
			t.Errorf("the dropped job's key still names it: %v %v", existing, err)
		}
	}
	// By count: down to 3 of 5, the oldest finished first; queued and running stay.
	count, bytes, _ = st.stats()
	if n, _, err = st.prune(time.Now().Add(-time.Hour*2), count, 3, bytes, 1<<30); err != nil || n != 2 {
		t.Fatalf("pruned %d: %v", n, err)
	}
	if got := ids(); len(got) != 3 || got[0] != "sbx-2" || got[1] != "sbx-6" || got[2] != "sbx-7" {
		t.Errorf("left %v", got)
	}
	// By bytes: every finished job goes when none may be kept.
	add("sbx-8", StateDone, time.Now(), "")
	count, bytes, _ = st.stats()
	if n, _, err = st.prune(time.Now().Add(-time.Hour*2), count, 100, bytes, 0); err != nil || n != 1 {
		t.Fatalf("pruned %d: %v", n, err)
	}
	if _, err := st.get("sbx-8"); err == nil {
		t.Error("sbx-8 survived a zero byte budget")
	}
}

// Paging: in submission order, by state, after a cursor.
func TestList(t *testing.T) {
	st, err := openStore(filepath.Join(t.TempDir(), "jobs.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	for i, s := range []State{StateQueued, StateDone, StateQueued, StateQueued} {
		rec := Record{ID: "sbx-" + string(rune('a'+i)), State: s, Submitted: time.Now()}
		if _, err := st.create(&rec, nil); err != nil {
			t.Fatal(err)
		}
	}
	page, more, err := st.list(StateQueued, 2, "")
	if err != nil || len(page) != 2 || !more || page[0].ID != "sbx-a" || page[1].ID != "sbx-c" {
		t.Fatalf("%v %v %v", page, more, err)
	}
	page, more, err = st.list(StateQueued, 2, "sbx-c")
	if err != nil || len(page) != 1 || more || page[0].ID != "sbx-d" {
		t.Fatalf("%v %v %v", page, more, err)
	}
	if _, _, err := st.list("", 2, "sbx-zz"); err == nil {
		t.Error("an unknown cursor is not an error")
	}
}

func TestCheckCallbackURL(t *testing.T) {
	for _, c := range []struct {
		url     string
		offHost bool
		ok      bool
	}{
		{"http://127.0.0.1:9/cb", false, true},
		{"https://localhost/cb", false, true},
		{"http://[::1]:80/", false, true},
		{"http://example.com/cb", false, false},
		{"http://example.com/cb", true, true},
		{"http://10.0.0.1/", false, false},
		{"ftp://127.0.0.1/", true, false},
		{"file:///etc/passwd", true, false},
		{"http:///nohost", true, false},
		{"http://user:pw@127.0.0.1/", true, false},
		{"::not a url", true, false},
	} {
		if err := CheckCallbackURL(c.url, c.offHost); (err == nil) != c.ok {
			t.Errorf("%s (off host %v): %v", c.url, c.offHost, err)
		}
	}
}
