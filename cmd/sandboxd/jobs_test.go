package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/api"
	"github.com/sandboxd/sandboxd/internal/daemon/daemontest"
)

// startSandboxd runs the real main on confPath as a child process and waits until it
// serves on sock.
func startSandboxd(t *testing.T, confPath, sock string, journal *syncBuffer) (*exec.Cmd, chan error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "--config", confPath)
	cmd.Env = append(os.Environ(), "SANDBOXD_TEST_MAIN=1")
	cmd.Stdout, cmd.Stderr = journal, journal
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	c := unixClient(sock)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := c.Get("http://sandboxd/healthz"); err == nil {
			resp.Body.Close()
			return cmd, exited
		}
		select {
		case err := <-exited:
			t.Fatalf("sandboxd exited: %v\n%s", err, journal.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandboxd did not serve in 2 minutes:\n%s", journal.String())
		}
	}
}

func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
}

func getJob(t *testing.T, c *http.Client, id, wait string) api.Job {
	t.Helper()
	resp, err := c.Get("http://sandboxd/v1/jobs/" + id + "?wait=" + wait)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var j api.Job
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(b, &j) != nil {
		t.Fatalf("GET job %s: HTTP %d %s", id, resp.StatusCode, b)
	}
	return j
}

func submitJob(t *testing.T, c *http.Client, body string) api.Job {
	t.Helper()
	resp, err := c.Post("http://sandboxd/v1/jobs", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var j api.Job
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 202 || json.Unmarshal(b, &j) != nil {
		t.Fatalf("submit: HTTP %d %s", resp.StatusCode, b)
	}
	return j
}

// After SIGKILL, a restarted sandboxd still serves every finished job's result, bytes
// exact; reports the job that was running as lost; and runs again the one submitted
// with retry, which then finishes.
func TestJobsSurviveSIGKILL(t *testing.T) {
	cfg := daemontest.Config(t, "sandboxd")
	// The rootfs cache is shared across runs; the job store is this test's alone (its
	// run dir's, removed at the end by daemontest).
	cfg.PoolSize = 0
	confPath := filepath.Join(t.TempDir(), "config.toml")
	writeConfig(t, confPath, cfg)
	sock := daemontest.Socket(cfg)
	var journal syncBuffer
	defer func() {
		if t.Failed() {
			t.Logf("sandboxd's output:\n%s", journal.String())
		}
	}()
	cmd, exited := startSandboxd(t, confPath, sock, &journal)
	c := unixClient(sock)

	kept := submitJob(t, c, `{"code": "import sys; sys.stdout.buffer.write(b'kept \\xff\\x00')", "output_encoding": "base64"}`)
	if j := getJob(t, c, kept.ID, "30s"); j.State != "done" || j.Result.Stdout != "a2VwdCD/AA==" {
		t.Fatalf("before the crash: %+v %+v", j, j.Result)
	}
	// The lost job's callback is delivered by the next run, when it finds the job lost.
	called := make(chan api.Job, 1)
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var j api.Job
		json.NewDecoder(r.Body).Decode(&j)
		called <- j
	}))
	defer cb.Close()
	lost := submitJob(t, c, `{"code": "import time; time.sleep(60)", "limits": {"timeout": 90}, "callback_url": "`+cb.URL+`"}`)
	retried := submitJob(t, c, `{"code": "import os, time\nif not os.path.exists('/tmp/x'): time.sleep(3)\nprint('ran again')", "retry": true}`)
	for _, id := range []string{lost.ID, retried.ID} {
		for deadline := time.Now().Add(30 * time.Second); getJob(t, c, id, "").State != "running"; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("job %s never ran", id)
			}
		}
	}
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited

	cmd, exited = startSandboxd(t, confPath, sock, &journal)
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
		}
	}()
	c = unixClient(sock)
	if j := getJob(t, c, kept.ID, ""); j.State != "done" || j.Result == nil || j.Result.Stdout != "a2VwdCD/AA==" || j.Result.Status != "ok" {
		t.Errorf("the finished job after the restart: %+v %+v", j, j.Result)
	}
	if j := getJob(t, c, lost.ID, ""); j.State != "lost" || j.Result != nil || j.LostReason == "" {
		t.Errorf("the job running at the crash: %+v", j)
	}
	select {
	case j := <-called:
		if j.ID != lost.ID || j.State != "lost" {
			t.Errorf("callback of the lost job: %+v", j)
		}
	case <-time.After(20 * time.Second):
		t.Error("the lost job's callback never came")
	}
	j := getJob(t, c, retried.ID, "30s")
	if j.State == "running" || j.State == "queued" {
		j = getJob(t, c, retried.ID, "30s")
	}
	if j.State != "done" || j.Runs != 2 || j.Result.Stdout != "ran again\n" {
		t.Errorf("the retry job after the restart: %+v %+v", j, j.Result)
	}
	resp, err := c.Get("http://sandboxd/v1/jobs?state=lost")
	if err != nil {
		t.Fatal(err)
	}
	var list api.JobList
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if len(list.Jobs) != 1 || list.Jobs[0].ID != lost.ID {
		t.Errorf("lost jobs: %+v", list)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("sandboxd did not exit after SIGTERM")
	}
}
