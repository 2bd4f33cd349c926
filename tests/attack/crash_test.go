package attack_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// After a crash (SIGKILL) with a job running, the next daemon on the same run dir
// removes everything of that job: its processes, cgroups, storage mount and state, also
// when the container's state was lost (a crash between creating the cgroup and saving it).
func TestCrashRecovery(t *testing.T) {
	need(t)
	for _, loseState := range []bool{false, true} {
		name := "state kept"
		if loseState {
			name = "state lost"
		}
		t.Run(name, func(t *testing.T) {
			d, err := startDaemon("crash", poolSize, nil)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				_, _ = d.run("import time\nopen('/work/alive', 'w').close()\ntime.sleep(600)", limits{"timeout": 300})
			}()

			// The job is up once its cgroup holds the init and python.
			var id string
			var pids []string
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && len(pids) < 2; time.Sleep(50 * time.Millisecond) {
				for _, cg := range d.jobCgroups() {
					if b, err := os.ReadFile(filepath.Join(cg, "cgroup.procs")); err == nil {
						if p := strings.Fields(string(b)); len(p) >= 2 {
							id, pids = filepath.Base(cg), p
						}
					}
				}
			}
			if len(pids) < 2 {
				_ = d.kill()
				t.Fatalf("the job never started: %s", d.logTail())
			}
			before := d.jobIDs() // the job and the pool's warm containers
			if err := d.kill(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
			t.Logf("job %s: processes %v alive after the crash: %v", id, pids, alive(pids))
			if loseState {
				if err := os.RemoveAll(filepath.Join(d.runDir, "containers", id)); err != nil {
					t.Fatal(err)
				}
			}

			d2, err := startDaemon("crash", poolSize, d)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := d2.stop(); err != nil {
					t.Error(err)
				}
			}()
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && len(alive(pids)) > 0; {
				time.Sleep(50 * time.Millisecond)
			}
			if a := alive(pids); len(a) > 0 {
				t.Errorf("the crashed daemon's job still runs: %v", a)
			}
			for id, where := range d2.jobIDs() {
				if _, ok := before[id]; ok {
					t.Errorf("the crashed daemon's %s is still there: %v", id, where)
				}
			}
			// On hybrid hosts libcontainer puts each job's node of the controller-less
			// cgroup2 tree at that tree's root, not below the daemon's cgroup.
			for id := range before {
				if dir := hybridJobCgroup(id); dir != "" {
					if _, err := os.Stat(dir); err == nil {
						t.Errorf("the crashed daemon's %s left its cgroup2 node %s", id, dir)
					}
				}
			}
			noLeftovers(t, d2)
			if r := d2.execute(t, "print('after')", nil); r.Status != "ok" {
				t.Errorf("job after the restart:\n%s", r)
			}
		})
	}
}

// alive returns the pids that exist and are not zombies.
func alive(pids []string) []string {
	var out []string
	for _, p := range pids {
		b, err := os.ReadFile("/proc/" + p + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state …: the state follows the last ')'.
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 && i+2 < len(s) && s[i+2] != 'Z' {
			out = append(out, p)
		}
	}
	return out
}

// hybridJobCgroup is where libcontainer puts job id's node of the cgroup2 tree on a
// hybrid host (the tree's root, then the jobs cgroup), or "" on other hosts.
func hybridJobCgroup(id string) string {
	const unified = "/sys/fs/cgroup/unified"
	var st unix.Statfs_t
	if unix.Statfs(unified, &st) != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		return ""
	}
	return filepath.Join(unified, jobsCgroup, id)
}
