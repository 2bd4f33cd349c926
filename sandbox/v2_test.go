package sandbox_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/sandbox"
)

// What only a unified (cgroup v2) hierarchy shows: the delegated layout, the files each
// limit becomes, memory.peak, memory.events' oom_kill, cpu.max and io.max. They skip on
// v1 hosts; `make test-vm` runs them in a VM (scripts/vmtest.sh) whose kernel is pure v2,
// with the test process alone in a delegated cgroup as systemd's Delegate=yes leaves it.

const cgroupRoot = "/sys/fs/cgroup"

var v2Engines atomic.Int64

// v2Engine starts a real engine and returns it with its delegated cgroup (the one the
// daemon was started in) and the directory its jobs' cgroups go into.
func v2Engine(t *testing.T) (e *sandbox.Engine, base string, at jobsAt) {
	t.Helper()
	if !cgroups.IsCgroup2UnifiedMode() {
		t.Skip("needs a cgroup v2 (unified) hierarchy: `make test-vm` runs this in a VM")
	}
	name := fmt.Sprintf("v2test-%d-%d", os.Getpid(), v2Engines.Add(1))
	at.runDir = testenv.RunDir(t)
	e = testenv.Engine(t, sandbox.Options{CgroupName: name, RunDir: at.runDir})
	own := selfCgroup(t)
	if path.Base(own) != "supervisor" {
		t.Fatalf("the daemon is in %s, want a supervisor leaf of its delegated cgroup", own)
	}
	base = filepath.Join(cgroupRoot, path.Dir(own))
	at.cgroups = filepath.Join(base, name)
	return e, base, at
}

// jobsAt is where an engine keeps its jobs: their storage and their cgroups.
type jobsAt struct{ runDir, cgroups string }

func selfCgroup(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	p, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "0::")
	if !ok {
		t.Fatalf("/proc/self/cgroup: %q", b)
	}
	return p
}

func cgFile(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// running is a job started in the background, caught while it runs.
type running struct {
	id, cgroup string // the job's id, its container's cgroup
	done       chan *sandbox.Result
}

var marks atomic.Int64

// start runs a job with lim that marks its storage once it runs (with its limits applied:
// a warm container's are set when the job is handed over), then sleeps until killed. It
// returns once the mark is there; the job's container (not the job's id on a warm one)
// is the storage dir holding it.
func start(t *testing.T, e *sandbox.Engine, at jobsAt, lim sandbox.Limits) *running {
	t.Helper()
	mark := fmt.Sprintf(".v2-running-%d", marks.Add(1))
	code := fmt.Sprintf("open('/tmp/%s', 'w').close()\nimport time\ntime.sleep(120)", mark)
	r := &running{done: make(chan *sandbox.Result, 1)}
	go func() {
		res, err := e.Run(context.Background(), sandbox.Request{Code: code, Limits: lim})
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		r.done <- res
	}()
	t.Cleanup(func() { e.KillAll() }) // a test that failed half-way leaves no job running
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the job never ran")
		}
		found, _ := filepath.Glob(filepath.Join(at.runDir, "jobs", "*", mark))
		if js := e.Jobs(); len(js) == 1 && len(found) == 1 {
			r.id, r.cgroup = js[0].ID, filepath.Join(at.cgroups, filepath.Base(filepath.Dir(found[0])))
			return r
		}
	}
}

// end kills the job and returns its result.
func (r *running) end(t *testing.T, e *sandbox.Engine) *sandbox.Result {
	t.Helper()
	if err := e.Kill(r.id); err != nil {
		t.Fatalf("kill: %v", err)
	}
	select {
	case res := <-r.done:
		if res == nil {
			t.FailNow()
		}
		return res
	case <-time.After(30 * time.Second):
		t.Fatal("killed job did not end")
	}
	return nil
}

// The daemon moves itself into a leaf, its delegated cgroup holds no process and enables
// the controllers jobs need, each limit is the cgroup file it should be, and once the
// engine closes nothing but the leaf is left below the delegated cgroup.
func TestV2Layout(t *testing.T) {
	e, base, at := v2Engine(t)
	if procs := cgFile(t, base, "cgroup.procs"); procs != "" {
		t.Errorf("delegated cgroup %s holds processes %q (no-internal-processes rule)", base, procs)
	}
	ctl := " " + cgFile(t, base, "cgroup.subtree_control") + " "
	for _, c := range []string{"cpu", "memory", "pids", "io"} {
		if !strings.Contains(ctl, " "+c+" ") {
			t.Errorf("%s/cgroup.subtree_control = %q, lacks %s", base, ctl, c)
		}
	}
	lim := sandbox.Limits{CPUs: 0.5, Memory: 100 << 20, Pids: 32, Timeout: time.Minute,
		IOReadBPS: 2 << 20, IOWriteBPS: 1 << 20, IOReadIOPS: 100, IOWriteIOPS: 50, IOWeight: 200}
	r := start(t, e, at, lim)
	want := map[string]string{
		"cpu.max":         "50000 100000",
		"memory.max":      strconv.Itoa(100 << 20),
		"memory.swap.max": "0",
		"pids.max":        "32",
		"io.weight":       fmt.Sprintf("default %d", cgroups.ConvertBlkIOToIOWeightValue(200)),
	}
	for f, w := range want {
		if got := cgFile(t, r.cgroup, f); got != w {
			t.Errorf("%s = %q, want %q", f, got, w)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(testenv.Rootfs(t), &st); err != nil {
		t.Fatal(err)
	}
	ioMax := cgFile(t, r.cgroup, "io.max")
	if !strings.Contains(ioMax, " rbps=2097152 wbps=1048576 riops=100 wiops=50") {
		t.Errorf("io.max = %q, want the job's throttles (rootfs on device %d:%d)", ioMax, unix.Major(st.Dev), unix.Minor(st.Dev))
	}
	r.end(t, e)
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		if ent.IsDir() && ent.Name() != "supervisor" && strings.HasPrefix(ent.Name(), "v2test-") {
			t.Errorf("left below the delegated cgroup: %s", ent.Name())
		}
	}
	if _, err := os.Stat(at.cgroups); err == nil {
		t.Errorf("jobs cgroup %s still there after Close", at.cgroups)
	}
}

// memory.peak is the high-water mark: a job that allocates 200 MB and frees it reports
// ~200 MB, though it ends using far less.
func TestV2MemoryPeak(t *testing.T) {
	e, _, _ := v2Engine(t)
	res := run(t, e, sandbox.Request{Code: `
import gc, time
x = bytearray(200 << 20)
for i in range(0, len(x), 4096): x[i] = 1
del x; gc.collect()
time.sleep(0.2)`, Limits: sandbox.Limits{Memory: 512 << 20, Timeout: time.Minute}})
	if want := int64(200 << 20); res.Status != sandbox.StatusOK || res.MemoryPeak < want || res.MemoryPeak > want*11/10 {
		t.Errorf("status %q memory_peak %d, want ok and within 10%% above %d (stderr %q)", res.Status, res.MemoryPeak, want, res.Stderr)
	}
}

// OOM is read from memory.events' oom_kill, not guessed from an exit code: a child the
// OOM killer takes, in a job that then exits 0, still reports memory_limit.
func TestV2OOMKillFromEvents(t *testing.T) {
	e, _, _ := v2Engine(t)
	res := run(t, e, sandbox.Request{Code: `
import os
pid = os.fork()
if pid == 0:
    x = bytearray(200 << 20)
    for i in range(0, len(x), 4096): x[i] = 1
    os._exit(0)
_, st = os.waitpid(pid, 0)
print(os.WIFSIGNALED(st) and os.WTERMSIG(st))`, Limits: sandbox.Limits{Memory: 64 << 20, Timeout: time.Minute}})
	if res.Status != sandbox.StatusMemoryLimit || !res.OOMKilled || res.ExitCode != 0 || res.Stdout != "9\n" {
		t.Errorf("status %q oom_killed %v exit %d stdout %q stderr %q, want memory_limit, true, 0, \"9\\n\"",
			res.Status, res.OOMKilled, res.ExitCode, res.Stdout, res.Stderr)
	}
}

// cpu.max: a job busy for 2 s of wall time at cpus 0.5 gets ~1 s of CPU; at cpus 1, ~2 s.
// Measured inside the job over the busy loop only, so a slow start (a VM) does not count.
func TestV2CPUMax(t *testing.T) {
	e, _, _ := v2Engine(t)
	code := `
import time
t0, c0 = time.monotonic(), time.process_time()
while time.monotonic() < t0 + 2: pass
print(time.process_time() - c0)`
	for _, c := range []struct{ cpus, lo, hi float64 }{{0.5, 0.8, 1.15}, {1, 1.6, 2.1}} {
		res := run(t, e, sandbox.Request{Code: code, Limits: sandbox.Limits{CPUs: c.cpus, Timeout: time.Minute, CPUTime: time.Minute}})
		cpu, err := strconv.ParseFloat(strings.TrimSpace(res.Stdout), 64)
		if res.Status != sandbox.StatusOK || err != nil || cpu < c.lo || cpu > c.hi {
			t.Errorf("cpus %g: status %q, %q s of CPU in 2 s, want %g-%g (stderr %q)", c.cpus, res.Status, res.Stdout, c.lo, c.hi, res.Stderr)
		}
	}
}

// io.max on the disk under the state directory: 4 MB written with O_DIRECT at a 1 MB/s
// cap take at least 3 s, without a cap far less, and the job's result counts the bytes.
//
// Jobs themselves cannot write to that disk (their rootfs is read-only and their storage
// is tmpfs), so the writer is dd started by the test directly into the running job's
// cgroup (clone3 CLONE_INTO_CGROUP): it proves the io.max rule sandboxd sets for a real
// job throttles that disk, and that io_write_bytes is read from the job's io.stat. Reads
// by the job itself are TestIOReadThrottle.
func TestV2IOWriteThrottle(t *testing.T) {
	e, _, at := v2Engine(t)
	dir := stateDirOnRootfsDisk(t)
	write := func(lim sandbox.Limits) (time.Duration, *sandbox.Result) {
		lim.Timeout = time.Minute
		r := start(t, e, at, lim)
		fd, err := unix.Open(r.cgroup, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		out := filepath.Join(dir, "v2-io-"+r.id)
		defer os.Remove(out)
		dd := exec.Command("dd", "if=/dev/zero", "of="+out, "bs=1M", "count=4", "oflag=direct")
		dd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
		t0 := time.Now()
		msg, err := dd.CombinedOutput()
		took := time.Since(t0)
		res := r.end(t, e)
		if err != nil {
			t.Fatalf("dd in the job's cgroup: %v: %s", err, msg)
		}
		return took, res
	}
	capped, res := write(sandbox.Limits{IOWriteBPS: 1 << 20})
	if capped < 3*time.Second {
		t.Errorf("4 MB with O_DIRECT at 1 MB/s took %v, want >= 3 s", capped)
	}
	if res.IOWriteBytes < 4<<20 {
		t.Errorf("io_write_bytes %d, want >= 4 MiB", res.IOWriteBytes)
	}
	free, _ := write(sandbox.Limits{})
	if free > capped/3 {
		t.Errorf("4 MB without a cap took %v, with a 1 MB/s cap %v: want far less", free, capped)
	}
	t.Logf("4 MB O_DIRECT: %v at 1 MB/s, %v without a cap", capped, free)
}

// On v2 a daemon whose cgroup holds other processes cannot enable controllers for its
// jobs (the no-internal-processes rule): it refuses to start and says how to run it.
func TestV2DaemonNeedsItsOwnCgroup(t *testing.T) {
	_, base, _ := v2Engine(t) // this process is now in base/supervisor; base delegates
	bin := os.Getenv("SANDBOXD_BIN")
	if bin == "" {
		t.Skip("SANDBOXD_BIN is not set: run `make test-vm`")
	}
	cg := filepath.Join(base, fmt.Sprintf("v2busy-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(cg)
	defer os.Remove(filepath.Join(cg, "supervisor"))
	fd, err := unix.Open(cg, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	into := &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	other := exec.Command("sleep", "120")
	other.SysProcAttr = into
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer other.Wait()
	defer other.Process.Kill()
	run := testenv.RunDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := exec.CommandContext(ctx, bin, "--rootfs", os.Getenv("SANDBOXD_ROOTFS"), "--state-dir", testState(),
		"--run-dir", run, "--listen", "unix:"+filepath.Join(run, "sandboxd.sock"), "--pool-size", "0")
	d.SysProcAttr = into
	out, err := d.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "holds processes besides sandboxd") {
		t.Errorf("sandboxd in a shared v2 cgroup: %v, output:\n%s", err, out)
	}
}

// stateDirOnRootfsDisk returns a directory on the disk io limits apply to (the one under
// the test rootfs), skipping when that is not a block device.
func stateDirOnRootfsDisk(t *testing.T) string {
	t.Helper()
	dir := testState()
	var a, b unix.Stat_t
	if err := unix.Stat(testenv.Rootfs(t), &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(dir, &b); err != nil {
		t.Fatal(err)
	}
	if a.Dev != b.Dev {
		t.Fatalf("%s and the rootfs are on different filesystems", dir)
	}
	if _, err := os.Stat(fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(a.Dev), unix.Minor(a.Dev))); err != nil {
		t.Skipf("the state directory %s is not on a block device", dir)
	}
	return dir
}

// testState is testenv's state directory; its rootfs store is a daemon's too.
func testState() string {
	if dir := os.Getenv("SANDBOXD_TEST_STATE"); dir != "" {
		return dir
	}
	return "/var/tmp/sandboxd-test"
}
