package main

import (
	"strings"
	"testing"

	"github.com/sandboxd/sandboxd/internal/daemon/daemontest"
)

// submit, get, cancel, jobs and run --stream against a real daemon.
func TestAsyncCommands(t *testing.T) {
	cfg := daemontest.Config(t, "sandboxctl")
	cfg.MaxJobs = 1
	d := daemontest.Start(t, cfg)
	sock := []string{"--socket", d.Socket}
	run := func(stdin string, args ...string) outcome { t.Helper(); return ctl(t, sock, stdin, args...) }

	o := run("import sys\nprint('async out')\nsys.exit(3)", "submit", "-")
	id := strings.TrimSpace(o.stdout)
	if o.code != 0 || !strings.HasPrefix(id, "sbx-") {
		t.Fatalf("submit: %+v", o)
	}
	if o := run("", "get", "--wait", id); o.code != 3 || o.stdout != "async out\n" {
		t.Errorf("get --wait: %+v", o)
	}

	long := strings.TrimSpace(run("import time; time.sleep(30)", "submit", "-").stdout)
	queued := strings.TrimSpace(run("print(1)", "submit", "-").stdout)
	for i := 0; i < 200 && !strings.Contains(run("", "get", long).stdout, "running"); i++ {
	}
	o = run("", "jobs")
	if !strings.Contains(o.stdout, long+"  running") || !strings.Contains(o.stdout, queued+"  queued") {
		t.Errorf("jobs:\n%s%s", o.stdout, o.stderr)
	}
	if o := run("", "cancel", queued); o.code != 0 || o.stdout != "cancelled "+queued+" cancelled\n" {
		t.Errorf("cancel queued: %+v", o)
	}
	if o := run("", "cancel", long); o.code != 0 {
		t.Errorf("cancel running: %+v", o)
	}
	if o := run("", "get", "--wait", long); !strings.Contains(o.stderr, "cancelled") || o.code != exitDaemon {
		t.Errorf("get a cancelled job: %+v", o)
	}
	if o := run("", "get", "sbx-nosuchjob"); o.code != exitDaemon || !strings.Contains(o.stderr, "no such job") {
		t.Errorf("get unknown: %+v", o)
	}

	o = run("import sys\nprint('out', flush=True)\nsys.stderr.buffer.write(b'err \\xff\\n')\nsys.exit(2)", "run", "--stream", "-")
	if o.code != 2 || o.stdout != "out\n" || o.stderr != "err \xff\n" {
		t.Errorf("run --stream: %+v", o)
	}
}
