// Package daemontest starts real sandboxd daemons for tests, on a unix socket in a
// temp dir. Tests that use it skip, saying why, unless run as root with SANDBOXD_ROOTFS
// set (make test sets it).
package daemontest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/daemon"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

var daemons atomic.Int64

// Config returns a daemon configuration of its own for the test: run dir, socket and
// jobs cgroup (call it before Start). The state dir, where the rootfs is unpacked, is kept across runs under
// SANDBOXD_TEST_STATE (default /var/tmp/sandboxd-test) as daemon-<name>: one per test
// package, because a starting daemon sweeps its store's unfinished imports, which must
// never be another test process's.
func Config(t testing.TB, name string) daemon.Config {
	t.Helper()
	tarball := testenv.Tarball(t)
	cfg := daemon.Default()
	cfg.StateDir = filepath.Join(testenv.StateDir(), "daemon-"+name)
	// Its cleanup is registered before Start's, so it runs after the daemon stops.
	cfg.RunDir = testenv.RunDir(t)
	cfg.Rootfs = tarball
	cfg.Listen = []string{"unix:" + filepath.Join(cfg.RunDir, "sandboxd.sock")}
	cfg.CgroupName = fmt.Sprintf("sandboxd-test-d%d-%d", os.Getpid(), daemons.Add(1))
	t.Cleanup(func() { os.RemoveAll(cfg.JobsDir()) }) // the async job store of this run dir
	return cfg
}

// Socket is the path of cfg's unix socket.
func Socket(cfg daemon.Config) string { return cfg.Listen[0][len("unix:"):] }

// Daemon is a running daemon.
type Daemon struct {
	*daemon.Daemon
	Socket string
	stop   context.CancelFunc
	done   chan error
}

// Start runs a daemon with cfg until Stop or the end of the test.
func Start(t testing.TB, cfg daemon.Config) *Daemon {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	ctx, stop := context.WithCancel(context.Background())
	d := &Daemon{Daemon: daemon.New(cfg, daemon.Options{Logger: log, Version: "test", NoGPUs: true}),
		Socket: Socket(cfg), stop: stop, done: make(chan error, 1)}
	go func() { d.done <- d.Run(ctx) }()
	select {
	case <-d.Ready():
	case err := <-d.done:
		stop()
		t.Fatalf("daemon did not start: %v", err)
	case <-time.After(2 * time.Minute):
		stop()
		t.Fatal("daemon did not start in 2 minutes")
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("daemon: %v", err)
		}
	})
	return d
}

// Stop drains the daemon as SIGTERM does and returns what Run returned. It may be
// called more than once.
func (d *Daemon) Stop() error {
	d.stop()
	err, ok := <-d.done
	if ok {
		close(d.done)
	}
	return err
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// NotifySocket stands in for systemd's notify socket: it sets NOTIFY_SOCKET for the
// test and returns each datagram the daemon sends (e.g. "READY=1\nSTATUS=serving").
func NotifySocket(t testing.TB) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return msgs
}

// Expect waits for a notify message holding want (one line of it, e.g. "READY=1"),
// skipping watchdog pings and status lines; another message is an error.
func Expect(t testing.TB, msgs <-chan string, want string) {
	t.Helper()
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("notify socket closed while waiting for %s", want)
			}
			lines := strings.Split(m, "\n")
			if slices.Contains(lines, want) {
				return
			}
			if lines[0] == "WATCHDOG=1" || strings.HasPrefix(lines[0], "STATUS=") {
				continue
			}
			t.Fatalf("systemd was told %q while waiting for %s", m, want)
		case <-time.After(2 * time.Minute):
			t.Fatalf("systemd was never told %s", want)
		}
	}
}
