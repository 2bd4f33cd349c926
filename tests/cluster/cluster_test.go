// Package cluster proves the shared job queue on loopback: three real daemons
// (bin/sandboxd, each with its own state dir, run dir, cgroup name and port) with
// [cluster] pointed at one nats-server with JetStream, behind deploy/haproxy.cfg. It
// needs root, SANDBOXD_ROOTFS and bin/sandboxd (make test); nats-server and haproxy
// come from Debian through scripts/deps.sh.
package cluster

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
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

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// tool finds a Debian package's binary, installing the package as the project does.
func tool(t *testing.T, pkg, bin string) string {
	t.Helper()
	if p, err := exec.LookPath(bin); err == nil {
		return p
	}
	if out, err := exec.Command("../../scripts/deps.sh", pkg).CombinedOutput(); err != nil {
		t.Fatalf("scripts/deps.sh %s: %v\n%s", pkg, err, out)
	}
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// proc is a process the test started, with its log.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
}

func startProc(t *testing.T, name, logPath string, cmd *exec.Cmd) *proc {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// A test binary that dies must not leave them running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logf, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	return p
}

// stop ends p: SIGTERM (the daemon drains), SIGKILL after 30 s.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL) // the PID this test started
	<-p.done
}

// node is one daemon: its settings stay across a restart.
type node struct {
	name, addr, conf, runDir, cgroup, logPath string
	p                                         *proc
}

func (n *node) url() string { return "http://" + n.addr }

func (n *node) start(t *testing.T, bin string) {
	t.Helper()
	n.p = startProc(t, n.name, n.logPath, exec.Command(bin, "--config", n.conf))
}

type reply struct {
	code int
	body map[string]any
	err  error
}

func send(c *http.Client, method, url, body string) reply {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{code: resp.StatusCode}
	if len(bytes.TrimSpace(raw)) > 0 && json.Unmarshal(raw, &r.body) != nil {
		r.body = map[string]any{"raw": string(raw)}
	}
	return r
}

func waitReady(t *testing.T, c *http.Client, n *node, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if r := send(c, "GET", n.url()+"/readyz", ""); r.err == nil && r.code == 200 {
			return
		}
		select {
		case <-n.p.done:
			t.Fatalf("%s exited while starting; its log:\n%s", n.name, tail(n.logPath))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within %s; its log:\n%s", n.name, within, tail(n.logPath))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

type asyncJob struct {
	id     string
	want   string
	retry  bool
	node   string // where it ran, as seen mid-run
	killed bool   // it was running on the node killed
}

// TestSharedQueueSurvivesAKilledNode: a bounded burst of async and sync jobs through
// HAProxy; one daemon SIGKILLed while it runs async jobs; every async job ends with
// exactly one final result, the same from every surviving node (re-run when it asked
// for retry, else lost), the survivors keep serving, and the killed node, restarted,
// leaves no container, mount or cgroup behind.
func TestSharedQueueSurvivesAKilledNode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the cluster test needs root: it starts real daemons")
	}
	tarball := os.Getenv("SANDBOXD_ROOTFS")
	if tarball == "" {
		t.Skip("SANDBOXD_ROOTFS is not set: run `make test`, which builds the rootfs and bin/sandboxd")
	}
	testenv.SkipOnSlowCPU(t, "three daemons and a kill take minutes under emulation")
	bin := os.Getenv("SANDBOXD_BIN")
	if bin == "" {
		bin = "../../bin/sandboxd"
	}
	var err error
	if bin, err = filepath.Abs(bin); err != nil {
		t.Fatal(err)
	}
	if tarball, err = filepath.Abs(tarball); err != nil {
		t.Fatal(err)
	}
	natsBin := tool(t, "nats-server", "nats-server")
	haBin := tool(t, "haproxy", "haproxy")
	dir := t.TempDir()

	// One nats-server with JetStream in the temp dir.
	natsAddr := testenv.FreeAddr(t)
	natsConf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(natsConf, []byte(fmt.Sprintf("listen: %q\nmax_payload: 8MB\njetstream {\n  store_dir: %q\n}\n",
		natsAddr, filepath.Join(dir, "jetstream"))), 0o600); err != nil {
		t.Fatal(err)
	}
	nats := startProc(t, "nats-server", filepath.Join(dir, "nats.log"), exec.Command(natsBin, "-c", natsConf))
	t.Cleanup(nats.stop)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", natsAddr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server did not listen:\n%s", tail(filepath.Join(dir, "nats.log")))
		}
	}

	// Three daemons, two slots each, pools and sessions off (so that every container
	// under a run dir belongs to a job), ack_wait 3s so a dead node's job is taken over
	// quickly.
	var nodes []*node
	for i := 1; i <= 3; i++ {
		n := &node{name: fmt.Sprintf("node%d", i), addr: testenv.FreeAddr(t), runDir: testenv.RunDir(t),
			cgroup: fmt.Sprintf("sandboxd-cluster-%d-%d", os.Getpid(), i), logPath: filepath.Join(dir, fmt.Sprintf("node%d.log", i))}
		n.conf = filepath.Join(dir, n.name+".toml")
		conf := fmt.Sprintf(`listen = ["unix:%s/sandboxd.sock", %q]
state_dir = %q
run_dir = %q
rootfs = %q
images_dir = ""
cgroup_name = %q
max_jobs = 2
max_queue = 4
pool_size = 0
session_max = 0
session_pool = 0
shutdown_grace = "5s"
max_async_queue = 64

[cluster]
nats_url = "nats://%s"
node = %q
ack_wait = "3s"
`, n.runDir, n.addr, filepath.Join(testenv.StateDir(), "daemon-cluster-"+n.name), n.runDir, tarball, n.cgroup, natsAddr, n.name)
		if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		n.start(t, bin)
		t.Cleanup(func() {
			n.p.stop()
			if t.Failed() {
				t.Logf("%s's log:\n%s", n.name, tail(n.logPath))
			}
		})
		nodes = append(nodes, n)
	}
	c := &http.Client{Timeout: 60 * time.Second}
	for _, n := range nodes {
		waitReady(t, c, n, 90*time.Second)
	}

	// HAProxy in front, with the repository's config.
	front := testenv.FreeAddr(t)
	ha := exec.Command(haBin, "-f", "../../deploy/haproxy.cfg", "-db")
	ha.Env = append(os.Environ(), "SANDBOXD_LISTEN="+front)
	for i, n := range nodes {
		ha.Env = append(ha.Env, fmt.Sprintf("SANDBOXD_NODE%d=%s", i+1, n.addr))
	}
	hap := startProc(t, "haproxy", filepath.Join(dir, "haproxy.log"), ha)
	t.Cleanup(func() {
		hap.stop()
		if t.Failed() {
			t.Logf("haproxy's log:\n%s", tail(filepath.Join(dir, "haproxy.log")))
		}
	})
	lb := "http://" + front
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if r := send(c, "GET", lb+"/healthz", ""); r.err == nil && r.code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy does not answer:\n%s", tail(filepath.Join(dir, "haproxy.log")))
		}
	}
	time.Sleep(1500 * time.Millisecond) // its /readyz checks run every second

	// The burst: 18 async jobs (every other one with retry) and 6 sync ones at once.
	var jobs []*asyncJob
	for i := range 18 {
		j := &asyncJob{want: fmt.Sprintf("%d\n", i*i), retry: i%2 == 0}
		body := fmt.Sprintf(`{"code": "import time\ntime.sleep(1.5)\nprint(%d * %d)", "retry": %t}`, i, i, j.retry)
		r := send(c, "POST", lb+"/v1/jobs", body)
		id, _ := r.body["id"].(string)
		if r.err != nil || r.code != 202 || id == "" {
			t.Fatalf("submit async job %d through HAProxy: %v %d %v", i, r.err, r.code, r.body)
		}
		j.id = id
		jobs = append(jobs, j)
	}
	var wg sync.WaitGroup
	syncRes := make([]reply, 6)
	for i := range syncRes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			syncRes[i] = send(c, "POST", lb+"/v1/execute", fmt.Sprintf(`{"code": "import time\ntime.sleep(1)\nprint(%d + 1)"}`, i))
		}()
	}

	// Kill the node that runs the most async jobs, once it runs one.
	var victim *node
	running := map[string][]*asyncJob{}
	for deadline := time.Now().Add(60 * time.Second); victim == nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no async job started within 60 s")
		}
		clear(running)
		for _, j := range jobs {
			r := send(c, "GET", nodes[0].url()+"/v1/jobs/"+j.id, "")
			if r.body["state"] == "running" {
				nd, _ := r.body["node"].(string)
				running[nd] = append(running[nd], j)
			}
		}
		for _, n := range nodes {
			if len(running[n.name]) > 0 && (victim == nil || len(running[n.name]) > len(running[victim.name])) {
				victim = n
			}
		}
	}
	for _, j := range running[victim.name] {
		j.killed, j.node = true, victim.name
	}
	t.Logf("SIGKILL %s (pid %d) while it runs %d async jobs", victim.name, victim.p.cmd.Process.Pid, len(running[victim.name]))
	victim.p.kill()
	var survivors []*node
	for _, n := range nodes {
		if n != victim {
			survivors = append(survivors, n)
		}
	}

	// Sync jobs: each answered right, or (those the killed node held) an error.
	wg.Wait()
	failed := 0
	for i, r := range syncRes {
		want := fmt.Sprintf("%d\n", i+1)
		if r.err == nil && r.code == 200 && r.body["stdout"] == want {
			continue
		}
		failed++
		t.Logf("sync job %d: %v %d %v (on the killed node?)", i, r.err, r.code, r.body)
		if r.err == nil && r.code < 500 {
			t.Errorf("sync job %d: %d %v: only a 5xx or a broken connection may come of the kill", i, r.code, r.body)
		}
	}
	if failed > 2+4 { // the killed node's slots and queue places
		t.Errorf("%d of 6 sync jobs failed: more than the killed node held", failed)
	}

	// Every async job ends with one final record, the same seen from every survivor.
	final := func(n *node, j *asyncJob) map[string]any {
		r := send(c, "GET", n.url()+"/v1/jobs/"+j.id+"?wait=30s", "")
		if r.err != nil || r.code != 200 {
			t.Fatalf("GET job %s from %s: %v %d %v", j.id, n.name, r.err, r.code, r.body)
		}
		return r.body
	}
	lost := 0
	for _, j := range jobs {
		var seen []map[string]any
		for _, n := range survivors {
			seen = append(seen, final(n, j))
		}
		rec := seen[0]
		for k, other := range seen[1:] {
			a, _ := json.Marshal(rec)
			b, _ := json.Marshal(other)
			if !bytes.Equal(a, b) {
				t.Errorf("job %s reads differently on %s and %s:\n%s\n%s", j.id, survivors[0].name, survivors[k+1].name, a, b)
			}
		}
		state, _ := rec["state"].(string)
		runs, _ := rec["runs"].(float64)
		res, _ := rec["result"].(map[string]any)
		switch {
		case state == "done" && res["status"] == "ok" && res["stdout"] == j.want:
			if j.killed && !j.retry {
				t.Errorf("job %s ran on the killed node without retry, yet it is done: %v", j.id, rec)
			}
			if want := 1.0; j.killed && runs != 2 || !j.killed && runs != want {
				t.Errorf("job %s: runs %v (killed mid-run: %t)", j.id, runs, j.killed)
			}
			if rec["node"] == victim.name && j.killed {
				t.Errorf("job %s re-run on the node that was dead: %v", j.id, rec)
			}
		case state == "lost" && j.killed && !j.retry:
			lost++
			if reason, _ := rec["lost_reason"].(string); !strings.Contains(reason, victim.name) {
				t.Errorf("job %s lost without naming its node: %q", j.id, reason)
			}
			if res != nil {
				t.Errorf("lost job %s has a result: %v", j.id, res)
			}
		default:
			t.Errorf("job %s (retry %t, killed mid-run %t) ended as %v", j.id, j.retry, j.killed, rec)
		}
	}
	t.Logf("%d async jobs: %d were running on the killed node, %d of those lost (no retry)", len(jobs), len(running[victim.name]), lost)

	// The survivors keep serving: sync and async jobs through HAProxy.
	for i := range 4 {
		r := send(c, "POST", lb+"/v1/execute", fmt.Sprintf(`{"code": "print(%d)"}`, 100+i))
		if r.err != nil || r.code != 200 || r.body["stdout"] != fmt.Sprintf("%d\n", 100+i) {
			t.Errorf("sync job %d after the kill: %v %d %v", i, r.err, r.code, r.body)
		}
	}
	r := send(c, "POST", lb+"/v1/jobs", `{"code": "print(42)"}`)
	if id, _ := r.body["id"].(string); r.code != 202 || id == "" {
		t.Errorf("async job after the kill: %v %d %v", r.err, r.code, r.body)
	} else if rec := final(survivors[0], &asyncJob{id: id}); rec["state"] != "done" {
		t.Errorf("async job after the kill: %v", rec)
	}

	// The killed node restarts on the same run dir and cgroup name: it sweeps what its
	// jobs left, takes work again, and reads the same records.
	victim.start(t, bin)
	waitReady(t, c, victim, 90*time.Second)
	if r := send(c, "POST", victim.url()+"/v1/execute", `{"code": "print(7)"}`); r.code != 200 || r.body["stdout"] != "7\n" {
		t.Errorf("a job on the restarted %s: %v %d %v", victim.name, r.err, r.code, r.body)
	}
	for _, j := range jobs {
		a, _ := json.Marshal(final(survivors[0], j))
		b, _ := json.Marshal(final(victim, j))
		if !bytes.Equal(a, b) {
			t.Errorf("job %s reads differently on the restarted node:\n%s\n%s", j.id, a, b)
		}
	}
	time.Sleep(500 * time.Millisecond) // a job's teardown ends just after its answer
	for _, left := range leftovers(t, victim) {
		t.Errorf("left on the restarted %s: %s", victim.name, left)
	}

	// The queue is bounded cluster-wide (max_async_queue, jobs waiting or running): the
	// next job gets 429. An Idempotency-Key names one job whichever node is asked.
	var held []string
	for len(held) <= 64 {
		r := send(c, "POST", lb+"/v1/jobs", `{"code": "import time\ntime.sleep(60)"}`)
		if r.code == http.StatusTooManyRequests {
			if _, ok := r.body["error"]; !ok {
				t.Errorf("429 without a JSON error: %v", r.body)
			}
			break
		}
		id, _ := r.body["id"].(string)
		if r.code != 202 || id == "" {
			t.Fatalf("submit to fill the queue: %v %d %v", r.err, r.code, r.body)
		}
		held = append(held, id)
	}
	if len(held) != 64 {
		t.Errorf("the queue took %d jobs, want max_async_queue = 64", len(held))
	}
	// Cancel each from a node chosen in turn: a queued one is done at once, a running
	// one is killed on whichever node runs it.
	for i, id := range held {
		n := nodes[i%3]
		r := send(c, "DELETE", n.url()+"/v1/jobs/"+id, "")
		if r.code != 200 {
			t.Fatalf("cancel %s on %s: %v %d %v", id, n.name, r.err, r.code, r.body)
		}
		rec := final(nodes[(i+1)%3], &asyncJob{id: id})
		res, _ := rec["result"].(map[string]any)
		if rec["state"] != "done" || res["status"] != "cancelled" {
			t.Errorf("job %s cancelled on %s (it ran on %v) reads %v", id, n.name, rec["node"], rec)
		}
	}
	key := fmt.Sprintf("cluster-%d", time.Now().UnixNano())
	var ids []string
	for _, n := range nodes {
		req, _ := http.NewRequest("POST", n.url()+"/v1/jobs", strings.NewReader(`{"code": "print(5)"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		id, _ := v["id"].(string)
		ids = append(ids, id)
	}
	if ids[0] == "" || ids[0] != ids[1] || ids[1] != ids[2] {
		t.Errorf("one Idempotency-Key on three nodes made jobs %v", ids)
	}
	time.Sleep(500 * time.Millisecond)
	for _, n := range nodes {
		for _, left := range leftovers(t, n) {
			t.Errorf("left on %s after the cancels: %s", n.name, left)
		}
	}

	// The Judge0 front's async submissions sit on the same queue: submitted to one
	// node, read on another.
	r = send(c, "POST", nodes[0].url()+"/submissions?base64_encoded=false&wait=false", `{"source_code": "print(6 * 7)", "language_id": 71}`)
	token, _ := r.body["token"].(string)
	if r.code != 201 || token == "" {
		t.Fatalf("Judge0 submission: %v %d %v", r.err, r.code, r.body)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r := send(c, "GET", nodes[2].url()+"/submissions/"+token+"?base64_encoded=false", "")
		st, _ := r.body["status"].(map[string]any)
		if id, _ := st["id"].(float64); r.code == 200 && id > 2 {
			if id != 3 || r.body["stdout"] != "42\n" {
				t.Errorf("Judge0 submission read on node3: %v", r.body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Judge0 submission not done in 30 s: %v %d %v", r.err, r.code, r.body)
		}
	}

	// NATS away: async submissions get 503 (not a hang, not a 500), sync jobs go on;
	// NATS back (its JetStream store kept), the nodes reconnect and take jobs again.
	nats.stop()
	start := time.Now()
	r = send(c, "POST", nodes[1].url()+"/v1/jobs", `{"code": "print(1)"}`)
	if r.code != http.StatusServiceUnavailable || r.body["error"] == nil {
		t.Errorf("async job with NATS down: %v %d %v, want a 503 JSON error", r.err, r.code, r.body)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the 503 took %s", took)
	}
	if r := send(c, "POST", nodes[1].url()+"/v1/execute", `{"code": "print(3)"}`); r.code != 200 || r.body["stdout"] != "3\n" {
		t.Errorf("sync job with NATS down: %v %d %v", r.err, r.code, r.body)
	}
	nats = startProc(t, "nats-server", filepath.Join(dir, "nats.log"), exec.Command(natsBin, "-c", natsConf))
	t.Cleanup(nats.stop)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r := send(c, "POST", nodes[1].url()+"/v1/jobs", `{"code": "print(8)"}`)
		if r.code == 202 {
			// Each node reconnects on its own (within a second or so): node3 may
			// still answer 503 for a moment.
			id := r.body["id"].(string)
			for {
				r := send(c, "GET", nodes[2].url()+"/v1/jobs/"+id+"?wait=30s", "")
				if r.code == 200 {
					if r.body["state"] != "done" {
						t.Errorf("async job after NATS came back: %v", r.body)
					}
					break
				}
				if r.code != http.StatusServiceUnavailable || time.Now().After(deadline) {
					t.Fatalf("node3 reading a job after NATS came back: %v %d %v", r.err, r.code, r.body)
				}
				time.Sleep(200 * time.Millisecond)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no async job taken 20 s after NATS came back: %v %d %v", r.err, r.code, r.body)
		}
	}
}

// leftovers lists what jobs of n left: containers and job dirs under its run dir,
// mounts below those, and cgroups below its cgroup_name in every hierarchy.
func leftovers(t *testing.T, n *node) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"containers", "jobs"} {
		ents, err := os.ReadDir(filepath.Join(n.runDir, sub))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		for _, e := range ents {
			out = append(out, filepath.Join(n.runDir, sub, e.Name()))
		}
	}
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer mi.Close()
	sc := bufio.NewScanner(mi)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 4 && (strings.HasPrefix(f[4], filepath.Join(n.runDir, "containers")+"/") || strings.HasPrefix(f[4], filepath.Join(n.runDir, "jobs")+"/")) {
			out = append(out, "mount "+f[4])
		}
	}
	_ = filepath.WalkDir("/sys/fs/cgroup", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if strings.Count(p, "/") > 9 {
			return fs.SkipDir
		}
		if d.Name() != n.cgroup {
			return nil
		}
		ents, _ := os.ReadDir(p)
		for _, e := range ents {
			if e.IsDir() {
				out = append(out, "cgroup "+filepath.Join(p, e.Name()))
			}
		}
		return fs.SkipDir
	})
	return out
}
