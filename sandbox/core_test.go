package sandbox_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/sandbox"
)

func ptr[T any](v T) *T { return &v }

// The job core on the default runtime: files, args, env, collected files, test cases,
// events and cancellation, each through a real job (warm or cold, as SANDBOXD_TEST_POOL says).
func TestJobCore(t *testing.T) {
	caps := sandbox.DefaultRequestCaps
	caps.CollectFile = 4096
	e := testenv.Engine(t, sandbox.Options{OutputLimit: 1 << 10, Caps: caps})
	cases := []struct {
		name  string
		req   sandbox.Request
		check func(t *testing.T, r *sandbox.Result)
	}{
		{"files and args", sandbox.Request{
			Files: []sandbox.File{
				{Name: "app.py", Content: []byte("import sys\nfrom pkg.util import twice\nprint(twice(sys.argv[1:]), sys.argv[0])")},
				{Name: "pkg/__init__.py"},
				{Name: "pkg/util.py", Content: []byte("def twice(x): return x * 2")},
			},
			Args: []string{"a", "b c"},
		}, func(t *testing.T, r *sandbox.Result) {
			if r.Status != sandbox.StatusOK || r.Stdout != "['a', 'b c', 'a', 'b c'] app.py\n" {
				t.Errorf("%s %q %q", r.Status, r.Stdout, r.Stderr)
			}
		}},
		{"code with files", sandbox.Request{Code: "print(open('data.bin','rb').read())",
			Files: []sandbox.File{{Name: "data.bin", Content: []byte{0, 1, 255}}}}, func(t *testing.T, r *sandbox.Result) {
			if r.Stdout != "b'\\x00\\x01\\xff'\n" {
				t.Errorf("%q %q", r.Stdout, r.Stderr)
			}
		}},
		{"env", sandbox.Request{Code: "import os; print(os.environ['GREETING'], os.environ['HOME'])", Env: map[string]string{"GREETING": "hi"}},
			func(t *testing.T, r *sandbox.Result) {
				if r.Stdout != "hi /work\n" || r.Warm {
					t.Errorf("%q warm=%v", r.Stdout, r.Warm)
				}
			}},
		{"collect", sandbox.Request{Code: `
import os
os.makedirs("out/sub")
open("out/a.txt", "w").write("A")
open("out/big.bin", "wb").write(b"x" * 5000)
open("out/sub/deep.txt", "w").write("deep")
os.symlink("/etc/shadow", "out/shadow")
os.symlink("/proc/self/environ", "out/env.txt")
os.mkfifo("out/fifo")
`, Collect: []string{"out/*", "/work/out/sub/*.txt", "missing.json"}}, func(t *testing.T, r *sandbox.Result) {
			got := map[string]sandbox.CollectedFile{}
			for _, f := range r.Files {
				got[f.Name] = f
			}
			if f := got["out/a.txt"]; string(f.Content) != "A" || f.Size != 1 || f.SkipReason != "" {
				t.Errorf("a.txt %+v", f)
			}
			if f := got["out/big.bin"]; f.Size != 5000 || len(f.Content) != 4096 || !f.Truncated {
				t.Errorf("big.bin: size %d, %d bytes, truncated %v", f.Size, len(f.Content), f.Truncated)
			}
			if f := got["out/sub/deep.txt"]; string(f.Content) != "deep" {
				t.Errorf("deep %+v", f)
			}
			for _, n := range []string{"out/shadow", "out/env.txt"} {
				if f := got[n]; f.Content != nil || !strings.Contains(f.SkipReason, "symlink") {
					t.Errorf("%s: %+v, want a symlink listed and not followed", n, f)
				}
			}
			if f := got["out/fifo"]; f.Content != nil || f.SkipReason != "not a regular file" {
				t.Errorf("fifo %+v", f)
			}
			if f := got["out/sub"]; f.SkipReason != "directory" {
				t.Errorf("sub %+v", f)
			}
			if len(r.Files) != 7 {
				t.Errorf("%d files: %+v", len(r.Files), r.Files)
			}
		}},
		{"tests", sandbox.Request{Code: "import sys\nn = int(sys.stdin.read())\nprint(n * 2)\nif n < 0: sys.exit(3)",
			Tests: []sandbox.Test{
				{Stdin: []byte("2"), Expected: ptr("4\n")},
				{Stdin: []byte("3"), Expected: ptr("6  \n\n")}, // trailing whitespace ignored
				{Stdin: []byte("5"), Expected: ptr("11")},
				{Stdin: []byte("-1"), Expected: ptr("-2")},
				{Stdin: []byte("7")},
			}}, func(t *testing.T, r *sandbox.Result) {
			want := []sandbox.Status{sandbox.StatusPassed, sandbox.StatusPassed, sandbox.StatusWrongAnswer, sandbox.StatusError, sandbox.StatusPassed}
			if len(r.Tests) != len(want) {
				t.Fatalf("%d tests", len(r.Tests))
			}
			for i, w := range want {
				if r.Tests[i].Verdict != w {
					t.Errorf("test %d: %s, want %s (%q %q)", i, r.Tests[i].Verdict, w, r.Tests[i].Stdout, r.Tests[i].Stderr)
				}
			}
			if r.Status != sandbox.StatusWrongAnswer || r.TestsPassed != 3 || r.Tests[3].ExitCode != 3 {
				t.Errorf("status %s passed %d", r.Status, r.TestsPassed)
			}
		}},
		{"tests exact", sandbox.Request{Code: "print('x ')", Compare: sandbox.CompareExact,
			Tests: []sandbox.Test{{Expected: ptr("x \n")}, {Expected: ptr("x\n")}}}, func(t *testing.T, r *sandbox.Result) {
			if r.Tests[0].Verdict != sandbox.StatusPassed || r.Tests[1].Verdict != sandbox.StatusWrongAnswer {
				t.Errorf("%s %s", r.Tests[0].Verdict, r.Tests[1].Verdict)
			}
		}},
		{"tests see no other test", sandbox.Request{Code: "import os\nprint(sorted(os.listdir('.')))\nopen('left', 'w').write('x')",
			Tests: []sandbox.Test{{Expected: ptr("['main.py']")}, {Expected: ptr("['main.py']")}}}, func(t *testing.T, r *sandbox.Result) {
			if r.Status != sandbox.StatusOK || r.TestsPassed != 2 {
				t.Errorf("%s: %+v", r.Status, r.Tests)
			}
		}},
		{"invalid utf-8 kept", sandbox.Request{Code: "import sys; sys.stdout.buffer.write(b'\\xff\\xfe ok')"}, func(t *testing.T, r *sandbox.Result) {
			if r.Stdout != "\xff\xfe ok" {
				t.Errorf("%q", r.Stdout)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.check(t, run(t, e, c.req))
		})
	}
}

// Bad requests get a field error naming what is wrong, and nothing runs.
func TestJobCoreRefusals(t *testing.T) {
	e := testenv.Engine(t, sandbox.Options{})
	f := func(name string) sandbox.File { return sandbox.File{Name: name, Content: []byte("x")} }
	cases := []struct {
		name  string
		req   sandbox.Request
		field string
	}{
		{"dotdot", sandbox.Request{Files: []sandbox.File{f("../x.py")}}, "files[0].name"},
		{"absolute", sandbox.Request{Files: []sandbox.File{f("/etc/passwd")}}, "files[0].name"},
		{"empty", sandbox.Request{Files: []sandbox.File{f("main.py"), f("")}}, "files[1].name"},
		{"nul", sandbox.Request{Files: []sandbox.File{f("a\x00b")}}, "files[0].name"},
		{"inner dotdot", sandbox.Request{Files: []sandbox.File{f("a/../../b")}}, "files[0].name"},
		{"duplicate", sandbox.Request{Files: []sandbox.File{f("a.py"), f("a.py")}}, "files[1].name"},
		{"code clashes", sandbox.Request{Code: "1", Files: []sandbox.File{f("main.py")}}, "files[0].name"},
		{"file under file", sandbox.Request{Files: []sandbox.File{f("a"), f("a/b")}}, "files[1].name"},
		{"reserved", sandbox.Request{Files: []sandbox.File{f("main.py"), f(".out/x")}}, "files[1].name"},
		{"too many", sandbox.Request{Files: make([]sandbox.File, 101)}, "files"},
		{"too big", sandbox.Request{Files: []sandbox.File{{Name: "a", Content: make([]byte, 9<<20)}}}, "files[0].content"},
		{"over storage", sandbox.Request{Code: strings.Repeat("#", 2<<20), Limits: sandbox.Limits{Storage: 1 << 20}}, "files"},
		{"env PATH", sandbox.Request{Code: "1", Env: map[string]string{"PATH": "/tmp"}}, "env.PATH"},
		{"env LD", sandbox.Request{Code: "1", Env: map[string]string{"LD_PRELOAD": "x"}}, "env.LD_PRELOAD"},
		{"env PYTHON", sandbox.Request{Code: "1", Env: map[string]string{"PYTHONPATH": "x"}}, "env.PYTHONPATH"},
		{"env name", sandbox.Request{Code: "1", Env: map[string]string{"A-B": "x"}}, "env"},
		{"collect dotdot", sandbox.Request{Code: "1", Collect: []string{"../etc/*"}}, "collect[0]"},
		{"collect absolute", sandbox.Request{Code: "1", Collect: []string{"/etc/passwd"}}, "collect[0]"},
		{"collect bad glob", sandbox.Request{Code: "1", Collect: []string{"["}}, "collect[0]"},
		{"arg nul", sandbox.Request{Code: "1", Args: []string{"a\x00"}}, "args[0]"},
		{"compare", sandbox.Request{Code: "1", Compare: "fuzzy"}, "compare"},
		{"compile limits without compiler", sandbox.Request{Code: "1", CompileLimits: sandbox.Limits{Timeout: time.Second}}, "limits.compile_timeout"},
		{"version", sandbox.Request{Code: "1", Version: "2.7"}, "version"},
		{"bad id", sandbox.Request{Code: "1", ID: "../x"}, "id"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.Run(context.Background(), c.req)
			var fe *sandbox.FieldError
			if !asField(err, &fe) || fe.Field != c.field {
				t.Errorf("error %v, want a field error on %s", err, c.field)
			}
		})
	}
}

// Events arrive as the job prints, in order, and stop at the output cap.
func TestEvents(t *testing.T) {
	e := testenv.Engine(t, sandbox.Options{OutputLimit: 64})
	var mu sync.Mutex
	var evs []sandbox.Event
	var at []time.Duration
	start := time.Now()
	res := run(t, e, sandbox.Request{Code: `
import sys, time
for i in range(3):
    print(f"line {i}", flush=True)
    time.sleep(0.2)
print("E", file=sys.stderr, flush=True)
print("x" * 200, flush=True)
print("never seen", flush=True)
`, Events: func(ev sandbox.Event) {
		mu.Lock()
		defer mu.Unlock()
		evs = append(evs, ev)
		at = append(at, time.Since(start))
	}})
	mu.Lock()
	defer mu.Unlock()
	if evs[0].Type != sandbox.EventStage || evs[0].Stage != sandbox.StageRun {
		t.Errorf("first event %+v", evs[0])
	}
	var out strings.Builder
	truncs := 0
	var firstLine, lastLine time.Duration
	for i, ev := range evs {
		if ev.Type != sandbox.EventStdout {
			continue
		}
		if out.Len() == 0 {
			firstLine = at[i]
		}
		if strings.Contains(string(ev.Data), "line 2") {
			lastLine = at[i]
		}
		out.Write(ev.Data)
		if ev.Truncated {
			truncs++
		}
	}
	if out.String() != res.Stdout || !res.StdoutTruncated || truncs != 1 || len(res.Stdout) != 64 {
		t.Errorf("events %q (%d truncated), result %q", out.String(), truncs, res.Stdout)
	}
	if lastLine-firstLine < 300*time.Millisecond {
		t.Errorf("lines arrived %v apart: not as printed: %v %v", lastLine-firstLine, evs, at)
	}
}

// A job whose context ends is killed and reported cancelled.
func TestCancel(t *testing.T) {
	e := testenv.Engine(t, sandbox.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	j, err := e.Submit(ctx, sandbox.Request{Code: "import time; print('up', flush=True); time.sleep(60)"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(j.ID, "sbx-") {
		t.Errorf("id %q", j.ID)
	}
	time.Sleep(500 * time.Millisecond)
	cancel()
	res, err := j.Wait(context.Background())
	if err != nil || res.Status != sandbox.StatusCancelled || res.Wall > 5*time.Second {
		t.Fatalf("%v %+v", err, res)
	}
	testenv.NoLeftovers(t, e)
}
