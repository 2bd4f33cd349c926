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

func run(t *testing.T, e *sandbox.Engine, req sandbox.Request) *sandbox.Result {
	t.Helper()
	res, err := e.Run(context.Background(), req)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	testenv.NoLeftovers(t, e)
	return res
}

// Each case runs a real job and checks how it ended; after each, nothing is left.
func TestStatuses(t *testing.T) {
	e := testenv.Engine(t, sandbox.Options{OutputLimit: 4096})
	cases := []struct {
		name   string
		req    sandbox.Request
		status sandbox.Status
		check  func(t *testing.T, r *sandbox.Result)
	}{
		{"ok", sandbox.Request{Code: `print("hello")`}, sandbox.StatusOK, func(t *testing.T, r *sandbox.Result) {
			if r.Stdout != "hello\n" || r.ExitCode != 0 {
				t.Errorf("stdout %q exit %d", r.Stdout, r.ExitCode)
			}
		}},
		{"exit code", sandbox.Request{Code: "import sys\nprint('x', file=sys.stderr)\nsys.exit(7)"}, sandbox.StatusError, func(t *testing.T, r *sandbox.Result) {
			if r.ExitCode != 7 || r.Stderr != "x\n" {
				t.Errorf("exit %d stderr %q", r.ExitCode, r.Stderr)
			}
		}},
		{"exception", sandbox.Request{Code: "1/0"}, sandbox.StatusError, func(t *testing.T, r *sandbox.Result) {
			if r.ExitCode != 1 || !strings.Contains(r.Stderr, "ZeroDivisionError") || !strings.Contains(r.Stderr, `File "/work/main.py"`) {
				t.Errorf("exit %d stderr %q", r.ExitCode, r.Stderr)
			}
		}},
		{"self kill", sandbox.Request{Code: "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"}, sandbox.StatusSignaled, func(t *testing.T, r *sandbox.Result) {
			if r.Signal != "SIGKILL" {
				t.Errorf("signal %q", r.Signal)
			}
		}},
		{"segfault", sandbox.Request{Code: "import ctypes\nctypes.string_at(0)"}, sandbox.StatusSignaled, func(t *testing.T, r *sandbox.Result) {
			if r.Signal != "SIGSEGV" {
				t.Errorf("signal %q", r.Signal)
			}
		}},
		{"timeout", sandbox.Request{Code: "while True: pass", Limits: sandbox.Limits{Timeout: 500 * time.Millisecond}}, sandbox.StatusTimeout, func(t *testing.T, r *sandbox.Result) {
			if r.Wall < 500*time.Millisecond || r.Wall > 3*time.Second {
				t.Errorf("wall %v for a 500ms timeout", r.Wall)
			}
		}},
		{"timeout escapes", sandbox.Request{Code: `
import os, signal, time, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        while True: time.sleep(1)   # grandchild holds stdout open
    os._exit(0)
print("parent waits", flush=True)
while True: pass
`, Limits: sandbox.Limits{Timeout: time.Second}}, sandbox.StatusTimeout, func(t *testing.T, r *sandbox.Result) {
			if r.Stdout != "parent waits\n" {
				t.Errorf("stdout %q", r.Stdout)
			}
			if r.Wall > 4*time.Second {
				t.Errorf("wall %v: the kill waited for something", r.Wall)
			}
		}},
		{"memory", sandbox.Request{Code: "x = bytearray(200 << 20)\nprint(len(x))", Limits: sandbox.Limits{Memory: 64 << 20}}, sandbox.StatusMemoryLimit, func(t *testing.T, r *sandbox.Result) {
			if !r.OOMKilled {
				t.Error("oom_killed is false")
			}
		}},
		{"stdin", sandbox.Request{Code: "import sys\nprint(sys.stdin.read().upper(), end='')", Stdin: []byte("abc\n")}, sandbox.StatusOK, func(t *testing.T, r *sandbox.Result) {
			if r.Stdout != "ABC\n" {
				t.Errorf("stdout %q", r.Stdout)
			}
		}},
		{"output capped", sandbox.Request{Code: "import sys\nsys.stdout.write('a' * 100000)\nsys.stderr.write('b' * 10)"}, sandbox.StatusOK, func(t *testing.T, r *sandbox.Result) {
			if len(r.Stdout) != 4096 || !r.StdoutTruncated || r.Stderr != "bbbbbbbbbb" || r.StderrTruncated {
				t.Errorf("stdout %d bytes truncated=%v, stderr %q truncated=%v", len(r.Stdout), r.StdoutTruncated, r.Stderr, r.StderrTruncated)
			}
		}},
		{"storage cap", sandbox.Request{Code: `
import errno
try:
    with open("big", "wb") as f:
        f.write(b"x" * (8 << 20))
except OSError as e:
    print(errno.errorcode[e.errno])
`, Limits: sandbox.Limits{Storage: 4 << 20}}, sandbox.StatusOK, func(t *testing.T, r *sandbox.Result) {
			if r.Stdout != "ENOSPC\n" {
				t.Errorf("stdout %q stderr %q", r.Stdout, r.Stderr)
			}
		}},
		{"identity", sandbox.Request{Code: `
import os, socket
print(os.getuid(), os.getgid(), os.getcwd(), socket.gethostname())
print([n for _, n in socket.if_nameindex()])
st = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
print(st["CapEff"], st["CapPrm"], st["CapBnd"], st["NoNewPrivs"], st["Seccomp"])
`}, sandbox.StatusOK, func(t *testing.T, r *sandbox.Result) {
			if r.Stdout != "1000 1000 /work sandbox\n['lo']\n0000000000000000 0000000000000000 0000000000000000 1 2\n" {
				t.Errorf("stdout %q stderr %q", r.Stdout, r.Stderr)
			}
		}},
		{"read-only rootfs", sandbox.Request{Code: `
for p in ("/usr/bin/evil", "/etc/passwd"):
    try:
        open(p, "w")
        print("wrote", p)
    except OSError as e:
        print(e.errno)
`}, sandbox.StatusOK, func(t *testing.T, r *sandbox.Result) {
			if r.Stdout != "30\n30\n" { // EROFS
				t.Errorf("stdout %q", r.Stdout)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, e, c.req)
			if r.Status != c.status {
				t.Fatalf("status %q, want %q (exit %d signal %q stderr %q)", r.Status, c.status, r.ExitCode, r.Signal, r.Stderr)
			}
			c.check(t, r)
		})
	}
}

func TestConcurrentJobsAndQueue(t *testing.T) {
	e := testenv.Engine(t, sandbox.Options{MaxJobs: 2, MaxQueue: 1})
	var wg sync.WaitGroup
	results := make([]error, 6)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, results[i] = e.Run(context.Background(), sandbox.Request{Code: "import time; time.sleep(0.5)"})
		}()
	}
	wg.Wait()
	var busy, ok int
	for _, err := range results {
		switch {
		case err == nil:
			ok++
		case err == sandbox.ErrBusy:
			busy++
		default:
			t.Errorf("unexpected error %v", err)
		}
	}
	// 2 run, 1 waits; the other 3 are refused at once.
	if ok != 3 || busy != 3 {
		t.Errorf("ran %d, refused %d; want 3 and 3", ok, busy)
	}
}

func TestRefusals(t *testing.T) {
	e := testenv.Engine(t, sandbox.Options{})
	cases := []struct {
		req   sandbox.Request
		field string
	}{
		{sandbox.Request{Limits: sandbox.Limits{Memory: 64 << 40}}, "limits.memory"},
		{sandbox.Request{Limits: sandbox.Limits{CPUs: 100}}, "limits.cpus"},
		{sandbox.Request{Limits: sandbox.Limits{Timeout: time.Hour}}, "limits.timeout"},
		{sandbox.Request{Limits: sandbox.Limits{Pids: 1}}, "limits.pids"},
		{sandbox.Request{Limits: sandbox.Limits{Storage: 1}}, "limits.storage"},
	}
	for _, c := range cases {
		_, err := e.Run(context.Background(), c.req)
		var fe *sandbox.FieldError
		if !asField(err, &fe) || fe.Field != c.field {
			t.Errorf("%+v: error %v, want a field error on %s", c.req.Limits, err, c.field)
		}
	}
	// An unknown language names the field and lists what there is.
	_, err := e.Run(context.Background(), sandbox.Request{Language: "cobol"})
	var fe *sandbox.FieldError
	if !asField(err, &fe) || fe.Field != "language" || !strings.Contains(err.Error(), "python") {
		t.Errorf("cobol: %v", err)
	}
}
