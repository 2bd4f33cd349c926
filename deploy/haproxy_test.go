package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/daemon/daemontest"
	"github.com/sandboxd/sandboxd/internal/testenv"
)

// haproxy finds Debian's haproxy, installing it as the project's scripts do.
func haproxy(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	if os.Geteuid() != 0 {
		t.Skip("haproxy is not installed and installing it needs root")
	}
	if out, err := exec.Command("../scripts/deps.sh", "haproxy").CombinedOutput(); err != nil {
		t.Fatalf("scripts/deps.sh haproxy: %v\n%s", err, out)
	}
	p, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHAProxyConfigIsValid(t *testing.T) {
	bin := haproxy(t)
	cmd := exec.Command(bin, "-c", "-f", "haproxy.cfg")
	cmd.Env = append(os.Environ(), "SANDBOXD_LISTEN=127.0.0.1:1", "SANDBOXD_NODE1=127.0.0.1:2", "SANDBOXD_NODE2=127.0.0.1:3", "SANDBOXD_NODE3=127.0.0.1:4")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "valid") {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}

type reply struct {
	code int
	hdr  http.Header
	body map[string]any
}

func send(t *testing.T, c *http.Client, method, url, body string) reply {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{code: resp.StatusCode, hdr: resp.Header}
	if len(bytes.TrimSpace(raw)) > 0 && json.Unmarshal(raw, &r.body) != nil {
		r.body = map[string]any{"raw": string(raw)}
	}
	return r
}

// jobsRun sums a node's sandboxd_jobs_total.
func jobsRun(t *testing.T, c *http.Client, base string) int {
	t.Helper()
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && strings.HasPrefix(f[0], "sandboxd_jobs_total{") {
			v, _ := strconv.ParseFloat(f[1], 64)
			n += int(v)
		}
	}
	return n
}

// Three real daemons behind deploy/haproxy.cfg on loopback: new jobs spread over the
// nodes and avoid a drained one; every call for a session (the /v1 API, a Jupyter
// kernel, an E2B sandbox) reaches the node that holds it, also while that node drains.
func TestHAProxyRoutesToNodes(t *testing.T) {
	testenv.SkipOnSlowCPU(t, "three daemons with IPython kernels take minutes to start")
	bin := haproxy(t)
	var nodes []string // base URLs
	var socks []string
	for i := range 3 {
		cfg := daemontest.Config(t, fmt.Sprintf("haproxy%d", i))
		cfg.PoolSize, cfg.MaxJobs = 1, 2
		d, addr := daemontest.StartTCP(t, cfg)
		nodes, socks = append(nodes, "http://"+addr), append(socks, d.Socket)
	}
	front := testenv.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-db", "-f", "haproxy.cfg")
	cmd.Env = append(os.Environ(), "SANDBOXD_LISTEN="+front)
	for i, n := range nodes {
		cmd.Env = append(cmd.Env, fmt.Sprintf("SANDBOXD_NODE%d=%s", i+1, strings.TrimPrefix(n, "http://")))
	}
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy's log:\n%s", logs.String())
		}
	})
	c := &http.Client{Timeout: 60 * time.Second}
	lb := "http://" + front

	// Every node passes its /readyz check (its pool filled once) before HAProxy sends it work.
	deadline := time.Now().Add(90 * time.Second)
	for i, n := range nodes {
		for send(t, c, "GET", n+"/readyz", "").code != 200 {
			if time.Now().After(deadline) {
				t.Fatalf("node %d never ready", i+1)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	time.Sleep(2500 * time.Millisecond) // HAProxy's checks run every second
	before := make([]int, 3)
	for i, n := range nodes {
		before[i] = jobsRun(t, c, n)
	}
	for i := range 9 {
		r := send(t, c, "POST", lb+"/v1/execute", fmt.Sprintf(`{"code": "print(%d * 7)"}`, i))
		if r.code != 200 || r.body["stdout"] != fmt.Sprintf("%d\n", i*7) {
			t.Fatalf("job %d through HAProxy: %d %v", i, r.code, r.body)
		}
	}
	for i, n := range nodes {
		if got := jobsRun(t, c, n) - before[i]; got == 0 {
			t.Errorf("node %d ran none of 9 jobs: leastconn should spread them", i+1)
		}
	}

	// A drained node leaves the rotation for new work within HAProxy's check interval.
	unix := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socks[0])
	}}}
	if r := send(t, unix, "POST", "http://sandboxd/v1/admin/drain", ""); r.code != 200 {
		t.Fatalf("drain node 1: %d %v", r.code, r.body)
	}
	if r := send(t, c, "GET", nodes[0]+"/readyz", ""); r.code != 503 || r.body["status"] != "draining" {
		t.Fatalf("node 1's readyz while draining: %d %v", r.code, r.body)
	}
	time.Sleep(2500 * time.Millisecond)
	drained := jobsRun(t, c, nodes[0])
	for i := range 6 {
		if r := send(t, c, "POST", lb+"/v1/execute", `{"code": "print(1)"}`); r.code != 200 {
			t.Fatalf("job %d with node 1 drained: %d %v", i, r.code, r.body)
		}
	}
	if got := jobsRun(t, c, nodes[0]) - drained; got != 0 {
		t.Errorf("the drained node 1 got %d new jobs", got)
	}
	send(t, unix, "POST", "http://sandboxd/v1/admin/resume", "")

	// Sessions: create until they sit on at least two nodes, then every call of each
	// finds its kernel (a call sent to another node would get 404).
	type session struct{ id, node string }
	var sessions []session
	held := map[string]bool{}
	for try := 0; try < 6 && (len(held) < 2 || len(sessions) < 3); try++ {
		r := send(t, c, "POST", lb+"/v1/sessions", `{"ttl": 120}`)
		if r.code == http.StatusNotImplemented {
			t.Skip("the test rootfs has no ipykernel")
		}
		id, _ := r.body["id"].(string)
		if r.code != 201 || id == "" || r.hdr.Get("Sandboxd-Session") != id {
			t.Fatalf("create a session through HAProxy: %d %v, header %q", r.code, r.body, r.hdr.Get("Sandboxd-Session"))
		}
		for i, n := range nodes {
			if send(t, c, "GET", n+"/v1/sessions/"+id, "").code == 200 {
				sessions = append(sessions, session{id, n})
				held[n] = true
				t.Logf("session %s is on node %d", id, i+1)
			}
		}
	}
	if len(held) < 2 {
		t.Fatalf("6 sessions all landed on one node: leastconn did not spread them")
	}
	for _, s := range sessions {
		send(t, c, "POST", lb+"/v1/sessions/"+s.id+"/execute", `{"code": "n = 0"}`)
	}
	// The node holding the first session drains: its session's calls still reach it.
	drainedNode := sessions[0].node
	for i, n := range nodes {
		if n == drainedNode {
			dc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", socks[i])
			}}}
			send(t, dc, "POST", "http://sandboxd/v1/admin/drain", "")
			t.Cleanup(func() { send(t, dc, "POST", "http://sandboxd/v1/admin/resume", "") })
		}
	}
	time.Sleep(2500 * time.Millisecond)
	for round := 1; round <= 3; round++ {
		for _, s := range sessions {
			r := send(t, c, "POST", lb+"/v1/sessions/"+s.id+"/execute", `{"code": "n += 1; print(n)"}`)
			if r.code != 200 || r.body["stdout"] != fmt.Sprintf("%d\n", round) {
				t.Fatalf("round %d, session %s through HAProxy: %d %v", round, s.id, r.code, r.body)
			}
		}
	}

	// A Jupyter kernel and an E2B sandbox are bound to their node the same way.
	r := send(t, c, "POST", lb+"/api/kernels", `{"name": "python3"}`)
	kid, _ := r.body["id"].(string)
	if r.code != 201 || kid == "" || r.hdr.Get("Sandboxd-Session") != kid {
		t.Fatalf("start a Jupyter kernel through HAProxy: %d %v", r.code, r.body)
	}
	r = send(t, c, "POST", lb+"/e2b/api/v2/sandboxes", `{"templateID": "code-interpreter-v1"}`)
	sid, _ := r.body["sandboxID"].(string)
	if r.code != 201 || sid == "" || r.hdr.Get("Sandboxd-Session") != sid {
		t.Fatalf("create an E2B sandbox through HAProxy: %d %v", r.code, r.body)
	}
	for i := range 6 {
		if r := send(t, c, "GET", lb+"/api/kernels/"+kid, ""); r.code != 200 || r.body["id"] != kid {
			t.Fatalf("GET kernel, call %d: %d %v", i, r.code, r.body)
		}
		if r := send(t, c, "GET", lb+"/e2b/api/sandboxes/"+sid, ""); r.code != 200 || r.body["sandboxID"] != sid {
			t.Fatalf("GET E2B sandbox, call %d: %d %v", i, r.code, r.body)
		}
	}
	send(t, c, "DELETE", lb+"/api/kernels/"+kid, "")
	send(t, c, "DELETE", lb+"/e2b/api/sandboxes/"+sid, "")
	for _, s := range sessions {
		if r := send(t, c, "DELETE", lb+"/v1/sessions/"+s.id, ""); r.code != 200 && r.code != 204 {
			t.Errorf("delete session %s: %d %v", s.id, r.code, r.body)
		}
	}
}
