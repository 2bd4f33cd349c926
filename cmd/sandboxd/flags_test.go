package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/daemon"
)

func configFile(t *testing.T, body string) (path, rootfs string) {
	t.Helper()
	dir := t.TempDir()
	rootfs = filepath.Join(dir, "rootfs.tar.zst")
	if err := os.WriteFile(rootfs, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "config.toml")
	body = strings.ReplaceAll(body, "ROOTFS", rootfs)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, rootfs
}

// Flags win over the file, the file over the defaults; a repeated flag replaces the
// file's list rather than adding to it.
func TestFlagsOverrideFile(t *testing.T) {
	path, rootfs := configFile(t, `
rootfs = "ROOTFS"
listen = ["unix:/tmp/a.sock", "127.0.0.1:9000"]
max_jobs = 7
max_queue = 3
log_format = "json"
[limits.default]
timeout = "20s"
memory = "1GB"
`)
	cases := []struct {
		name  string
		args  []string
		check func(t *testing.T, c daemon.Config)
	}{
		{"file only", nil, func(t *testing.T, c daemon.Config) {
			if c.MaxJobs != 7 || c.MaxQueue != 3 || c.LogFormat != "json" || c.Rootfs != rootfs || len(c.Listen) != 2 {
				t.Errorf("file not applied: %+v", c)
			}
			if c.Limits.Default.Timeout != daemon.Duration(20*time.Second) || c.Limits.Default.CPUs != 1 {
				t.Errorf("limits: %+v", c.Limits.Default)
			}
		}},
		{"flags win", []string{"--max-jobs", "2", "--log-format=text", "--default-timeout", "5s", "--max-memory", "2GB"}, func(t *testing.T, c daemon.Config) {
			if c.MaxJobs != 2 || c.MaxQueue != 3 || c.LogFormat != "text" {
				t.Errorf("flags not applied over the file: %+v", c)
			}
			if c.Limits.Default.Timeout != daemon.Duration(5*time.Second) || c.Limits.Default.Memory != 1<<30 || c.Limits.Max.Memory != 2<<30 {
				t.Errorf("limit flags: %+v %+v", c.Limits.Default, c.Limits.Max)
			}
		}},
		{"listen replaces", []string{"--listen", "unix:/tmp/b.sock", "--listen", "127.0.0.1:1"}, func(t *testing.T, c daemon.Config) {
			if strings.Join(c.Listen, " ") != "unix:/tmp/b.sock 127.0.0.1:1" {
				t.Errorf("listen = %v", c.Listen)
			}
		}},
		{"attack suite's flags", []string{"--rootfs", rootfs, "--state-dir", "st", "--run-dir", "/tmp/r", "--listen", "127.0.0.1:8123"}, func(t *testing.T, c daemon.Config) {
			if c.StateDir != filepath.Join(mustGetwd(t), "st") || c.RunDir != "/tmp/r" || c.Listen[0] != "127.0.0.1:8123" {
				t.Errorf("got %+v", c)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := loadConfig(append([]string{"--config", path}, tc.args...), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func mustGetwd(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

func TestConfigErrors(t *testing.T) {
	good, _ := configFile(t, `rootfs = "ROOTFS"`)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing named file", []string{"--config", "/nonexistent.toml"}, "/nonexistent.toml"},
		{"bad flag value", []string{"--config", good, "--max-memory", "much"}, `cannot parse size "much"`},
		{"invalid after flags", []string{"--config", good, "--max-jobs", "0"}, "max_jobs: must be at least 1"},
		{"stray argument", []string{"--config", good, "extra"}, `unexpected argument "extra"`},
		{"unknown flag", []string{"--config", good, "--nope"}, "flag provided but not defined"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := loadConfig(tc.args, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// --check-config prints the configuration in effect, exit 0, or what is wrong, exit 1.
func TestCheckConfig(t *testing.T) {
	path, _ := configFile(t, "rootfs = \"ROOTFS\"\nmax_jobs = 9\n")
	var out, errb bytes.Buffer
	if code := run([]string{"--config", path, "--max-queue", "5", "--check-config"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"max_jobs = 9\n", "max_queue = 5\n", `listen = ["unix:/run/sandboxd/sandboxd.sock", "127.0.0.1:8000"]`, "[limits.default]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--check-config output lacks %q:\n%s", want, out.String())
		}
	}
	bad, _ := configFile(t, "rootfs = \"ROOTFS\"\n[limits.default]\npids = 100000\n")
	out.Reset()
	errb.Reset()
	if code := run([]string{"--config", bad, "--check-config"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "limits.default.pids") {
		t.Errorf("bad config: exit %d, stderr %q", code, errb.String())
	}
}
