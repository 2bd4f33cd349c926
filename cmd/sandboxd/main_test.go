package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/sandboxd/sandboxd/internal/daemon"
	"github.com/sandboxd/sandboxd/internal/daemon/daemontest"
)

// The test binary doubles as sandboxd, so the tests run the real main as systemd would.
func TestMain(m *testing.M) {
	if os.Getenv("SANDBOXD_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func writeConfig(t *testing.T, path string, cfg daemon.Config) {
	t.Helper()
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func post(c *http.Client, path, body string) (int, map[string]any, error) {
	resp, err := c.Post("http://sandboxd"+path, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	err = json.Unmarshal(b, &out)
	return resp.StatusCode, out, err
}

// sandboxd as systemd runs sandboxd.service with sandboxd.socket: the socket is passed
// as fd 3 (LISTEN_PID is the daemon's own pid, as sh's exec keeps it), READY=1 comes
// once it serves, SIGHUP reloads the config file (RELOADING=1, READY=1), SIGTERM
// drains (STOPPING=1) and the running job's client gets its result before exit 0; the
// journal gets one line per job with its client.
func TestUnderSystemd(t *testing.T) {
	msgs := daemontest.NotifySocket(t)
	cfg := daemontest.Config(t, "sandboxd")
	confPath := filepath.Join(t.TempDir(), "config.toml")
	writeConfig(t, confPath, cfg)

	sock := filepath.Join(t.TempDir(), "activated.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	lnFile, err := ln.(*net.UnixListener).File()
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // the child holds the socket now
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" --config "$1"`, os.Args[0], confPath)
	cmd.ExtraFiles = []*os.File{lnFile}
	cmd.Env = append(os.Environ(), "SANDBOXD_TEST_MAIN=1", "LISTEN_FDS=1", "LISTEN_FDNAMES=sandboxd.socket")
	var journal syncBuffer
	cmd.Stdout, cmd.Stderr = &journal, &journal
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lnFile.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		// A test that failed half-way still lets the daemon clean up its jobs' mounts.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("sandboxd's output:\n%s", journal.String())
		}
	}()

	daemontest.Expect(t, msgs, "READY=1")
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	code, res, err := post(c, "/v1/execute", `{"code":"print(6*7)"}`)
	if err != nil || code != 200 || res["stdout"] != "42\n" {
		t.Fatalf("a job on the passed socket: %d %v %v", code, res, err)
	}
	if _, err := os.Stat(daemontest.Socket(cfg)); err == nil {
		t.Errorf("with a socket passed, the configured listen address is served too")
	}

	cfg.Limits.Default.Timeout = daemon.Duration(7 * time.Second)
	writeConfig(t, confPath, cfg)
	cmd.Process.Signal(syscall.SIGHUP)
	daemontest.Expect(t, msgs, "RELOADING=1")
	daemontest.Expect(t, msgs, "READY=1")
	if _, res, _ := post(c, "/v1/execute", `{"code":"pass"}`); res["limits"].(map[string]any)["timeout_ms"] != 7000.0 {
		t.Errorf("after SIGHUP, a job got limits %v, want the new 7s default timeout", res["limits"])
	}

	result := make(chan map[string]any, 1)
	go func() {
		_, res, _ := post(c, "/v1/execute", `{"code":"import time\ntime.sleep(2)\nprint('done')"}`)
		result <- res
	}()
	for !jobRunning(c) {
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	daemontest.Expect(t, msgs, "STOPPING=1")
	if res := <-result; res["status"] != "ok" || res["stdout"] != "done\n" {
		t.Errorf("the job running at SIGTERM: %v, want its result", res)
	}
	select {
	case err := <-exited:
		exited <- err // for the deferred cleanup
		if err != nil {
			t.Errorf("sandboxd exited with %v, want 0", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("sandboxd did not exit after SIGTERM")
	}
	log := journal.String()
	if n := strings.Count(log, `msg="job done"`); n != 3 {
		t.Errorf("%d job lines in the log, want 3:\n%s", n, log)
	}
	if !strings.Contains(log, `client="uid=0 pid=`) {
		t.Errorf("job lines do not name the client:\n%s", log)
	}
	if strings.Contains(log, "6*7") {
		t.Errorf("the job's code is in the log without log_code")
	}
}

func jobRunning(c *http.Client) bool {
	resp, err := c.Get("http://sandboxd/v1/admin/jobs")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var ans struct{ Jobs []any }
	json.NewDecoder(resp.Body).Decode(&ans)
	return len(ans.Jobs) > 0
}
