// Package attack_test is sandboxd's attack suite: it starts the real daemon binary,
// submits hostile Python through the real HTTP API, one category of SECURITY.md per file,
// and asserts the safe outcome from each JSON response. After the suite nothing a job
// made may be left: no container, mount, storage directory or cgroup.
//
// It needs root, the static daemon binary (SANDBOXD_BIN, default the repository's
// bin/sandboxd) and the rootfs tarball (SANDBOXD_ROOTFS); without them every test skips.
package attack_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
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
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
)

const (
	// outputLimit is the daemon's --output-limit: small, so floods are cheap to test.
	outputLimit = 64 << 10
	maxJobs     = 4
	maxQueue    = 16
	poolSize    = 2
	// jobsCgroup is the cgroup, below the daemon's own, that holds its jobs.
	jobsCgroup = "sandboxd-jobs"
	canaryEnv  = "SANDBOXD_SECRET_CANARY"
)

var (
	// stateDir caches the unpacked rootfs across runs (an unpack takes seconds); under
	// SANDBOXD_TEST_STATE when set, as the other suites' (the VM stage's is on its disk).
	stateDir = func() string {
		if s := os.Getenv("SANDBOXD_TEST_STATE"); s != "" {
			return filepath.Join(s, "attack")
		}
		return "/var/tmp/sandboxd-attack"
	}()
	skipReason string
	bin        string
	rootfsTar  string
	canary     = "canary-" + randHex(8)
	// jobsRun and jobsWarm count the jobs run, and how many of them in warm containers.
	jobsRun, jobsWarm atomic.Int64
	// shared is the daemon every test but the crash and start-up tests talks to; it keeps
	// a pool of warm containers, as shipped. cold has none: every job starts cold. The job
	// cases run on both.
	shared, cold *daemon
)

func TestMain(m *testing.M) {
	code := func() int {
		if reason := setup(); reason != "" {
			skipReason = reason
			return m.Run()
		}
		d, err := startDaemon("main", poolSize, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, "attack suite: start daemon:", err)
			return 1
		}
		c, err := startDaemon("cold", 0, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, "attack suite: start daemon:", err)
			_ = d.stop()
			return 1
		}
		shared, cold = d, c
		code := m.Run()
		fmt.Printf("attack suite: %d jobs, %d of them in warm containers\n", jobsRun.Load(), jobsWarm.Load())
		// After every attack: the daemons still answer and nothing is left behind, neither
		// while they run (but idle warm containers) nor once they are stopped.
		for _, d := range []*daemon{shared, cold} {
			if err := d.healthy(); err != nil {
				fmt.Fprintf(os.Stderr, "attack suite: %s daemon unhealthy after the suite: %v\n", d.name, err)
				code = 1
			}
			if left := d.leftovers(); len(left) > 0 {
				fmt.Fprintf(os.Stderr, "attack suite: %s daemon: jobs left behind: %v\n", d.name, left)
				code = 1
			}
			if err := d.stop(); err != nil {
				fmt.Fprintf(os.Stderr, "attack suite: stop %s daemon: %v\n", d.name, err)
				code = 1
			}
		}
		return code
	}()
	os.Exit(code)
}

// setup finds what the suite needs; a non-empty result is why every test skips.
func setup() string {
	if os.Geteuid() != 0 {
		return "the attack suite needs root: it starts the real daemon, which starts containers"
	}
	bin = os.Getenv("SANDBOXD_BIN")
	if bin == "" {
		bin = "../../bin/sandboxd"
	}
	rootfsTar = os.Getenv("SANDBOXD_ROOTFS")
	if rootfsTar == "" {
		return "SANDBOXD_ROOTFS is not set: run `make test`, which builds the rootfs and bin/sandboxd"
	}
	if err := delegateV2(); err != nil {
		return "cannot give the daemons cgroups of their own: " + err.Error()
	}
	var err error
	for _, p := range []*string{&bin, &rootfsTar} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err.Error()
		}
		if _, err := os.Stat(*p); err != nil {
			return fmt.Sprintf("%s is missing (SANDBOXD_BIN / SANDBOXD_ROOTFS): run `make build rootfs`", *p)
		}
	}
	return ""
}

// need skips the test when the suite cannot run, and returns the main daemon.
func need(t *testing.T) *daemon {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	return shared
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// daemon is one running sandboxd, in a cgroup of its own below the test's so that its
// jobs cgroup is nobody else's (two daemons in one cgroup would share "sandboxd-jobs").
type daemon struct {
	name    string
	pool    int    // --pool-size
	fork    bool   // --fork-server (SANDBOXD_TEST_FORK=1, on the pooled daemon)
	dir     string // temp dir holding the run dir, the daemon's cwd and its log
	runDir  string
	cwd     string
	socket  string
	addr    string // loopback host:port
	logPath string
	cgroups []string // the daemon's own cgroup directory in every hierarchy
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	client  *http.Client
}

// startDaemon starts sandboxd, keeping pool warm containers, and waits for /healthz. A restart passes the daemon it
// replaces, whose run dir, socket, port and cgroups are reused.
func startDaemon(name string, pool int, prev *daemon) (_ *daemon, err error) {
	d := &daemon{name: name, pool: pool, fork: pool > 0 && os.Getenv("SANDBOXD_TEST_FORK") == "1"}
	defer func() {
		if err != nil && prev == nil { // the error holds the log's tail
			err = errors.Join(err, removeCgroups(d.cgroups), os.RemoveAll(d.dir))
		}
	}()
	if prev != nil {
		d.dir, d.runDir, d.cwd, d.socket, d.addr, d.cgroups = prev.dir, prev.runDir, prev.cwd, prev.socket, prev.addr, prev.cgroups
	} else {
		if d.dir, err = os.MkdirTemp("", "sandboxd-attack-"+name+"-"); err != nil {
			return nil, err
		}
		if err := os.Chmod(d.dir, 0o711); err != nil {
			return nil, err
		}
		d.runDir = filepath.Join(d.dir, "run")
		d.cwd = filepath.Join(d.dir, "cwd")
		d.socket = filepath.Join(d.dir, "sandboxd.sock")
		if err := os.Mkdir(d.cwd, 0o755); err != nil {
			return nil, err
		}
		if d.addr, err = freePort(); err != nil {
			return nil, err
		}
		if d.cgroups, err = makeCgroups(fmt.Sprintf("sandboxd-attack-%d-%s", os.Getpid(), name)); err != nil {
			return nil, err
		}
	}
	d.logPath = filepath.Join(d.dir, "daemon-"+randHex(4)+".log")
	cmd, err := d.command("--listen", d.addr, "--listen", "unix:"+d.socket)
	if err != nil {
		return nil, err
	}
	d.cmd = cmd
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d.done = make(chan struct{})
	go func() { d.waitErr = cmd.Wait(); close(d.done) }()
	d.client = &http.Client{Timeout: 60 * time.Second}
	deadline := time.Now().Add(2 * time.Minute) // the first run unpacks the rootfs
	for {
		if err := d.healthy(); err == nil {
			return d, d.checkCgroups()
		}
		select {
		case <-d.done:
			return nil, fmt.Errorf("daemon exited (%v): %s", d.waitErr, d.logTail())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = d.kill()
			return nil, fmt.Errorf("no /healthz within 2m: %s", d.logTail())
		}
	}
}

// command builds a sandboxd command line for this daemon's dirs, started through a
// shell that first moves itself into the daemon's cgroups (v1 hierarchies cannot be
// chosen at clone time) and then execs the daemon, keeping its pid.
func (d *daemon) command(listen ...string) (*exec.Cmd, error) {
	log, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	args := []string{"-c", `n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1/cgroup.procs" || exit 97; shift; n=$((n-1)); done; exec "$@"`, "sh", strconv.Itoa(len(d.cgroups))}
	for _, dir := range d.cgroups {
		// A v2 daemon that ran here before enabled controllers for its children, so no
		// process may join the cgroup itself any more: a restart starts in its leaf, as
		// the daemon would place itself anyway.
		if leaf := filepath.Join(dir, "supervisor"); pureV2 {
			if _, err := os.Stat(leaf); err == nil {
				dir = leaf
			}
		}
		args = append(args, dir)
	}
	args = append(args, bin, "--rootfs", rootfsTar, "--state-dir", stateDir, "--run-dir", d.runDir,
		"--output-limit", strconv.Itoa(outputLimit), "--max-jobs", strconv.Itoa(maxJobs), "--max-queue", strconv.Itoa(maxQueue),
		"--pool-size", strconv.Itoa(d.pool), "--fork-server="+strconv.FormatBool(d.fork),
		// No warm kernels: the leftover checks count containers; sessions start cold here.
		"--session-pool", "0")
	args = append(args, listen...)
	cmd := exec.Command("/bin/sh", args...)
	cmd.Dir = d.cwd
	cmd.Env = append(os.Environ(), canaryEnv+"="+canary)
	cmd.Stdout, cmd.Stderr = log, log
	return cmd, nil
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// checkCgroups confirms from /proc/<pid>/cgroup that the daemon runs in the cgroups made
// for it, below which its jobs go and the suite looks for leftovers (on v2, in its
// supervisor leaf of the cgroup made for it).
func (d *daemon) checkCgroups() error {
	got, err := cgroupDirs(strconv.Itoa(d.pid()))
	if err != nil {
		return err
	}
	if pureV2 && len(got) == 1 && filepath.Base(got[0]) == "supervisor" {
		got[0] = filepath.Dir(got[0])
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(d.cgroups))
	if !slices.Equal(got, want) {
		_ = d.kill()
		return fmt.Errorf("daemon cgroups %v, want %v", got, want)
	}
	return nil
}

func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func (d *daemon) healthy() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.addr+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz: %s", resp.Status)
	}
	return nil
}

// stop sends SIGTERM and waits (bounded) for a clean exit, then removes its cgroups.
func (d *daemon) stop() error {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(45 * time.Second):
		_ = d.kill()
		return fmt.Errorf("no exit within 45s of SIGTERM: %s", d.logTail())
	}
	if d.waitErr != nil {
		return fmt.Errorf("exit: %v: %s", d.waitErr, d.logTail())
	}
	// Once the daemon is gone nothing of any job, warm or not, may remain.
	if ids := d.jobIDs(); len(ids) > 0 {
		return fmt.Errorf("left behind after shutdown: %v", ids)
	}
	return errors.Join(removeCgroups(d.cgroups), os.RemoveAll(d.dir))
}

// kill SIGKILLs the daemon and waits for it: a crash.
func (d *daemon) kill() error {
	_ = d.cmd.Process.Kill()
	select {
	case <-d.done:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("daemon did not die of SIGKILL")
	}
}

// jobIDs maps every job id found where the daemon keeps jobs (container state, storage
// dirs and mounts under the run dir, job cgroups in any hierarchy) to where it was found.
func (d *daemon) jobIDs() map[string][]string {
	ids := map[string][]string{}
	for _, sub := range []string{"containers", "jobs"} {
		ents, err := os.ReadDir(filepath.Join(d.runDir, sub))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			ids[err.Error()] = nil
		}
		for _, e := range ents {
			ids[e.Name()] = append(ids[e.Name()], filepath.Join(d.runDir, sub, e.Name()))
		}
	}
	for _, m := range mountsUnder(d.runDir) {
		// The daemon's own mounts, made once at start for every job: the jobs' roots
		// (an overlay of each image), the tmpfs holding the jobs' init, their /dev.
		if m == filepath.Join(d.runDir, "root") || filepath.Dir(m) == filepath.Join(d.runDir, "roots") ||
			m == filepath.Join(d.runDir, "init") || m == filepath.Join(d.runDir, "dev") {
			continue
		}
		ids[filepath.Base(m)] = append(ids[filepath.Base(m)], "mount "+m)
	}
	for _, cg := range d.jobCgroups() {
		ids[filepath.Base(cg)] = append(ids[filepath.Base(cg)], cg)
	}
	return ids
}

// leftovers lists what jobs left behind. The pool's idle warm containers (at most
// poolSize, plus one being started) are not leftovers; see idleWarm.
func (d *daemon) leftovers() []string {
	var out []string
	ids := d.jobIDs()
	for id, where := range ids {
		if !d.idleWarm(id) {
			out = append(out, where...)
		}
	}
	most := d.pool + 1
	if d.fork {
		most = 3*d.pool + 1 // each server, and the inits of the next two jobs it made ahead (forks of its python)
	}
	if len(ids) > most {
		out = append(out, fmt.Sprintf("%d containers for a pool of %d", len(ids), d.pool))
	}
	return out
}

// idleWarm tells an idle warm container from a job's remains: its storage holds no code
// yet, and its only processes are the job init and python waiting in the bootstrap.
func (d *daemon) idleWarm(id string) bool {
	storage := filepath.Join(d.runDir, "jobs", id)
	if _, err := os.Stat(storage); err != nil {
		return false
	}
	if _, err := os.Stat(filepath.Join(storage, "main.py")); err == nil {
		return false
	}
	for _, dir := range d.cgroups {
		procs, err := os.ReadFile(filepath.Join(dir, jobsCgroup, id, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, pid := range strings.Fields(string(procs)) {
			cmd, _ := os.ReadFile("/proc/" + pid + "/cmdline")
			// The init's options come before the command: -c (its control pipe), -p PID
			// (a fork server's job init, adopting the python it forked: its command is
			// only "python3"), -n SOFT:HARD (open files), -s (it loads the seccomp filter).
			cmd = bytes.TrimPrefix(cmd, []byte("/dev/.sbx-init\x00"))
			cmd = bytes.TrimPrefix(cmd, []byte("-c\x00"))
			adopts := false
			if rest, ok := bytes.CutPrefix(cmd, []byte("-p\x00")); ok {
				_, cmd, _ = bytes.Cut(rest, []byte{0})
				adopts = true
			}
			if rest, ok := bytes.CutPrefix(cmd, []byte("-n\x00")); ok {
				_, cmd, _ = bytes.Cut(rest, []byte{0})
			}
			cmd = bytes.TrimPrefix(cmd, []byte("-s\x00"))
			if !bytes.HasPrefix(cmd, []byte("python3\x00-c\x00")) && !(adopts && string(cmd) == "python3\x00") {
				return false
			}
		}
	}
	return true
}

// jobCgroups lists job cgroups below the daemon's jobs cgroup in every hierarchy
// (checkCgroups made sure they are where /proc/<pid>/cgroup puts the daemon).
func (d *daemon) jobCgroups() []string {
	var out []string
	for _, dir := range d.cgroups {
		ents, err := os.ReadDir(filepath.Join(dir, jobsCgroup))
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				out = append(out, err.Error())
			}
			continue
		}
		for _, e := range ents {
			if e.IsDir() {
				out = append(out, filepath.Join(dir, jobsCgroup, e.Name()))
			}
		}
	}
	return out
}

// noLeftovers fails the test if the last job left anything behind. The pool refills
// right after a job, so a container caught half-started gets a moment to settle.
func noLeftovers(t *testing.T, d *daemon) {
	t.Helper()
	left := d.leftovers()
	for deadline := time.Now().Add(3 * time.Second); len(left) > 0 && time.Now().Before(deadline); left = d.leftovers() {
		time.Sleep(50 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("jobs left behind: %v", left)
	}
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// mountsUnder lists the mount points of this (the host's) mount namespace at or below dir.
func mountsUnder(dir string) []string {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, m := range mounts {
		out = append(out, m.Mountpoint)
	}
	return out
}

// cgroupMounts maps each hierarchy of /proc/self/cgroup ("cpu", "name=systemd", "" for
// cgroup2) to its mount point and the mount's root.
func cgroupMounts() (map[string][2]string, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, err
	}
	out := map[string][2]string{}
	for _, m := range mounts {
		switch m.FSType {
		case "cgroup2":
			out[""] = [2]string{m.Mountpoint, m.Root}
		case "cgroup":
			for _, opt := range strings.Split(m.VFSOptions, ",") {
				out[opt] = [2]string{m.Mountpoint, m.Root}
			}
		}
	}
	return out, nil
}

// cgroupDirs returns the host directory of process pid's cgroup in every mounted hierarchy.
func cgroupDirs(pid string) ([]string, error) {
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile("/proc/" + pid + "/cgroup")
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		key := strings.Split(parts[1], ",")[0]
		m, ok := mounts[key]
		if !ok {
			continue
		}
		rel, err := filepath.Rel(m[1], parts[2])
		if err != nil {
			return nil, err
		}
		dirs = append(dirs, filepath.Join(m[0], rel))
	}
	return dirs, nil
}

// pureV2 is true on a host with only the cgroup2 hierarchy (production), where the
// daemon moves itself into a supervisor leaf of its cgroup and puts jobs in a sibling.
var pureV2 = func() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}()

// v2Parent is, on a pure v2 host, the cgroup the daemons' cgroups go below: the one this
// suite was started in (delegated, as systemd's Delegate=yes leaves a service).
var v2Parent string

// delegateV2 readies a delegated v2 cgroup for daemons of their own: v2 lets a cgroup with
// processes hand no controllers to its children, so the suite moves itself into a leaf
// and enables the controllers jobs use for its siblings, the daemons' cgroups.
// On v1 and hybrid hosts every hierarchy takes a child cgroup as it is.
func delegateV2() error {
	if !pureV2 {
		return nil
	}
	own, err := cgroupDirs("self")
	if err != nil || len(own) != 1 {
		return fmt.Errorf("own cgroup2 directory: %v %v", own, err)
	}
	v2Parent = own[0]
	// "supervisor", as the daemon names its own leaf: the VM stage expects that one.
	leaf := filepath.Join(v2Parent, "supervisor")
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		return fmt.Errorf("move the suite into %s: %w", leaf, err)
	}
	avail, err := os.ReadFile(filepath.Join(v2Parent, "cgroup.controllers"))
	if err != nil {
		return err
	}
	var enable []string
	for _, c := range []string{"cpu", "memory", "pids", "io"} {
		if slices.Contains(strings.Fields(string(avail)), c) {
			enable = append(enable, "+"+c)
		}
	}
	return os.WriteFile(filepath.Join(v2Parent, "cgroup.subtree_control"), []byte(strings.Join(enable, " ")), 0)
}

// makeCgroups creates a cgroup called name below this process's own, in every hierarchy
// (on a pure v2 host: beside the suite's leaf, see delegateV2).
func makeCgroups(name string) ([]string, error) {
	own, err := cgroupDirs("self")
	if err != nil {
		return nil, err
	}
	if pureV2 {
		own = []string{v2Parent}
	}
	var dirs []string
	for _, parent := range own {
		dir := filepath.Join(parent, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		// A new v1 cpuset has no cpus or mems: no task may join it until they are set.
		// (v2 inherits them; its child has no such file unless cpuset is enabled for it.)
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if pureV2 {
				break
			}
			if v, err := os.ReadFile(filepath.Join(parent, f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), v, 0); err != nil {
					return nil, err
				}
			}
		}
		dirs = append(dirs, dir)
	}
	return dirs, nil
}

// removeCgroups removes the daemon's cgroups (and its empty jobs cgroup) once it is gone.
func removeCgroups(dirs []string) error {
	var errs []error
	for _, dir := range dirs {
		// On v2 the daemon also leaves its supervisor leaf (empty once it is gone).
		for _, d := range []string{filepath.Join(dir, jobsCgroup), filepath.Join(dir, "supervisor"), dir} {
			if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// result is POST /v1/execute's answer.
type result struct {
	ID              string  `json:"id"`
	Status          string  `json:"status"`
	ExitCode        int     `json:"exit_code"`
	Signal          string  `json:"signal"`
	Stdout          string  `json:"stdout"`
	Stderr          string  `json:"stderr"`
	StdoutTruncated bool    `json:"stdout_truncated"`
	StderrTruncated bool    `json:"stderr_truncated"`
	WallMS          float64 `json:"wall_ms"`
	MemoryPeak      int64   `json:"memory_peak_bytes"`
	OOMKilled       bool    `json:"oom_killed"`
	Warm            bool    `json:"warm"`
	Error           string  `json:"error"`
	// rtt is how long the HTTP request took, as the client saw it; d ran the job.
	rtt time.Duration
	d   *daemon
}

func (r *result) String() string {
	return fmt.Sprintf("status=%s exit=%d signal=%q wall=%.0fms oom=%v\nstdout: %q\nstderr: %q",
		r.Status, r.ExitCode, r.Signal, r.WallMS, r.OOMKilled, clip(r.Stdout), clip(r.Stderr))
}

func clip(s string) string {
	if len(s) > 3000 {
		return s[:3000] + "…"
	}
	return s
}

type limits map[string]any

// execute runs code through POST /v1/execute and decodes the 200 answer.
func (d *daemon) execute(t *testing.T, code string, lim limits) *result {
	t.Helper()
	r, err := d.run(code, lim)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// run is execute for goroutines other than the test's.
func (d *daemon) run(code string, lim limits) (*result, error) {
	body, err := json.Marshal(map[string]any{"code": code, "limits": lim})
	if err != nil {
		return nil, err
	}
	start := time.Now()
	resp, err := d.client.Post("http://"+d.addr+"/v1/execute", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("POST /v1/execute: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	var r result
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("response is not valid JSON (%w): %q", err, clip(string(raw)))
	}
	r.rtt, r.d = time.Since(start), d
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("POST /v1/execute: %s: %s", resp.Status, raw)
	}
	jobsRun.Add(1)
	if r.Warm {
		jobsWarm.Add(1)
	}
	return &r, nil
}

// jobCase is one attack: code, the limits it runs under, and the safe outcome.
type jobCase struct {
	name   string
	code   string
	limits limits
	status string // the job's expected status
	stdout string // exact expected stdout, unless empty
	check  func(t *testing.T, r *result)
	timed  bool // its limits assume a real CPU; see needRealCPU
}

// needRealCPU skips a test whose timing assumes a real CPU when SANDBOXD_TEST_SLOW_CPU is
// set: the VM stage sets it under TCG emulation, where a cold job's start alone takes
// about a second of CPU. On the host and under KVM these tests run.
func needRealCPU(t *testing.T) {
	t.Helper()
	if os.Getenv("SANDBOXD_TEST_SLOW_CPU") != "" {
		t.Skip("timing assumes a real CPU; this one is emulated (SANDBOXD_TEST_SLOW_CPU)")
	}
}

// runCases submits each case to the daemon with warm containers and to the one without,
// and checks it; nothing may outlive a job. In code, {{daemon_pid}}, {{port}} and
// {{socket}} stand for the daemon's own.
func runCases(t *testing.T, cases []jobCase) {
	need(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.timed {
				needRealCPU(t)
			}
			for _, d := range []*daemon{shared, cold} {
				t.Run(d.name, func(t *testing.T) {
					_, port, _ := net.SplitHostPort(d.addr)
					code := strings.NewReplacer("{{daemon_pid}}", strconv.Itoa(d.pid()), "{{port}}", port, "{{socket}}", d.socket).Replace(c.code)
					r := d.execute(t, code, c.limits)
					if r.Status != c.status {
						t.Errorf("status %q, want %q\n%s", r.Status, c.status, r)
					}
					if c.stdout != "" && r.Stdout != c.stdout {
						t.Errorf("stdout:\n%s\nwant:\n%s\nstderr: %s", r.Stdout, c.stdout, clip(r.Stderr))
					}
					if c.check != nil {
						c.check(t, r)
					}
					noLeftovers(t, d)
				})
			}
		})
	}
}

// lines returns s's non-empty lines.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}
