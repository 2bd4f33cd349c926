package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
)

// CgroupMode says which cgroup hierarchy the host runs.
type CgroupMode string

const (
	CgroupV1 CgroupMode = "v1" // legacy or hybrid: one hierarchy per controller
	CgroupV2 CgroupMode = "v2" // unified
)

// DefaultCgroupName is the cgroup under which every job of a daemon lives.
const DefaultCgroupName = "sandboxd-jobs"

// supervisorCgroupName is the leaf a v2 daemon moves itself into, so that its own cgroup
// may enable controllers for the jobs (cgroup v2's no-internal-processes rule).
const supervisorCgroupName = "supervisor"

// placement decides where job cgroups go: below the daemon's own cgroup in every
// hierarchy, never anywhere the daemon was not given.
type placement struct {
	mode CgroupMode
	// parent is what job cgroup paths are built from: on v1 a relative path, which
	// libcontainer nests under the daemon's own cgroup in each hierarchy; on v2 an
	// absolute path below the daemon's delegated cgroup.
	parent string
}

func (p placement) jobPath(id string) string { return path.Join(p.parent, id) }

// setupPlacement prepares the daemon's cgroups for jobs. mountpoint is the cgroup2
// mount (normally /sys/fs/cgroup) and selfCgroup the content of /proc/self/cgroup.
func setupPlacement(mode CgroupMode, mountpoint, name string, selfCgroup io.Reader, pid int) (placement, error) {
	if mode == CgroupV1 {
		return placement{mode: mode, parent: name}, nil
	}
	own, err := unifiedPath(selfCgroup)
	if err != nil {
		return placement{}, err
	}
	base := own
	if path.Base(own) == supervisorCgroupName {
		base = path.Dir(own) // restarted inside the leaf a previous run made
	}
	leaf := filepath.Join(mountpoint, base, supervisorCgroupName)
	if own != path.Join(base, supervisorCgroupName) {
		if err := os.MkdirAll(leaf, 0o755); err != nil {
			return placement{}, fmt.Errorf("create supervisor cgroup: %w", err)
		}
		if err := os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return placement{}, fmt.Errorf("move daemon into %s: %w", leaf, err)
		}
	}
	if err := enableControllers(filepath.Join(mountpoint, base)); err != nil {
		return placement{}, err
	}
	return placement{mode: mode, parent: path.Join(base, name)}, nil
}

// enableControllers turns on, for the children of dir, every controller jobs use that
// dir itself has.
func enableControllers(dir string) error {
	avail, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("read controllers: %w", err)
	}
	have := map[string]bool{}
	for _, c := range strings.Fields(string(avail)) {
		have[c] = true
	}
	var want []string
	for _, c := range []string{"cpu", "memory", "pids", "io"} {
		if have[c] {
			want = append(want, "+"+c)
		}
	}
	if !have["memory"] || !have["pids"] {
		return fmt.Errorf("cgroup %s lacks the memory or pids controller (is it delegated?): %w", dir, errors.ErrUnsupported)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(want, " ")), 0); err != nil {
		if errors.Is(err, unix.EBUSY) { // the no-internal-processes rule: someone else is in dir
			return fmt.Errorf("cgroup %s holds processes besides sandboxd, so it cannot enable controllers for jobs: "+
				"on cgroup v2 run sandboxd in a cgroup of its own (systemd: Delegate=yes; by hand: systemd-run -p Delegate=yes): %w", dir, err)
		}
		return fmt.Errorf("enable controllers %v in %s: %w", want, dir, err)
	}
	return nil
}

// unifiedPath returns the cgroup v2 path in /proc/self/cgroup ("0::/path").
func unifiedPath(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return p, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no cgroup v2 entry in /proc/self/cgroup")
}

// hostCgroupMode reports the mode of the running host.
func hostCgroupMode() CgroupMode {
	if cgroups.IsCgroup2UnifiedMode() {
		return CgroupV2
	}
	return CgroupV1
}
