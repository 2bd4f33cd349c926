package sandbox_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/sandbox"
)

// sessionEngine is a real engine on SANDBOXD_ROOTFS, which must hold ipykernel (the
// python image of `make images`); without it newSession skips, saying so.
func sessionEngine(t *testing.T, so sandbox.SessionOptions) *sandbox.Engine {
	t.Helper()
	return testenv.Engine(t, sandbox.Options{Sessions: so})
}

func newSession(t *testing.T, e *sandbox.Engine, req sandbox.SessionRequest) *sandbox.Session {
	t.Helper()
	s, err := e.CreateSession(context.Background(), req)
	if errors.Is(err, sandbox.ErrNoKernel) {
		t.Skipf("the test rootfs has no ipykernel (set SANDBOXD_ROOTFS to the python image with python3-ipykernel): %v", err)
	}
	if err != nil {
		t.Fatalf("create session: %v", err)
	}
	return s
}

func cell(t *testing.T, s *sandbox.Session, code string) *sandbox.CellOutcome {
	t.Helper()
	out, err := s.Execute(context.Background(), code, nil)
	if err != nil {
		t.Fatalf("execute %q: %v", code, err)
	}
	return out
}

// One session through its life: state across cells, output, rich results, an
// exception, an interrupted cell, files in and out, then delete.
func TestSessionCore(t *testing.T) {
	testenv.SkipOnSlowCPU(t, "an IPython kernel with numpy and pandas takes minutes to start")
	e := sessionEngine(t, sandbox.SessionOptions{})
	s := newSession(t, e, sandbox.SessionRequest{Limits: sandbox.Limits{Timeout: 2 * time.Second}})

	t.Run("state", func(t *testing.T) {
		cell(t, s, "x = 40")
		out := cell(t, s, "print('hi'); x + 2")
		if out.Stdout != "hi\n" || len(out.Results) != 1 || string(out.Results[0].Data["text/plain"]) != `"42"` {
			t.Fatalf("got %+v", out)
		}
		if out.ExecutionCount != 2 || out.Status != "ok" {
			t.Fatalf("count %d status %q", out.ExecutionCount, out.Status)
		}
	})
	t.Run("rich", func(t *testing.T) {
		out := cell(t, s, "import pandas as pd\npd.DataFrame({'a': [1, 2]})")
		if len(out.Results) != 1 || !strings.Contains(string(out.Results[0].Data["text/html"]), "<table") {
			t.Fatalf("no DataFrame HTML: %+v", out)
		}
		out = cell(t, s, "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3]); plt.show()")
		found := false
		for _, r := range out.Results {
			if png := string(r.Data["image/png"]); strings.HasPrefix(png, `"iVBORw0KGgo`) {
				found = true
			}
		}
		if !found {
			t.Fatalf("no PNG: %+v", out)
		}
	})
	t.Run("error", func(t *testing.T) {
		out := cell(t, s, "1/0")
		if out.Status != "error" || out.Error == nil || out.Error.Name != "ZeroDivisionError" || len(out.Error.Traceback) == 0 {
			t.Fatalf("got %+v", out)
		}
		if out := cell(t, s, "x"); string(out.Results[0].Data["text/plain"]) != `"40"` {
			t.Fatalf("state lost after an error: %+v", out)
		}
	})
	t.Run("interrupt", func(t *testing.T) {
		out := cell(t, s, "import time\ntime.sleep(30)")
		if !out.TimedOut || out.Error == nil || out.Error.Name != "KeyboardInterrupt" || out.SessionEnded != "" {
			t.Fatalf("got %+v", out)
		}
		if out := cell(t, s, "x + 1"); string(out.Results[0].Data["text/plain"]) != `"41"` {
			t.Fatalf("session did not survive the interrupt: %+v", out)
		}
	})
	t.Run("files", func(t *testing.T) {
		if err := s.PutFile("data/in.txt", []byte("hello")); err != nil {
			t.Fatal(err)
		}
		cell(t, s, "open('/work/data/out.txt', 'w').write(open('data/in.txt').read().upper())\nimport os; os.symlink('/etc/shadow', '/work/link')")
		b, err := s.GetFile("data/out.txt")
		if err != nil || string(b) != "HELLO" {
			t.Fatalf("got %q, %v", b, err)
		}
		if _, err := s.GetFile("link"); !errors.Is(err, sandbox.ErrNotRegularFile) {
			t.Fatalf("a symlink was read: %v", err)
		}
		var fe *sandbox.FieldError
		if err := s.PutFile("../x", nil); !errors.As(err, &fe) {
			t.Fatalf("../x accepted: %v", err)
		}
		list, _, err := s.ListFiles()
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]string{}
		for _, f := range list {
			names[f.Name] = f.Type
		}
		if names["data/out.txt"] != "file" || names["link"] != "symlink" {
			t.Fatalf("listing %v", list)
		}
	})
	t.Run("contained", func(t *testing.T) {
		out := cell(t, s, `
import os, socket
st = open('/proc/self/status').read()
caps = [l for l in st.splitlines() if l.startswith('Cap')]
print(all(l.split()[1] == '0000000000000000' for l in caps))
try:
    open('/etc/shadow').read(); print('shadow readable')
except OSError: print('no shadow')
try:
    open('/usr/x', 'w'); print('root writable')
except OSError: print('root read-only')
try:
    socket.create_connection(('1.1.1.1', 53), timeout=1); print('network')
except OSError: print('no network')
print(sorted(os.listdir('/sys/class/net')) if os.path.exists('/sys/class/net') else ['lo'])
`)
		want := "True\nno shadow\nroot read-only\nno network\n['lo']\n"
		if out.Stdout != want {
			t.Fatalf("got %q want %q (%+v)", out.Stdout, want, out.Error)
		}
	})
	info, err := e.DeleteSession(s.ID())
	if err != nil || info.Status != sandbox.SessionDeleted {
		t.Fatalf("delete: %+v %v", info, err)
	}
	if _, err := s.Execute(context.Background(), "1", nil); !errors.Is(err, sandbox.ErrSessionEnded) {
		t.Fatalf("a deleted session ran a cell: %v", err)
	}
	testenv.NoLeftovers(t, e)
}

// Every way a session ends on its own says why, and leaves nothing.
func TestSessionEnds(t *testing.T) {
	testenv.SkipOnSlowCPU(t, "an IPython kernel with numpy and pandas takes minutes to start")
	e := sessionEngine(t, sandbox.SessionOptions{Max: 3})
	cases := []struct {
		name string
		req  sandbox.SessionRequest
		code string
		want sandbox.SessionStatus
	}{
		{"exit", sandbox.SessionRequest{}, "import os; os._exit(3)", sandbox.SessionKernelDied},
		{"kill", sandbox.SessionRequest{}, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)", sandbox.SessionKernelDied},
		{"memory", sandbox.SessionRequest{Limits: sandbox.Limits{Memory: 256 << 20}}, "b = bytearray(1 << 30)", sandbox.SessionMemoryLimit},
		{"stubborn", sandbox.SessionRequest{Limits: sandbox.Limits{Timeout: time.Second}},
			"import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)", sandbox.SessionCellTimeout},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSession(t, e, c.req)
			start := time.Now()
			out := cell(t, s, c.code)
			if out.SessionEnded != c.want {
				t.Fatalf("ended %q (%s), want %q", out.SessionEnded, out.SessionEndDetail, c.want)
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Fatalf("took %s", d)
			}
			if _, err := e.Session(s.ID()); !errors.Is(err, sandbox.ErrSessionNotFound) {
				t.Fatalf("still listed: %v", err)
			}
			testenv.NoLeftovers(t, e)
		})
	}
	t.Run("idle", func(t *testing.T) {
		s := newSession(t, e, sandbox.SessionRequest{IdleTTL: time.Second})
		cell(t, s, "1")
		select {
		case <-s.Ended():
		case <-time.After(10 * time.Second):
			t.Fatal("did not expire")
		}
		if st := s.Info().Status; st != sandbox.SessionIdleExpired {
			t.Fatalf("status %q", st)
		}
	})
	t.Run("lifetime", func(t *testing.T) {
		s := newSession(t, e, sandbox.SessionRequest{Lifetime: 2 * time.Second, IdleTTL: time.Second})
		out := cell(t, s, "import time; time.sleep(0.6)")
		cell(t, s, "import time; time.sleep(0.6)")
		if out.SessionEnded == "" {
			select {
			case <-s.Ended():
			case <-time.After(10 * time.Second):
				t.Fatal("did not end")
			}
		}
		if st := s.Info().Status; st != sandbox.SessionLifetimeExpired && st != sandbox.SessionIdleExpired {
			t.Fatalf("status %q", st)
		}
	})
	t.Run("cap", func(t *testing.T) {
		var ss []*sandbox.Session
		for range 3 {
			ss = append(ss, newSession(t, e, sandbox.SessionRequest{}))
		}
		if _, err := e.CreateSession(context.Background(), sandbox.SessionRequest{}); !errors.Is(err, sandbox.ErrSessionLimit) {
			t.Fatalf("over the cap: %v", err)
		}
		// Two sessions never see each other: files, processes, signals.
		a, b := ss[0], ss[1]
		cell(t, a, "open('/work/mine', 'w').write('a'); import os; print(os.getpid())")
		out := cell(t, b, "import os\nprint(os.path.exists('/work/mine'), sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))")
		if !strings.HasPrefix(out.Stdout, "False [1, ") {
			t.Fatalf("b sees %q", out.Stdout)
		}
		out = cell(t, b, "import os, signal\ntry:\n  os.kill(99, signal.SIGKILL)\nexcept OSError as e: print(e.errno)")
		if strings.TrimSpace(out.Stdout) != "3" { // ESRCH: no such process in its namespace
			t.Fatalf("kill: %q", out.Stdout)
		}
		for _, s := range ss {
			if _, err := e.DeleteSession(s.ID()); err != nil {
				t.Fatal(err)
			}
		}
		testenv.NoLeftovers(t, e)
	})
}

// With a pool ready, creating a session takes a started kernel.
func TestSessionPool(t *testing.T) {
	testenv.SkipOnSlowCPU(t, "an IPython kernel with numpy and pandas takes minutes to start")
	e := sessionEngine(t, sandbox.SessionOptions{Pool: 1})
	deadline := time.Now().Add(90 * time.Second)
	var s *sandbox.Session
	for {
		start := time.Now()
		s = newSession(t, e, sandbox.SessionRequest{})
		took := time.Since(start)
		if s.Info().Warm {
			t.Logf("create from the pool: %s", took)
			if took > 150*time.Millisecond {
				t.Errorf("create from the pool took %s", took)
			}
			break
		}
		if _, err := e.DeleteSession(s.ID()); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the pool never filled")
		}
		time.Sleep(2 * time.Second)
	}
	if out := cell(t, s, "import numpy; numpy.arange(3).sum()"); string(out.Results[0].Data["text/plain"]) != `"3"` {
		t.Fatalf("got %+v", out)
	}
}
