package sandbox

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// newStorage makes a job's storage: a size-capped tmpfs at jobsRoot/name, owned by the
// job's user, that becomes its /work and /tmp. Its undo is pushed first.
func (e *Engine) newStorage(name string, lim Limits, undo *cleanup) (string, error) {
	dir := filepath.Join(e.jobsRoot, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("create job dir: %w", err)
	}
	undo.push(func() error { return os.Remove(dir) })
	return dir, e.mountStorage(dir, lim, undo)
}

// mountStorage mounts a job's storage tmpfs on dir, made already.
func (e *Engine) mountStorage(dir string, lim Limits, undo *cleanup) error {
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, tmpfsOptions(lim, uint32(e.jobUID()))); err != nil {
		return fmt.Errorf("mount job tmpfs: %w", err)
	}
	undo.push(func() error { return unmount(dir) })
	return nil
}

// jobUID is the host uid the job's user (JobUID) maps to.
func (e *Engine) jobUID() int { return int(e.opts.HostIDBase + JobUID) }

// writeFiles writes a job's files into its storage before anything of the job runs,
// owned by the job's user. The storage is fresh, so nothing in it can redirect a write;
// os.Root keeps every path inside it all the same.
func (e *Engine) writeFiles(storage string, files []File) error {
	root, err := os.OpenRoot(storage)
	if err != nil {
		return err
	}
	defer root.Close()
	uid := e.jobUID()
	for _, f := range files {
		if d := path.Dir(f.Name); d != "." {
			if err := mkdirOwned(root, d, uid); err != nil {
				return err
			}
		}
		if err := root.WriteFile(f.Name, f.Content, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", f.Name, err)
		}
		if err := root.Lchown(f.Name, uid, uid); err != nil {
			return err
		}
	}
	return nil
}

// mkdirOwned makes dir and its parents below root, each owned by uid.
func mkdirOwned(root *os.Root, dir string, uid int) error {
	parts := strings.Split(dir, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		if err := root.Mkdir(p, 0o755); err != nil {
			if errors.Is(err, fs.ErrExist) {
				continue
			}
			return err
		}
		if err := root.Lchown(p, uid, uid); err != nil {
			return err
		}
	}
	return nil
}

// errStorageFull is a job's files not fitting its storage.
var errStorageFull = errors.New("the files do not fit in limits.storage")

// collect reads the files a job left in storage that match globs, within the caps. It
// runs once every process of the job is gone, so nothing changes under it; a symlink
// (wherever it points) or any other non-regular file is listed, never followed or read.
func collect(storage string, globs []string, caps RequestCaps) ([]CollectedFile, error) {
	if len(globs) == 0 {
		return nil, nil
	}
	root, err := os.OpenRoot(storage)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	var names []string
	seen := map[string]bool{}
	for _, g := range globs {
		matches, err := globIn(root, g)
		if err != nil {
			return nil, err
		}
		for _, m := range matches {
			if !seen[m] {
				seen[m] = true
				names = append(names, m)
			}
		}
	}
	slices.Sort(names)
	out := make([]CollectedFile, 0, len(names))
	var total int64
	for _, name := range names {
		cf := CollectedFile{Name: name}
		fi, err := root.Lstat(name)
		switch {
		case err != nil:
			cf.SkipReason = "unreadable"
		case fi.Mode()&fs.ModeSymlink != 0:
			cf.SkipReason = "symlink (not followed)"
		case fi.IsDir():
			cf.SkipReason = "directory"
		case !fi.Mode().IsRegular():
			cf.SkipReason = "not a regular file"
		}
		if err == nil {
			cf.Size = fi.Size()
		}
		if cf.SkipReason == "" {
			want := min(cf.Size, caps.CollectFile)
			if total+want > caps.CollectTotal {
				cf.SkipReason = fmt.Sprintf("over the total cap of %d bytes for collected files", caps.CollectTotal)
			} else if cf.Content, err = readPrefix(root, name, want); err != nil {
				cf.SkipReason = "unreadable"
			} else {
				total += int64(len(cf.Content))
				cf.Truncated = int64(len(cf.Content)) < cf.Size
			}
		}
		out = append(out, cf)
	}
	return out, nil
}

// readPrefix reads at most n bytes of a regular file, without following a final symlink.
func readPrefix(root *os.Root, name string, n int64) ([]byte, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	return io.ReadAll(io.LimitReader(f, n))
}

// globIn lists what matches glob (path.Match per path element) below root, walking
// only directories that are real (a symlinked directory is not entered) and never
// the compile step's artifacts.
func globIn(root *os.Root, glob string) ([]string, error) {
	parts := strings.Split(glob, "/")
	var walk func(dir string, i int) ([]string, error)
	walk = func(dir string, i int) ([]string, error) {
		d, err := root.Open(dir)
		if err != nil {
			return nil, nil // gone or not a directory: no match
		}
		ents, err := d.ReadDir(-1)
		d.Close()
		if err != nil {
			return nil, nil
		}
		var out []string
		for _, ent := range ents {
			if dir == "." && ent.Name() == outName {
				continue
			}
			if ok, _ := path.Match(parts[i], ent.Name()); !ok {
				continue
			}
			p := path.Join(dir, ent.Name())
			if i == len(parts)-1 {
				out = append(out, p)
			} else if ent.IsDir() && ent.Type()&fs.ModeSymlink == 0 {
				sub, err := walk(p, i+1)
				if err != nil {
					return nil, err
				}
				out = append(out, sub...)
			}
		}
		return out, nil
	}
	return walk(".", 0)
}
