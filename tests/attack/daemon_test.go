package attack_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// memKB reads VmRSS and VmHWM (kB) of a process.
func memKB(t *testing.T, pid int) (rss, hwm int64) {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			if f[0] == "VmRSS:" {
				rss = v
			} else {
				hwm = v
			}
		}
	}
	return rss, hwm
}

// endlessCode generates a JSON body that never ends: {"code":"aaaa…
type endlessCode struct{ started bool }

func (g *endlessCode) Read(p []byte) (int, error) {
	n := 0
	if !g.started {
		n = copy(p, `{"code":"`)
		g.started = true
	}
	for i := n; i < len(p); i++ {
		p[i] = 'a'
	}
	return len(p), nil
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// A 1 GiB body, streamed, with a length or chunked: the daemon answers 413 at once,
// reads no more than it must and its memory stays bounded.
func TestDaemonHugeBody(t *testing.T) {
	d := need(t)
	const size = 1 << 30
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			rssBefore, hwmBefore := memKB(t, d.pid())
			conn, err := net.DialTimeout("tcp", d.addr, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
			framing := "Content-Length: " + strconv.Itoa(size)
			if chunked {
				framing = "Transfer-Encoding: chunked"
			}
			if _, err := fmt.Fprintf(conn, "POST /v1/execute HTTP/1.1\r\nHost: sandboxd\r\nContent-Type: application/json\r\n%s\r\n\r\n", framing); err != nil {
				t.Fatal(err)
			}
			var sent atomic.Int64
			go func() {
				var w io.Writer = countingWriter{conn, &sent}
				if chunked {
					w = httputil.NewChunkedWriter(w)
				}
				_, _ = io.Copy(w, io.LimitReader(&endlessCode{}, size))
			}()
			start := time.Now()
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer after %v (%d bytes sent): %v", time.Since(start), sent.Load(), err)
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			took := time.Since(start)
			conn.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge || !isJSONError(body) {
				t.Errorf("%s %s, want 413 with a JSON error", resp.Status, body)
			}
			if took > 5*time.Second {
				t.Errorf("413 after %v", took)
			}
			if n := sent.Load(); n > 64<<20 {
				t.Errorf("the daemon read %d MiB of the body", n>>20)
			}
			rss, hwm := memKB(t, d.pid())
			t.Logf("sent %d KiB; daemon VmRSS %d→%d kB, VmHWM %d→%d kB", sent.Load()>>10, rssBefore, rss, hwmBefore, hwm)
			if hwm-hwmBefore > 64<<10 || rss-rssBefore > 64<<10 {
				t.Errorf("daemon memory grew: VmRSS %d→%d kB, VmHWM %d→%d kB", rssBefore, rss, hwmBefore, hwm)
			}
		})
	}
}

func isJSONError(b []byte) bool {
	var e struct {
		Error string `json:"error"`
	}
	return json.Unmarshal(b, &e) == nil && e.Error != ""
}

// Hostile requests get a 4xx JSON error, fast, and never run anything.
func TestDaemonBadRequests(t *testing.T) {
	d := need(t)
	deep := func(n int) string {
		return `{"code":"print(1)","stdin":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}`
	}
	cases := []struct {
		name   string
		body   string
		status int
		field  string
	}{
		{"deeply nested JSON", deep(100000), http.StatusBadRequest, ""},
		{"nested just past the cap", deep(40), http.StatusBadRequest, ""},
		{"nested objects in limits", `{"code":"1","limits":` + strings.Repeat(`{"a":`, 50000) + "1" + strings.Repeat("}", 50000) + "}", http.StatusBadRequest, ""},
		{"code too large", `{"code":"` + strings.Repeat("#", 600<<10) + `"}`, http.StatusRequestEntityTooLarge, "code"},
		{"not JSON", "print(1)", http.StatusBadRequest, ""},
		{"two values", `{"code":"1"}{"code":"2"}`, http.StatusBadRequest, ""},
		{"unknown field", `{"code":"1","privileged":true}`, http.StatusBadRequest, ""},
		{"code missing", `{}`, http.StatusBadRequest, "code"},
		{"memory beyond the maximum", `{"code":"1","limits":{"memory":"1PB"}}`, http.StatusBadRequest, "limits.memory"},
		{"negative timeout", `{"code":"1","limits":{"timeout":-1}}`, http.StatusBadRequest, "limits.timeout"},
		{"pids beyond the maximum", `{"code":"1","limits":{"pids":1000000}}`, http.StatusBadRequest, "limits.pids"},
		{"unknown language", `{"code":"1","language":"cobol"}`, http.StatusBadRequest, "language"},
		{"trailing data", `{"code":"print(1)"}]]]`, http.StatusBadRequest, ""},
		{"a key twice", `{"code":"1","limits":{"memory":"4GB","memory":"16MB"}}`, http.StatusBadRequest, "limits.memory"},
		{"a zero limit", `{"code":"1","limits":{"timeout":0}}`, http.StatusBadRequest, "limits.timeout"},
		{"a top-level array", `[{"code":"1"}]`, http.StatusBadRequest, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			resp, err := d.client.Post("http://"+d.addr+"/v1/execute", "application/json", strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			var e struct{ Error, Field string }
			if resp.StatusCode != c.status || json.Unmarshal(body, &e) != nil || e.Error == "" || e.Field != c.field {
				t.Errorf("%s %s, want %d with a JSON error naming field %q", resp.Status, body, c.status, c.field)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("answered after %v", took)
			}
		})
	}
}

// Slowloris: clients that trickle their headers are dropped after ReadHeaderTimeout (5s)
// while everyone else is served.
func TestDaemonSlowloris(t *testing.T) {
	d := need(t)
	const conns = 64
	closedAfter := make([]time.Duration, conns)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range conns {
		c, err := net.DialTimeout("tcp", d.addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(start.Add(15 * time.Second))
		wg.Add(2)
		go func() { // trickle a header that never ends, one byte every 200ms
			defer wg.Done()
			msg := "POST /v1/execute HTTP/1.1\r\nHost: sandboxd\r\nX-Slow: " + strings.Repeat("a", 200)
			for j := 0; j < len(msg); j++ {
				if _, err := c.Write([]byte{msg[j]}); err != nil {
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}()
		go func() { // the server's close ends the read
			defer wg.Done()
			_, _ = io.Copy(io.Discard, c)
			closedAfter[i] = time.Since(start)
		}()
	}
	// Meanwhile the daemon serves others: health checks and a job.
	for _, at := range []time.Duration{time.Second, 3 * time.Second} {
		time.Sleep(time.Until(start.Add(at)))
		t0 := time.Now()
		if err := d.healthy(); err != nil || time.Since(t0) > time.Second {
			t.Errorf("during slowloris: /healthz took %v: %v", time.Since(t0), err)
		}
	}
	if r := d.execute(t, "print('served')", nil); r.Status != "ok" || r.Stdout != "served\n" {
		t.Errorf("job during slowloris:\n%s", r)
	}
	wg.Wait()
	for i, after := range closedAfter {
		if after < 4*time.Second || after > 9*time.Second {
			t.Errorf("slow connection %d closed after %v, want about 5s", i, after)
			break
		}
	}
}

// A burst of 500 concurrent requests: a few run, a few queue, the rest get a clear
// 429 (or 503), and the daemon neither crashes nor hangs.
func TestDaemonBurst(t *testing.T) {
	d := need(t)
	needRealCPU(t) // 2 s jobs, 4 at a time
	const n = 500
	body := []byte(`{"code":"print(1)","limits":{"timeout":2}}`)
	client := &http.Client{
		Timeout:   60 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: 0, DisableKeepAlives: true},
	}
	var mu sync.Mutex
	counts := map[string]int{}
	var wg sync.WaitGroup
	gate := make(chan struct{})
	rssBefore, _ := memKB(t, d.pid())
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			outcome := func() string {
				resp, err := client.Post("http://"+d.addr+"/v1/execute", "application/json", bytes.NewReader(body))
				if err != nil {
					return "transport error: " + err.Error()
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				switch resp.StatusCode {
				case http.StatusOK:
					var r result
					if json.Unmarshal(b, &r) != nil || r.Status != "ok" || r.Stdout != "1\n" {
						return "200 but " + clip(string(b))
					}
					return "200"
				case http.StatusTooManyRequests, http.StatusServiceUnavailable:
					if !isJSONError(b) {
						return resp.Status + " without a JSON error"
					}
					return strconv.Itoa(resp.StatusCode)
				}
				return resp.Status + " " + clip(string(b))
			}()
			mu.Lock()
			counts[outcome]++
			mu.Unlock()
		}()
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	t.Logf("500 requests in %v: %v", time.Since(start), counts)
	rss, _ := memKB(t, d.pid())
	t.Logf("daemon VmRSS %d→%d kB", rssBefore, rss)
	for outcome, c := range counts {
		if outcome != "200" && outcome != "429" && outcome != "503" {
			t.Errorf("%d× %s", c, outcome)
		}
	}
	if counts["200"] < maxJobs {
		t.Errorf("only %d jobs ran", counts["200"])
	}
	if err := d.healthy(); err != nil {
		t.Errorf("daemon unhealthy after the burst: %v", err)
	}
	noLeftovers(t, d)
}

// The unix socket is the daemon's front door on the host: owner and group only.
func TestDaemonUnixSocket(t *testing.T) {
	d := need(t)
	fi, err := os.Stat(d.socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 {
		t.Errorf("socket owned by uid %d", st.Uid)
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", d.socket)
		},
	}}
	resp, err := client.Post("http://sandboxd/v1/execute", "application/json", strings.NewReader(`{"code":"print(6*7)"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r result
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Stdout != "42\n" {
		t.Errorf("job over the unix socket: %v %+v", err, r)
	}
}

// A second daemon must not start beside a live one (nor take its socket, nor touch its
// jobs), and TCP never listens beyond loopback without a token.
func TestDaemonRefusesUnsafeStart(t *testing.T) {
	d := need(t)
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	_, p, _ := net.SplitHostPort(port)
	cases := []struct {
		name    string
		runDir  string // "" for one of its own
		listen  []string
		message string // in the refusal
	}{
		{"same socket", "", []string{"--listen", "unix:" + d.socket}, "another process is listening"},
		{"same run dir and socket", d.runDir, []string{"--listen", "unix:" + d.socket}, ""},
		{"all interfaces without a token", "", []string{"--listen", "0.0.0.0:" + p}, "token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A job of the live daemon runs throughout: the intruder must not touch it.
			var live *result
			var liveErr error
			done := make(chan struct{})
			go func() {
				defer close(done)
				live, liveErr = d.run("import time\ntime.sleep(2)\nprint('survived')", limits{"timeout": 20})
			}()
			time.Sleep(300 * time.Millisecond)

			// Not t.TempDir: its parent is private, and jobs must reach <run-dir>/root.
			dir, err := os.MkdirTemp("", "sandboxd-attack-second-")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			if err := os.Chmod(dir, 0o711); err != nil {
				t.Fatal(err)
			}
			second := &daemon{name: "second", dir: dir, runDir: c.runDir}
			if second.runDir == "" {
				second.runDir = second.dir + "/run"
			}
			second.cwd, second.logPath = second.dir, second.dir+"/daemon.log"
			cgs, err := makeCgroups(fmt.Sprintf("sandboxd-attack-%d-second", os.Getpid()))
			if err != nil {
				t.Fatal(err)
			}
			second.cgroups = cgs
			defer func() {
				if err := removeCgroups(cgs); err != nil {
					t.Error(err)
				}
			}()
			cmd, err := second.command(c.listen...)
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err = <-exited:
			case <-time.After(60 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
				t.Fatalf("the second daemon started: %s", second.logTail())
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || !strings.Contains(second.logTail(), c.message) {
				t.Errorf("second daemon: %v, want a refusal mentioning %q: %s", err, c.message, second.logTail())
			}
			<-done
			if liveErr != nil || live.Status != "ok" || live.Stdout != "survived\n" {
				t.Errorf("the live daemon's job was disturbed: %v %v", liveErr, live)
			}
			if err := d.healthy(); err != nil {
				t.Errorf("the live daemon is unhealthy: %v", err)
			}
			if _, err := os.Stat(d.socket); err != nil {
				t.Errorf("the live daemon's socket: %v", err)
			}
			noLeftovers(t, d)
		})
	}
}
