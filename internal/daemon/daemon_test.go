package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/daemon"
	"github.com/sandboxd/sandboxd/internal/daemon/daemontest"
)

// unixClient reaches the daemon's socket.
func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
}

type answer struct {
	code int
	body map[string]any
}

func call(t *testing.T, c *http.Client, method, path, body string) answer {
	t.Helper()
	req, _ := http.NewRequest(method, "http://sandboxd"+path, strings.NewReader(body))
	resp, err := c.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, path, err)
		return answer{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{code: resp.StatusCode}
	if err := json.Unmarshal(b, &a.body); err != nil {
		t.Errorf("%s %s: %d %q is not JSON", method, path, resp.StatusCode, b)
	}
	return a
}

// waitRunning waits until the daemon lists n running jobs.
func waitRunning(t *testing.T, c *http.Client, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if jobs, _ := call(t, c, "GET", "/v1/admin/jobs", "").body["jobs"].([]any); len(jobs) == n {
			return
		}
	}
	t.Fatalf("never saw %d running jobs", n)
}

// Stopping the daemon (what SIGTERM does) while a job runs: new jobs get 503, the
// running job finishes and its client gets its result, and Run returns nil. systemd
// hears READY=1 once the socket is up, and STOPPING=1.
func TestStopDrainsRunningJob(t *testing.T) {
	msgs := daemontest.NotifySocket(t)
	cfg := daemontest.Config(t, "daemon")
	d := daemontest.Start(t, cfg)
	daemontest.Expect(t, msgs, "READY=1")
	if _, err := os.Stat(d.Socket); err != nil {
		t.Fatalf("ready, but the socket is not there: %v", err)
	}
	c := unixClient(d.Socket)
	result := make(chan answer, 1)
	go func() {
		result <- call(t, c, "POST", "/v1/execute", `{"code":"import time\ntime.sleep(2)\nprint('finished')"}`)
	}()
	waitRunning(t, c, 1)
	stopped := make(chan error, 1)
	go func() { stopped <- d.Stop() }()
	daemontest.Expect(t, msgs, "STOPPING=1")

	if a := call(t, c, "POST", "/v1/execute", `{"code":"print(1)"}`); a.code != http.StatusServiceUnavailable {
		t.Errorf("a new job while draining: %d %v, want 503", a.code, a.body)
	}
	if a := call(t, c, "GET", "/v1/admin/status", ""); a.body["state"] != "draining" {
		t.Errorf("status while stopping says state %v, want draining", a.body["state"])
	}
	if a := call(t, c, "GET", "/healthz", ""); a.code != 200 {
		t.Errorf("healthz while draining: %d, want 200 (alive)", a.code)
	}
	if a := call(t, c, "GET", "/readyz", ""); a.code != 503 || a.body["status"] != "draining" {
		t.Errorf("readyz while draining: %d %v, want 503 draining", a.code, a.body)
	}
	a := <-result
	if a.code != 200 || a.body["status"] != "ok" || a.body["stdout"] != "finished\n" {
		t.Errorf("the running job's answer: %d %v, want its result", a.code, a.body)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Run returned %v, want nil", err)
	}
	if _, err := os.Stat(d.Socket); err == nil {
		t.Errorf("the socket is still there after stop")
	}
}

// /readyz says 200 only while the node takes work: after its pool has filled once, with
// a slot or queue place free, and not while an admin drains it; /healthz stays 200.
func TestReadyz(t *testing.T) {
	cfg := daemontest.Config(t, "daemon")
	cfg.MaxJobs, cfg.MaxQueue, cfg.PoolSize = 1, 0, 1
	d := daemontest.Start(t, cfg)
	c := unixClient(d.Socket)
	ready := func() answer {
		t.Helper()
		var a answer
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if a = call(t, c, "GET", "/readyz", ""); a.code == 200 {
				break
			}
		}
		return a
	}
	if a := ready(); a.code != 200 || a.body["status"] != "ready" || a.body["max_jobs"] != 1.0 {
		t.Fatalf("readyz never became ready: %d %v", a.code, a.body)
	}
	result := make(chan answer, 1)
	go func() { result <- call(t, c, "POST", "/v1/execute", `{"code":"import time\ntime.sleep(2)"}`) }()
	waitRunning(t, c, 1)
	if a := call(t, c, "GET", "/readyz", ""); a.code != 503 || a.body["status"] != "busy" || a.body["running"] != 1.0 {
		t.Errorf("readyz with its one slot taken and no queue: %d %v, want 503 busy", a.code, a.body)
	}
	if a := call(t, c, "GET", "/healthz", ""); a.code != 200 {
		t.Errorf("healthz while busy: %d, want 200", a.code)
	}
	if a := <-result; a.body["status"] != "ok" {
		t.Errorf("the job: %d %v", a.code, a.body)
	}
	if a := ready(); a.code != 200 {
		t.Errorf("readyz after the job: %d %v, want 200", a.code, a.body)
	}
	call(t, c, "POST", "/v1/admin/drain", "")
	if a := call(t, c, "GET", "/readyz", ""); a.code != 503 || a.body["status"] != "draining" {
		t.Errorf("readyz while an admin drains: %d %v, want 503 draining", a.code, a.body)
	}
	call(t, c, "POST", "/v1/admin/resume", "")
	if a := call(t, c, "GET", "/readyz", ""); a.code != 200 {
		t.Errorf("readyz after resume: %d %v, want 200", a.code, a.body)
	}
}

// A job that outlives shutdown_grace is killed, and its client still gets its result.
func TestStopKillsJobsAfterGrace(t *testing.T) {
	cfg := daemontest.Config(t, "daemon")
	cfg.ShutdownGrace = 1_000_000_000 // 1s
	d := daemontest.Start(t, cfg)
	c := unixClient(d.Socket)
	result := make(chan answer, 1)
	go func() {
		result <- call(t, c, "POST", "/v1/execute", `{"code":"import time\ntime.sleep(60)","limits":{"timeout":"90s","cpu_time":"90s"}}`)
	}()
	waitRunning(t, c, 1)
	start := time.Now()
	if err := d.Stop(); err != nil {
		t.Errorf("Run returned %v, want nil", err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("stop took %s with a 1s grace period", took)
	}
	a := <-result
	if a.code != 200 || a.body["status"] != "signaled" || a.body["signal"] != "SIGKILL" {
		t.Errorf("the killed job's answer: %d %v, want signaled SIGKILL", a.code, a.body)
	}
}

// Reload changes the limits new jobs get, without a restart; systemd hears RELOADING=1
// then READY=1.
func TestReloadLimits(t *testing.T) {
	msgs := daemontest.NotifySocket(t)
	cfg := daemontest.Config(t, "daemon")
	d := daemontest.Start(t, cfg)
	daemontest.Expect(t, msgs, "READY=1")
	c := unixClient(d.Socket)

	next := cfg
	next.Limits.Default.Timeout = 3_000_000_000 // 3s
	next.Limits.Max.Memory = 1 << 30
	if err := next.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(next); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	daemontest.Expect(t, msgs, "RELOADING=1")
	daemontest.Expect(t, msgs, "READY=1")
	st := call(t, c, "GET", "/v1/admin/status", "").body
	if lim := st["limits"].(map[string]any); lim["default"].(map[string]any)["timeout_ms"] != 3000.0 || lim["max"].(map[string]any)["memory_bytes"] != float64(1<<30) {
		t.Errorf("limits after reload: %v", lim)
	}
	a := call(t, c, "POST", "/v1/execute", `{"code":"print(1)"}`)
	if a.code != 200 || a.body["limits"].(map[string]any)["timeout_ms"] != 3000.0 {
		t.Errorf("a job after reload: %d %v, want the new default timeout", a.code, a.body)
	}
	if a := call(t, c, "POST", "/v1/execute", `{"code":"print(1)","limits":{"memory":"2GB"}}`); a.code != 400 {
		t.Errorf("a job over the new maximum: %d %v, want 400", a.code, a.body)
	}
}

// With WatchdogSec set (WATCHDOG_USEC, WATCHDOG_PID), systemd is pinged at half the
// interval while the health check returns; a stuck one stops the pings, so systemd
// restarts the daemon. Without it, Watchdog returns at once.
func TestWatchdog(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	t.Run("off", func(t *testing.T) {
		t.Setenv("WATCHDOG_USEC", "")
		done := make(chan struct{})
		go func() { daemon.Watchdog(context.Background(), log, func() {}); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Watchdog runs without WatchdogSec")
		}
	})
	for _, stuck := range []bool{false, true} {
		t.Run(fmt.Sprintf("stuck=%v", stuck), func(t *testing.T) {
			msgs := daemontest.NotifySocket(t)
			t.Setenv("WATCHDOG_USEC", "100000")
			t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
			ctx, cancel := context.WithCancel(context.Background())
			unblock := make(chan struct{})
			done := make(chan struct{})
			go func() {
				daemon.Watchdog(ctx, log, func() {
					if stuck {
						<-unblock
					}
				})
				close(done)
			}()
			pings := 0
			for deadline := time.After(600 * time.Millisecond); ; {
				select {
				case m := <-msgs:
					if m == "WATCHDOG=1" {
						pings++
					}
					continue
				case <-deadline:
				}
				break
			}
			cancel()
			close(unblock)
			<-done
			switch {
			case stuck && pings > 0:
				t.Errorf("%d pings while the health check was stuck", pings)
			case !stuck && (pings < 5 || pings > 20):
				t.Errorf("%d pings in 600ms at a 100ms WatchdogSec, want about 12", pings)
			}
		})
	}
}
