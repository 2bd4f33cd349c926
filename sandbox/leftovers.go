package sandbox

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
	"github.com/opencontainers/cgroups"
)

// Leftovers lists what jobs left behind that should be gone once no job runs: container
// state, job storage directories and mounts under RunDir, and job cgroups below the
// daemon's jobs cgroup in every hierarchy. Tests and the admin status use it.
func (e *Engine) Leftovers() ([]string, error) {
	var out []string
	// Warm containers (idle, starting or being torn down) are not leftovers; the pool
	// holds still while we look.
	err := e.scanPools(func(idle map[string]bool) (err error) {
		e.sessionIDs(idle) // live and pooled sessions are not leftovers either
		out, err = e.leftovers(idle)
		return err
	})
	return out, err
}

func (e *Engine) leftovers(idle map[string]bool) ([]string, error) {
	var out []string
	for _, dir := range []string{e.stateRoot, e.jobsRoot} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		for _, ent := range ents {
			if !idle[ent.Name()] {
				out = append(out, filepath.Join(dir, ent.Name()))
			}
		}
	}
	mounts, err := mountsUnder(e.opts.RunDir)
	if err != nil {
		return nil, err
	}
	own := map[string]bool{}
	for _, d := range []string{initMountDir, devMountDir} {
		own[filepath.Join(e.opts.RunDir, d)] = true
	}
	for _, r := range e.roots {
		own[r] = true
	}
	for _, m := range mounts {
		if !idle[filepath.Base(m)] && !own[m] {
			out = append(out, m)
		}
	}
	dirs, err := e.jobCgroupDirs()
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		ents, err := os.ReadDir(d)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, err
		}
		for _, ent := range ents {
			if ent.IsDir() && !idle[ent.Name()] {
				out = append(out, filepath.Join(d, ent.Name()))
			}
		}
	}
	return out, nil
}

// jobCgroupDirs returns the host directories that hold job cgroups, one per hierarchy.
func (e *Engine) jobCgroupDirs() ([]string, error) {
	if e.place.mode == CgroupV2 {
		return []string{filepath.Join(e.opts.CgroupMountpoint, e.place.parent)}, nil
	}
	own, err := cgroups.ParseCgroupFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	mounts, err := cgroups.GetCgroupMounts(false)
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, m := range mounts {
		if len(m.Subsystems) == 0 {
			continue
		}
		p, ok := own[m.Subsystems[0]]
		if !ok {
			// Named hierarchies: the mount says "systemd", /proc/self/cgroup "name=systemd".
			if p, ok = own["name="+m.Subsystems[0]]; !ok {
				continue
			}
		}
		rel, err := filepath.Rel(m.Root, p)
		if err != nil {
			continue
		}
		dirs = append(dirs, filepath.Join(m.Mountpoint, rel, e.place.parent))
	}
	// Hybrid hosts: libcontainer also places jobs in the (controller-less) cgroup2 tree,
	// and there, unlike in the v1 hierarchies, not below the daemon's own cgroup: its
	// path for that tree is the tree's root (cgroups.GetOwnCgroupPath("")). Look where
	// it puts them, or a job whose state was lost leaves its node there for good.
	if _, ok := own[""]; ok && cgroups.IsCgroup2HybridMode() {
		if root, err := cgroups.GetOwnCgroupPath(""); err == nil {
			dirs = append(dirs, filepath.Join(root, e.place.parent))
		}
	}
	return dirs, nil
}

// mountsUnder lists mount points at or below dir. It reads the calling thread's view:
// libcontainer joins a container's mount namespace on a locked thread to open mount
// sources, and when that thread is the main one Go keeps it (wedged, in that
// namespace) rather than ending it, so /proc/self would show a dead container's mounts.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/thread-self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	mounts, err := mountinfo.GetMountsFromReader(f, mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(mounts))
	for _, m := range mounts {
		out = append(out, m.Mountpoint)
	}
	return out, nil
}
