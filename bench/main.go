// Command bench measures sandboxd against the floor it is built on and against its peers,
// all in one run: it starts the real daemon twice (warm pool on, pool off), sends
// hello-world jobs through its HTTP API, and runs the same program as bare python3 in a
// chroot of the same root filesystem, under bubblewrap and under crun. It prints p50/p95
// latency of sequential jobs, jobs/s with 2 and 4 clients, ratios, and the daemon's RSS.
//
//	go build -o bin/sbxbench ./bench && bin/sbxbench   (make bench does this)
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

var (
	bin      = flag.String("sandboxd", "bin/sandboxd", "the daemon binary")
	tarball  = flag.String("rootfs", "build/rootfs.tar.zst", "rootfs tarball")
	stateDir = flag.String("state-dir", "/var/tmp/sandboxd-bench", "daemon state dir (keeps the unpacked rootfs between runs)")
	n        = flag.Int("n", 200, "jobs per sequential series")
	burst    = flag.Int("burst", 300, "jobs per throughput series")
	poolSize = flag.Int("pool-size", 4, "warm containers of the pooled daemon")
	forkRows = flag.Bool("fork-server", true, "also time a daemon whose python pool is fork servers (fork_server), pool-size of them")
	peers    = flag.Bool("peers", true, "also run bubblewrap and crun")
)

const hello = `print("hello")`

// daemon is a running sandboxd.
type daemon struct {
	cmd    *exec.Cmd
	url    string
	runDir string
	logs   bytes.Buffer
}

// startDaemon starts a daemon with a python pool of pool containers, or of pool fork
// servers when fork is set.
func startDaemon(pool int, fork bool) (*daemon, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	d := &daemon{url: fmt.Sprintf("http://127.0.0.1:%d", port)}
	if d.runDir, err = os.MkdirTemp("", "sbxbench-run-"); err != nil {
		return nil, err
	}
	// Every runtime with a warm bootstrap gets a pool of this size.
	cfg := filepath.Join(d.runDir, "config.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("pool_sizes = { javascript = %d }\n", pool)), 0o644); err != nil {
		return nil, err
	}
	state, sessions := daemonState(pool), min(pool, 1)
	args := []string{}
	if fork {
		state, sessions = state+"-fork", 0
		args = append(args, "--fork-server")
	}
	d.cmd = exec.Command(*bin, append(args, "--rootfs", *tarball, "--images-dir", *imagesDir, "--state-dir", state, "--run-dir", d.runDir,
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--max-jobs", "8", "--max-queue", "64",
		"--pool-size", strconv.Itoa(pool), "--session-pool", strconv.Itoa(sessions), "--cgroup-name", fmt.Sprintf("sandboxd-bench-%d", port),
		"--config", cfg)...)
	d.cmd.Stdout, d.cmd.Stderr = &d.logs, &d.logs
	// An interrupted bench (^C, a closed pipe) stops its daemons, which clean up after themselves.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	if err := waitHealthy(d.url, 60*time.Second); err != nil {
		d.stop()
		return nil, fmt.Errorf("%w\n%s", err, d.logs.String())
	}
	return d, nil
}

func (d *daemon) stop() {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	_ = d.cmd.Wait()
	os.RemoveAll(d.runDir)
}

// rssKB is the daemon's resident set: VmRSS from /proc.
func (d *daemon) rssKB() int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.Fields(v)[0])
			return kb
		}
	}
	return 0
}

// warmRSSKB sums the resident memory (PSS, so shared pages count once) of every process
// of the daemon's warm containers: what each pooled container costs.
func (d *daemon) containersPSSKB() (total, containers int) {
	ents, _ := os.ReadDir(filepath.Join(d.runDir, "containers"))
	for _, ent := range ents {
		var st struct {
			InitPid int `json:"init_process_pid"`
		}
		b, err := os.ReadFile(filepath.Join(d.runDir, "containers", ent.Name(), "state.json"))
		if err != nil || json.Unmarshal(b, &st) != nil {
			continue
		}
		containers++
		for _, pid := range append([]int{st.InitPid}, children(st.InitPid)...) {
			total += pssKB(pid)
		}
	}
	return total, containers
}

func children(pid int) []int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var out []int
	for _, f := range strings.Fields(string(b)) {
		c, _ := strconv.Atoi(f)
		out = append(out, c)
	}
	return out
}

func pssKB(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Pss:"); ok {
			kb, _ := strconv.Atoi(strings.Fields(v)[0])
			return kb
		}
	}
	return 0
}

type row struct {
	name string
	f    func() error
}

func run() error {
	flag.Parse()
	if *clusterOnly {
		return clusterTable()
	}
	defer func() { // after the other tables (the defers run last first)
		if err := clusterTable(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: shared queue:", err)
		}
	}()
	cold, err := startDaemon(0, false)
	if err != nil {
		return err
	}
	defer cold.stop()
	idleRSS := cold.rssKB()
	warm, err := startDaemon(*poolSize, false)
	if err != nil {
		return err
	}
	defer warm.stop()
	var forked *daemon
	if *forkRows {
		if forked, err = startDaemon(*poolSize, true); err != nil {
			return err
		}
		defer forked.stop()
	}
	time.Sleep(3 * time.Second) // let the pool fill
	pss, pooled := warm.containersPSSKB()
	if *sessionsOnly {
		return sessionTable(&http.Client{Timeout: 60 * time.Second}, cold, warm)
	}
	if *runtimesOnly {
		return runtimeTable(&http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: 60 * time.Second}, cold, warm)
	}

	rootfs, err := unpackedRootfs(daemonState(0), *tarball)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: 30 * time.Second}
	rows := []row{
		{"bare python3 -c in chroot", func() error { return runHello(chrootCmd(rootfs)) }},
	}
	gj, err := startGoJudge(rootfs)
	if err != nil {
		return err
	}
	if gj != nil {
		defer gj.stop()
		rows = append(rows, row{goJudgeRow + " " + gj.version(client), func() error { return gj.hello(client) }})
	}
	if *peers {
		rows = append(rows, row{"bubblewrap", func() error { return runHello(bwrapCmd(rootfs)) }})
		crun, cleanup, err := crunRunner(rootfs)
		if err != nil {
			return err
		}
		defer cleanup()
		rows = append(rows, row{"crun", crun})
	}
	dockerNote := "off (-docker=false)"
	if *dockerRowOn {
		if f, why := dockerRunner(*tarball); f != nil {
			rows, dockerNote = append(rows, row{"docker run --rm per job", f}), ""
		} else {
			dockerNote = why
		}
	}
	rows = append(rows,
		row{"sandboxd cold (HTTP)", func() error { return execute(client, cold.url, false) }},
		row{"sandboxd warm (HTTP)", func() error { return execute(client, warm.url, true) }},
		// Back to back, each job's refill (a container start, ~30 ms of CPU) competes
		// with the next job on 2 cores. With a pause, every job finds a ready container:
		// the warm path itself. The pause is not timed.
		row{"sandboxd warm, pool ready", func() error {
			time.Sleep(60 * time.Millisecond)
			paceStart = time.Now()
			return execute(client, warm.url, true)
		}},
	)
	if forked != nil {
		rows = append(rows,
			row{"sandboxd fork servers", func() error { return execute(client, forked.url, false) }},
			row{"sandboxd fork, pool ready", func() error {
				time.Sleep(60 * time.Millisecond)
				paceStart = time.Now()
				return execute(client, forked.url, false)
			}},
		)
	}
	rows = append(rows, asyncRows(client, warm.url)...)
	rows = append(rows, frontRows(client, warm.url)...)
	for _, r := range rows { // warm caches on every side
		for range 10 {
			if err := r.f(); err != nil {
				return fmt.Errorf("%s: %w", r.name, err)
			}
		}
	}
	fmt.Printf("hello-world; %d sequential jobs per row, then %d jobs by 2 and by 4 clients; %d CPUs; %s\n\n",
		*n, *burst, runtime.NumCPU(), time.Now().Format(time.DateOnly))
	fmt.Printf("%-28s %7s %7s %8s %8s %8s %9s %7s %18s\n", "", "p50 ms", "p95 ms", "jobs/s 1", "jobs/s 2", "jobs/s 4",
		"p50/bare", "p50/gj", "jobs/s/gj 1/2/4")
	var base float64
	var gjFig *figures // go-judge's, for the ratio columns
	for i, r := range rows {
		if strings.HasPrefix(r.name, "sandboxd warm") || strings.HasPrefix(r.name, "sandboxd fork") {
			time.Sleep(time.Second) // a full pool, as between bursts in service
		}
		start := time.Now()
		lat, err := series(r.f, *n)
		if err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		fig := figures{p50: pct(lat, 50), p95: pct(lat, 95), jobs: [3]float64{float64(*n) / time.Since(start).Seconds()}}
		if i == 0 {
			base = fig.p50
		}
		// Paced (pool ready): no throughput figure.
		if !strings.Contains(r.name, "pool ready") {
			for j, clients := range []int{2, 4} {
				if fig.jobs[j+1], err = throughput(r.f, clients, *burst); err != nil {
					return fmt.Errorf("%s: %w", r.name, err)
				}
			}
		} else {
			fig.jobs = [3]float64{}
		}
		if strings.HasPrefix(r.name, goJudgeRow) {
			gjFig = &fig
		}
		fmt.Println(fig.line(r.name, base, gjFig))
	}
	if gj != nil {
		fmt.Printf("\ngo-judge: -pre-fork %d -parallelism %d -enable-cpu-rate, one cmd per /run (python3 main.py, the code by copyIn, stdout/stderr collectors),\n"+
			"  sandboxd's default limits (1 cpu, 10 s CPU and wall, 512 MiB, 64 procs, 8 MiB stack, 64 MiB tmpfs /work and /tmp), the image's python %s\n",
			*goJudgePrefork, *goJudgePar, gj.python)
	}
	if dockerNote != "" {
		fmt.Printf("docker run row skipped: %s\n", dockerNote)
	}
	if nsenterOverhead != nil {
		lat, err := series(nsenterOverhead, *n)
		if err == nil {
			fmt.Printf("\ncrun row includes nsenter (p50 %.1f ms alone): crun refuses this hybrid cgroup host otherwise\n", pct(lat, 50))
		}
	}
	fmt.Printf("\nwarm jobs that found the pool empty and started cold: %d of %d\n", coldFallbacks.Load(), warmJobs.Load())
	if *testCases > 0 {
		if err := testCaseTable(client, cold, warm, forked, gj); err != nil {
			return fmt.Errorf("test cases: %w", err)
		}
	}
	defer func() {
		if err := sessionTable(client, cold, warm); err != nil {
			fmt.Fprintln(os.Stderr, "bench: sessions:", err)
		}
	}()
	defer func() {
		if *imagesDir == "" {
			return
		}
		if err := runtimeTable(client, cold, warm); err != nil {
			fmt.Fprintln(os.Stderr, "bench: runtimes:", err)
		}
	}()
	fmt.Printf("sandboxd idle RSS (pool off): %.1f MB\n", float64(idleRSS)/1024)
	if pooled > 0 {
		fmt.Printf("per pooled container (PSS of its init and python): %.1f MB (%d containers)\n", float64(pss)/1024/float64(pooled), pooled)
	}
	return nil
}

var warmJobs, coldFallbacks atomic.Int64

func execute(c *http.Client, url string, warm bool) error {
	resp, err := c.Post(url+"/v1/execute", "application/json", strings.NewReader(`{"code": "print(\"hello\")"}`))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct {
		Status, Stdout string
		Warm           bool
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return err
	}
	// Read to the end, so the connection is reused as any pooling HTTP client does.
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 || r.Status != "ok" || r.Stdout != "hello\n" {
		return fmt.Errorf("HTTP %d status %q stdout %q", resp.StatusCode, r.Status, r.Stdout)
	}
	if warm {
		warmJobs.Add(1)
		if !r.Warm {
			coldFallbacks.Add(1)
		}
	}
	return nil
}

func runHello(cmd *exec.Cmd) error {
	out, err := cmd.Output()
	if err == nil && string(out) != "hello\n" {
		err = fmt.Errorf("printed %q", out)
	}
	return err
}

func chrootCmd(rootfs string) *exec.Cmd {
	cmd := exec.Command("/usr/bin/python3", "-c", hello)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: rootfs}
	cmd.Dir = "/"
	return cmd
}

func bwrapCmd(rootfs string) *exec.Cmd {
	return exec.Command("bwrap", "--ro-bind", rootfs, "/", "--proc", "/proc", "--dev", "/dev",
		"--tmpfs", "/tmp", "--unshare-all", "--die-with-parent", "--chdir", "/tmp",
		"/usr/bin/python3", "-c", hello)
}

// crunRunner prepares an OCI bundle on the rootfs and runs it with `crun run`.
func crunRunner(rootfs string) (func() error, func(), error) {
	bundle, err := os.MkdirTemp("", "sbxbench-crun-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(bundle) }
	if out, err := exec.Command("crun", "spec", "-b", bundle).CombinedOutput(); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("crun spec: %v: %s", err, out)
	}
	path := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		cleanup()
		return nil, nil, err
	}
	spec["root"] = map[string]any{"path": rootfs, "readonly": true}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"/usr/bin/python3", "-c", hello}
	if b, err = json.Marshal(spec); err == nil {
		err = os.WriteFile(path, b, 0o644)
	}
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	// crun refuses hybrid hosts whose cgroup2 tree has a controller (here hugetlb). It
	// runs in a mount namespace without that tree (pure cgroup v1), entered with
	// nsenter, which adds a few ms (bench prints how much).
	args := []string{"crun"}
	if _, err := os.Stat("/sys/fs/cgroup/unified/cgroup.controllers"); err == nil {
		ns, undo, err := v1MountNS()
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		prev := cleanup
		cleanup = func() { undo(); prev() }
		args = []string{"nsenter", "--mount=" + ns, "crun"}
		nsenterOverhead = func() error { return exec.Command("nsenter", "--mount="+ns, "true").Run() }
	}
	var seq atomic.Int64
	return func() error {
		id := fmt.Sprintf("sbxbench-%d-%d", os.Getpid(), seq.Add(1))
		return runHello(exec.Command(args[0], append(args[1:], "run", "--bundle", bundle, id)...))
	}, cleanup, nil
}

var nsenterOverhead func() error

// v1MountNS makes a persistent mount namespace without /sys/fs/cgroup/unified.
func v1MountNS() (string, func(), error) {
	dir, err := os.MkdirTemp("/run", "sbxbench-ns-")
	if err != nil {
		return "", nil, err
	}
	ns := filepath.Join(dir, "mnt")
	undo := func() {
		_ = syscall.Unmount(ns, syscall.MNT_DETACH)
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		os.RemoveAll(dir)
	}
	steps := [][]string{
		{"mount", "--bind", dir, dir}, {"mount", "--make-private", dir}, {"touch", ns},
		{"unshare", "--mount=" + ns, "--propagation", "private", "umount", "/sys/fs/cgroup/unified"},
	}
	for _, st := range steps {
		if out, err := exec.Command(st[0], st[1:]...).CombinedOutput(); err != nil {
			undo()
			return "", nil, fmt.Errorf("%v: %v: %s", st, err, out)
		}
	}
	return ns, undo, nil
}

// paceStart, when a row sets it, is when its timed part began (after its pause).
var paceStart time.Time

func series(f func() error, n int) ([]float64, error) {
	lat := make([]float64, 0, n)
	for range n {
		t := time.Now()
		paceStart = time.Time{}
		if err := f(); err != nil {
			return nil, err
		}
		if !paceStart.IsZero() {
			t = paceStart
		}
		lat = append(lat, float64(time.Since(t).Microseconds())/1000)
	}
	return lat, nil
}

func throughput(f func() error, clients, total int) (float64, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	next := make(chan struct{}, total)
	for range total {
		next <- struct{}{}
	}
	close(next)
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				if err := f(); err != nil {
					mu.Lock()
					firstErr = errors.Join(firstErr, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(total) / time.Since(start).Seconds(), firstErr
}

func pct(v []float64, p int) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

func waitHealthy(url string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for ctx.Err() == nil {
		if resp, err := http.Get(url + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("daemon did not become healthy")
}

// unpackedRootfs is where the daemon unpacked the tarball (its content address).
// daemonState is a daemon's own state dir below -state-dir: the two daemons cannot
// share one, since each holds its async job store (state_dir/jobs) locked.
func daemonState(pool int) string {
	return filepath.Join(*stateDir, fmt.Sprintf("pool%d", pool))
}

func unpackedRootfs(state, tarball string) (string, error) {
	f, err := os.Open(tarball)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	abs, err := filepath.Abs(state)
	if err != nil {
		return "", err
	}
	return filepath.Join(abs, "rootfs", hex.EncodeToString(h.Sum(nil)), "rootfs"), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
