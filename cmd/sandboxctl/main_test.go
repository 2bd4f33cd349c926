package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/daemon/daemontest"
)

type outcome struct {
	stdout, stderr string
	code           int
}

// ctl runs sandboxctl in-process with args after the global ones.
func ctl(t *testing.T, global []string, stdin string, args ...string) outcome {
	t.Helper()
	var out, errb bytes.Buffer
	err := runApp(context.Background(), newApp(strings.NewReader(stdin), &out, &errb), append(append([]string{"sandboxctl"}, global...), args...))
	code := exitStatus(err, &errb)
	return outcome{out.String(), errb.String(), code}
}

func file(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Every command against a real daemon on its unix socket.
func TestCommands(t *testing.T) {
	cfg := daemontest.Config(t, "sandboxctl")
	d := daemontest.Start(t, cfg)
	sock := []string{"--socket", d.Socket}
	run := func(stdin string, args ...string) outcome { t.Helper(); return ctl(t, sock, stdin, args...) }

	t.Run("status", func(t *testing.T) {
		o := run("", "status")
		for _, want := range []string{"version:", "test", "cgroup:", "rootfs:", "sha256:", "0 running (of 4)", "gpus:", "default limits:", "timeout=10s"} {
			if !strings.Contains(o.stdout, want) {
				t.Errorf("status lacks %q:\n%s%s", want, o.stdout, o.stderr)
			}
		}
		var st map[string]any
		if o := run("", "status", "--json"); json.Unmarshal([]byte(o.stdout), &st) != nil || st["version"] != "test" {
			t.Errorf("status --json: %q", o.stdout)
		}
	})

	t.Run("run", func(t *testing.T) {
		cases := []struct {
			name, stdin    string
			args           []string
			stdout, stderr string
			code           int
		}{
			{"file", "", []string{file(t, "a.py", "import sys\nprint('out')\nprint('err', file=sys.stderr)")}, "out\n", "err\n", 0},
			{"exit code", "", []string{file(t, "b.py", "raise SystemExit(3)")}, "", "", 3},
			{"standard input", "print(input() if False else 'from stdin')", []string{"-"}, "from stdin\n", "", 0},
			{"job's stdin", "", []string{"--stdin", file(t, "in", "hello"), file(t, "c.py", "print(input().upper())")}, "HELLO\n", "", 0},
			{"timeout", "", []string{"--timeout", "500ms", file(t, "d.py", "while True: pass")}, "", "timed out after 500ms", 124},
			{"memory", "", []string{"--memory", "32MB", file(t, "e.py", "x = bytearray(200 << 20)")}, "", "ran out of memory", 137},
			{"bad limit", "", []string{"--memory", "lots", file(t, "f.py", "")}, "", "limits.memory", 125},
			{"no file", "", []string{"/nonexistent.py"}, "", "no such file", 125},
			{"args and extra files", "", []string{"--arg", "x", "--arg", "y z", file(t, "m.py", "import sys, util\nprint(sys.argv[1:], util.V)"),
				file(t, "util.py", "V = 7")}, "['x', 'y z'] 7\n", "", 0},
			{"lang", "", []string{"--lang", "bash", "--arg", "a", file(t, "s.sh", "echo $0 \"$@\"")}, "s.sh a\n", "", 0},
			{"tests", "", []string{"--test", file(t, "in1", "2") + ":" + file(t, "out1", "4"), "--test", file(t, "in2", "3") + ":" + file(t, "out2", "7"),
				file(t, "t.py", "print(int(input()) * 2)")}, "test 1: passed", "", 1},
			{"env", "", []string{"--env", "WHO=me", file(t, "v.py", "import os; print(os.environ['WHO'])")}, "me\n", "", 0},
			{"bad env", "", []string{"--env", "PATH=/x", file(t, "v2.py", "")}, "", "env.PATH", 125},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				o := run(c.stdin, append([]string{"run"}, c.args...)...)
				if o.code != c.code || !strings.HasPrefix(o.stdout, c.stdout) || (c.name != "tests" && o.stdout != c.stdout) || !strings.Contains(o.stderr, c.stderr) {
					t.Errorf("exit %d stdout %q stderr %q, want %d %q %q", o.code, o.stdout, o.stderr, c.code, c.stdout, c.stderr)
				}
			})
		}
		// --collect writes what the job left into a directory; a symlink is named, not written.
		dir := t.TempDir()
		o := run("", "run", "--collect", dir, "--glob", "out/*", file(t, "w.py", "import os\nos.mkdir('out')\nopen('out/r.txt', 'w').write('R')\nos.symlink('/etc/passwd', 'out/l')"))
		if b, err := os.ReadFile(filepath.Join(dir, "out/r.txt")); err != nil || string(b) != "R" || o.code != 0 || !strings.Contains(o.stderr, "not collected: out/l") {
			t.Errorf("collect: %v %q, exit %d, stderr %q", err, b, o.code, o.stderr)
		}
		if _, err := os.Lstat(filepath.Join(dir, "out/l")); err == nil {
			t.Error("the symlink was written")
		}
		o = run("", "run", "--json", file(t, "g.py", "print(1)"))
		var res map[string]any
		if json.Unmarshal([]byte(o.stdout), &res) != nil || res["status"] != "ok" || o.code != 0 {
			t.Errorf("run --json: %d %q", o.code, o.stdout)
		}
	})

	t.Run("jobs and kill", func(t *testing.T) {
		done := make(chan outcome, 1)
		go func() {
			done <- ctl(t, sock, "", "run", "--timeout", "60s", file(t, "s.py", "import time\ntime.sleep(50)"))
		}()
		var ans struct {
			Jobs []struct{ ID string } `json:"jobs"`
		}
		for deadline := time.Now().Add(30 * time.Second); len(ans.Jobs) == 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the job never showed in jobs --json")
			}
			json.Unmarshal([]byte(run("", "jobs", "--json").stdout), &ans)
		}
		id := ans.Jobs[0].ID
		if o := run("", "jobs"); !strings.Contains(o.stdout, id) || !strings.Contains(o.stdout, "timeout=1m0s") {
			t.Errorf("jobs table lacks the job and its limits:\n%s", o.stdout)
		}
		if o := run("", "kill", id); o.code != 0 || !strings.Contains(o.stdout, "killed "+id) {
			t.Errorf("kill: %+v", o)
		}
		if o := <-done; o.code != 137 || !strings.Contains(o.stderr, "killed by SIGKILL") {
			t.Errorf("the killed job's run: %+v, want exit 137", o)
		}
		if o := run("", "kill", "sbx-nope"); o.code != 125 || !strings.Contains(o.stderr, "HTTP 404") {
			t.Errorf("kill of an unknown job: %+v", o)
		}
	})

	t.Run("drain and resume", func(t *testing.T) {
		py := file(t, "p.py", "print('ran')")
		// Earlier jobs hold their slots until their containers are removed: start from
		// an idle daemon, so "1 running" below is the slow job.
		for deadline := time.Now().Add(30 * time.Second); !strings.Contains(run("", "status").stdout, " 0 running (of"); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the daemon never became idle: %s", run("", "status").stdout)
			}
		}
		slow := make(chan outcome, 1)
		go func() {
			slow <- ctl(t, sock, "", "run", file(t, "w.py", "import time\ntime.sleep(1.5)\nprint('finished')"))
		}()
		for !strings.Contains(run("", "status").stdout, "1 running") {
			time.Sleep(20 * time.Millisecond)
		}
		start := time.Now()
		if o := run("", "drain", "--wait"); o.code != 0 || !strings.Contains(o.stdout, "draining: 1 running") || !strings.Contains(o.stdout, "idle") {
			t.Errorf("drain --wait: %+v", o)
		}
		if time.Since(start) < 500*time.Millisecond {
			t.Errorf("drain --wait returned before the running job ended")
		}
		if o := <-slow; o.code != 0 || o.stdout != "finished\n" {
			t.Errorf("the job running at drain: %+v", o)
		}
		if o := run("", "run", py); o.code != 125 || !strings.Contains(o.stderr, "HTTP 503") {
			t.Errorf("run while draining: %+v, want 503", o)
		}
		if o := run("", "status"); !regexp.MustCompile(`(?m)^state: +draining`).MatchString(o.stdout) {
			t.Errorf("status while draining:\n%s", o.stdout)
		}
		if o := run("", "resume"); o.code != 0 {
			t.Errorf("resume: %+v", o)
		}
		if o := run("", "run", py); o.code != 0 || o.stdout != "ran\n" {
			t.Errorf("run after resume: %+v", o)
		}
	})

	t.Run("gpus", func(t *testing.T) {
		if o := run("", "gpus"); o.code != 0 || !strings.Contains(o.stdout, "no GPUs") {
			t.Errorf("gpus: %+v", o)
		}
		if o := run("", "gpus", "--json"); !strings.Contains(o.stdout, `"gpus": []`) {
			t.Errorf("gpus --json: %q", o.stdout)
		}
	})

	t.Run("rootfs", func(t *testing.T) {
		ls := run("", "rootfs", "ls")
		if !strings.Contains(ls.stdout, "*  sha256:") {
			t.Errorf("rootfs ls marks no image in use:\n%s", ls.stdout)
		}
		var tb bytes.Buffer
		tw := tar.NewWriter(&tb)
		tw.WriteHeader(&tar.Header{Name: "usr/bin/python3", Mode: 0o755, Size: 4, Typeflag: tar.TypeReg})
		fmt.Fprintf(tw, "%04d", time.Now().Nanosecond()%10000) // a new image each run
		tw.Close()
		o := run(tb.String(), "rootfs", "import", "-")
		if o.code != 0 || !strings.HasPrefix(o.stdout, "imported sha256:") {
			t.Fatalf("rootfs import: %+v", o)
		}
		digest := strings.Fields(o.stdout)[1]
		var ans struct {
			Images []struct {
				Digest string `json:"digest"`
				InUse  bool   `json:"in_use"`
			} `json:"images"`
		}
		json.Unmarshal([]byte(run("", "rootfs", "ls", "--json").stdout), &ans)
		found := false
		for _, img := range ans.Images {
			found = found || (img.Digest == digest && !img.InUse)
		}
		if !found {
			t.Errorf("rootfs ls --json lacks %s, not in use: %+v", digest, ans)
		}
		if o := run("junk", "rootfs", "import", "-"); o.code != 125 || !strings.Contains(o.stderr, "HTTP 400") {
			t.Errorf("import of junk: %+v", o)
		}
	})

	t.Run("no daemon", func(t *testing.T) {
		o := ctl(t, []string{"--socket", filepath.Join(t.TempDir(), "none.sock")}, "", "status")
		if o.code != 125 || !strings.Contains(o.stderr, "cannot reach sandboxd") {
			t.Errorf("status without a daemon: %+v", o)
		}
	})
}

// Over TCP, sandboxctl sends --token: the API token runs jobs, only the admin token
// reaches the admin commands.
func TestOverTCPWithTokens(t *testing.T) {
	cfg := daemontest.Config(t, "sandboxctl")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg.Listen = append(cfg.Listen, addr)
	cfg.APITokenFile = file(t, "api", "api-secret\n")
	cfg.AdminTokenFile = file(t, "admin", "admin-secret\n")
	daemontest.Start(t, cfg)
	url := "http://" + addr
	py := file(t, "x.py", "print('tcp')")

	cases := []struct {
		name   string
		global []string
		args   []string
		code   int
		want   string
	}{
		{"no token", []string{"--url", url}, []string{"run", py}, 125, "HTTP 401"},
		{"API token runs jobs", []string{"--url", url, "--token", "api-secret"}, []string{"run", py}, 0, "tcp"},
		{"API token is not admin", []string{"--url", url, "--token", "api-secret"}, []string{"status"}, 125, "HTTP 401"},
		{"admin token", []string{"--url", url, "--token-file", cfg.AdminTokenFile}, []string{"status"}, 0, "version:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := ctl(t, c.global, "", c.args...)
			if o.code != c.code || !strings.Contains(o.stdout+o.stderr, c.want) {
				t.Errorf("%+v, want exit %d and %q", o, c.code, c.want)
			}
		})
	}
}
