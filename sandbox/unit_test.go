package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// cgroup v2 placement against a fake delegated tree: the daemon moves into a leaf, enables
// the controllers its cgroup has for the children, and puts jobs in a sibling.
func TestPlacementV2(t *testing.T) {
	cases := []struct {
		name, self, controllers string
		wantParent, wantCtl     string
		wantErr                 bool
	}{
		{"delegated service", "0::/system.slice/sandboxd.service\n", "cpuset cpu io memory hugetlb pids",
			"/system.slice/sandboxd.service/jobs", "+cpu +memory +pids +io", false},
		{"restarted inside its leaf", "0::/system.slice/sandboxd.service/supervisor\n", "cpu memory pids",
			"/system.slice/sandboxd.service/jobs", "+cpu +memory +pids", false},
		{"no memory controller delegated", "0::/user.slice\n", "cpu pids", "", "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			own, _ := strings.CutPrefix(strings.TrimSpace(c.self), "0::")
			base := strings.TrimSuffix(own, "/supervisor")
			write(t, filepath.Join(root, base, "cgroup.controllers"), c.controllers+"\n")
			p, err := setupPlacement(CgroupV2, root, "jobs", strings.NewReader(c.self), 4242)
			if c.wantErr {
				if err == nil {
					t.Fatalf("placement %+v, want an error", p)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.parent != c.wantParent || p.jobPath("sbx-1") != c.wantParent+"/sbx-1" {
				t.Errorf("parent %q, want %q", p.parent, c.wantParent)
			}
			if got := read(t, filepath.Join(root, base, "cgroup.subtree_control")); got != c.wantCtl {
				t.Errorf("subtree_control %q, want %q", got, c.wantCtl)
			}
			if !strings.HasSuffix(own, "/supervisor") {
				if got := read(t, filepath.Join(root, base, "supervisor", "cgroup.procs")); got != "4242" {
					t.Errorf("supervisor cgroup.procs %q", got)
				}
			}
		})
	}
}

func TestPlacementV1IsRelative(t *testing.T) {
	p, err := setupPlacement(CgroupV1, "/nonexistent", "jobs", strings.NewReader(""), 1)
	if err != nil || p.jobPath("sbx-1") != "jobs/sbx-1" {
		t.Errorf("%+v %v", p, err)
	}
}

// The figures libcontainer's stats lack, read from fake v1 and v2 cgroup files.
func TestCgroupFigures(t *testing.T) {
	// Let the cgroup library read plain files (it checks for cgroupfs otherwise).
	cgroups.TestMode = true
	t.Cleanup(func() { cgroups.TestMode = false })
	dir := t.TempDir()
	v1 := map[string]string{"cpuacct": filepath.Join(dir, "cpuacct"), "pids": filepath.Join(dir, "pids")}
	write(t, filepath.Join(dir, "cpuacct/cpuacct.usage"), "1234567890\n")
	write(t, filepath.Join(dir, "pids/pids.peak"), "17\n")
	write(t, filepath.Join(dir, "pids/pids.events"), "max 3\n")
	v2 := map[string]string{"": filepath.Join(dir, "unified")}
	write(t, filepath.Join(dir, "unified/cpu.stat"), "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n")
	write(t, filepath.Join(dir, "unified/pids.events"), "max 0\n") // no pids.peak: older kernels

	if d, err := cpuUsage(CgroupV1, v1); err != nil || d != 1234567890*time.Nanosecond {
		t.Errorf("v1 cpu %v %v", d, err)
	}
	if d, err := cpuUsage(CgroupV2, v2); err != nil || d != 2500*time.Millisecond {
		t.Errorf("v2 cpu %v %v", d, err)
	}
	if peak, hits, err := pidsFigures(CgroupV1, v1); err != nil || peak != 17 || hits != 3 {
		t.Errorf("v1 pids %d %d %v", peak, hits, err)
	}
	if peak, hits, err := pidsFigures(CgroupV2, v2); err != nil || peak != 0 || hits != 0 {
		t.Errorf("v2 pids %d %d %v", peak, hits, err)
	}
	write(t, filepath.Join(dir, "cpuacct/cpuacct.usage_user"), "1000000000\n")
	write(t, filepath.Join(dir, "cpuacct/cpuacct.usage_sys"), "234567890\n")
	write(t, filepath.Join(dir, "memory/memory.max_usage_in_bytes"), "209715200\n")
	write(t, filepath.Join(dir, "memory/memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
	write(t, filepath.Join(dir, "blkio/blkio.throttle.io_service_bytes_recursive"), "254:0 Read 4096\n254:0 Write 8192\n254:0 Sync 0\n8:0 Read 1\nTotal 12289\n")
	v1["memory"], v1["blkio"] = filepath.Join(dir, "memory"), filepath.Join(dir, "blkio")
	f, err := readFigures(CgroupV1, v1)
	want := figures{cpu: 1234567890, user: time.Second, system: 234567890, memoryPeak: 200 << 20, oomKills: 1, pidsPeak: 17, pidsLimitHits: 3, ioRead: 4097, ioWrite: 8192}
	if err != nil || f != want {
		t.Errorf("v1 figures %+v %v\nwant %+v", f, err, want)
	}
	write(t, filepath.Join(dir, "unified/memory.peak"), "104857600\n")
	write(t, filepath.Join(dir, "unified/memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n")
	write(t, filepath.Join(dir, "unified/io.stat"), "254:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n")
	f, err = readFigures(CgroupV2, v2)
	want = figures{cpu: 2500 * time.Millisecond, user: 2 * time.Second, system: 500 * time.Millisecond, memoryPeak: 100 << 20, ioRead: 100, ioWrite: 200}
	if err != nil || f != want {
		t.Errorf("v2 figures %+v %v\nwant %+v", f, err, want)
	}
	if _, err := cpuUsage(CgroupV2, map[string]string{"": filepath.Join(dir, "gone")}); err == nil {
		t.Error("a removed cgroup should fail (the watch then stops)")
	}
}

// A partition resolves to its disk (cgroup io rules name disks); no sysfs entry means
// no block device.
func TestDiskOf(t *testing.T) {
	sys := t.TempDir()
	write(t, filepath.Join(sys, "devices/virtual/block/vda/dev"), "254:0\n")
	write(t, filepath.Join(sys, "devices/virtual/block/vda/vda1/dev"), "254:1\n")
	write(t, filepath.Join(sys, "devices/virtual/block/vda/vda1/partition"), "1\n")
	for link, target := range map[string]string{"254:0": "vda", "254:1": "vda/vda1"} {
		if err := os.MkdirAll(filepath.Join(sys, "dev/block"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(sys, "devices/virtual/block", target), filepath.Join(sys, "dev/block", link)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct{ major, minor int64 }{{254, 0}, {254, 1}} {
		d, err := diskOf(c.major, c.minor, sys)
		if err != nil || d.String() != "254:0" {
			t.Errorf("%d:%d -> %v %v", c.major, c.minor, d, err)
		}
	}
	if _, err := diskOf(0, 42, sys); !errors.Is(err, ErrNoBlockDevice) {
		t.Errorf("tmpfs device: %v", err)
	}
}

func TestResolve(t *testing.T) {
	p := DefaultPolicy()
	got, err := p.Resolve(Limits{Memory: 128 << 20})
	if err != nil || got.Memory != 128<<20 || got.CPUs != p.Default.CPUs || got.Timeout != p.Default.Timeout || got.IOReadBPS != 0 {
		t.Errorf("%+v %v", got, err)
	}
	for _, c := range []struct {
		req   Limits
		field string
	}{
		{Limits{CPUs: 8}, "limits.cpus"},
		{Limits{CPUTime: time.Hour}, "limits.cpu_time"},
		{Limits{Memory: 1}, "limits.memory"},
		{Limits{OpenFiles: 1 << 20}, "limits.open_files"},
		{Limits{Stack: 1}, "limits.stack"},
		{Limits{IOWeight: 5000}, "limits.io_weight"},
		{Limits{IOReadBPS: -1}, "limits.io_read_bps"},
	} {
		_, err := p.Resolve(c.req)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != c.field || !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%+v: %v, want a field error on %s", c.req, err, c.field)
		}
	}
	// A throttle the policy imposes cannot be lifted by asking for none.
	capped := p
	capped.Default.IOWriteBPS, capped.Max.IOWriteBPS = 10<<20, 50<<20
	if l, err := capped.Resolve(Limits{}); err != nil || l.IOWriteBPS != 10<<20 {
		t.Errorf("%+v %v", l, err)
	}
	if _, err := capped.Resolve(Limits{IOWriteBPS: 100 << 20}); err == nil {
		t.Error("above the io maximum accepted")
	}
	bad := p
	bad.Default.Memory = bad.Max.Memory * 2
	if bad.Validate() == nil {
		t.Error("defaults above maximums validated")
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		stop stopReason
		res  Outcome
		want Status
	}{
		{stopNone, Outcome{}, StatusOK},
		{stopNone, Outcome{ExitCode: 3}, StatusError},
		{stopNone, Outcome{Signal: "SIGSEGV"}, StatusSignaled},
		{stopNone, Outcome{Signal: "SIGKILL", OOMKilled: true}, StatusMemoryLimit},
		{stopTimeout, Outcome{Signal: "SIGKILL", OOMKilled: true}, StatusTimeout},
		{stopCPUTime, Outcome{Signal: "SIGKILL"}, StatusCPULimit},
		{stopCancelled, Outcome{Signal: "SIGKILL", OOMKilled: true}, StatusCancelled},
	} {
		if got := classify(c.stop, &c.res); got != c.want {
			t.Errorf("%v %+v: %s, want %s", c.stop, c.res, got, c.want)
		}
	}
}

func TestReadInitStatus(t *testing.T) {
	for in, want := range map[string]struct {
		code int
		sig  string
		ok   bool
		err  error
	}{
		"exit 0\n": {0, "", true, nil}, "exit 3\n": {3, "", true, nil}, "signal 9\n": {-1, "SIGKILL", true, nil},
		"": {-1, "", false, nil}, "garbage\n": {-1, "", false, nil},
		"fail 22\n": {-1, "", false, unix.EINVAL},
	} {
		r := readInitStatus(strings.NewReader(in))
		if r.code != want.code || r.signal != want.sig || r.ok != want.ok || !errors.Is(r.err, want.err) || (r.err == nil) != (want.err == nil) {
			t.Errorf("%q: %+v", in, r)
		}
	}
}

func TestCapture(t *testing.T) {
	c := &capture{limit: 5}
	for _, s := range []string{"abc", "defg", "hij"} {
		if n, err := c.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatal(n, err)
		}
	}
	if c.buf.String() != "abcde" || !c.truncated || c.total != 10 {
		t.Errorf("%q truncated=%v total=%d", c.buf.String(), c.truncated, c.total)
	}
}
