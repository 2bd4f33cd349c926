package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/sandboxd/sandboxd/internal/daemon/daemontest"
)

// A daemon whose log reader goes away (journald restarting, a parent that read its
// output and died) must not die of SIGPIPE at its next log line: it would leave its
// warm containers' mounts and cgroups behind. Here its stdout and stderr are a pipe
// whose reader is closed once it serves; SIGTERM then still shuts it down cleanly.
func TestClosedLogStreamDoesNotKill(t *testing.T) {
	cfg := daemontest.Config(t, "sandboxd")
	cfg.PoolSize = 1
	confPath := filepath.Join(t.TempDir(), "config.toml")
	writeConfig(t, confPath, cfg)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "--config", confPath)
	cmd.Env = append(os.Environ(), "SANDBOXD_TEST_MAIN=1")
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Read its log until it is ready and its warm container is up, then stop reading.
	lines := bufio.NewScanner(r)
	ready := false
	for !ready && lines.Scan() {
		ready = strings.Contains(lines.Text(), "sandboxd ready")
	}
	if !ready {
		t.Fatalf("sandboxd never said it was ready: %v", <-exited)
	}
	c := unixClient(daemontest.Socket(cfg))
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, body, err := post(c, "/v1/execute", `{"code": "print(1)"}`); err == nil && code == 200 && body["warm"] == true {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no warm job ran")
		}
	}
	r.Close()
	// Whatever it logs from here goes to a pipe nobody reads: its shutdown's lines at least.
	if code, _, err := post(c, "/v1/execute", `{"code": "print(2)"}`); err != nil || code != 200 {
		t.Fatalf("job after the log reader left: %d %v", code, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Fatalf("sandboxd died of %v", ws.Signal())
		}
		if err != nil {
			t.Fatalf("sandboxd exited: %v", err)
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatal("sandboxd did not stop on SIGTERM")
	}
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(cfg.RunDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		t.Errorf("left mounted: %s", m.Mountpoint)
	}
}
