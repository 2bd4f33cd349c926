package sandbox

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNotStatic is returned when the running binary cannot serve as the jobs' init.
var ErrNotStatic = errors.New("the sandboxd binary must be statically linked (build it with make)")

// A job's mountinfo names, for each mount, its path inside its filesystem. A bind mount
// of a host directory would show the host path (the state dir, the run dir), so what
// jobs mount from the host sits on filesystems of its own, mounted once per engine:
//
//	<run-dir>/init  a read-only tmpfs holding a copy of this binary (the jobs' pid 1)
//	<run-dir>/root  a read-only overlay of the unpacked default image (Options.Rootfs),
//	                its layers given as /proc/self/fd paths so its options name no host
//	                path either
//	<run-dir>/roots/<image>  the same, of each other image a runtime runs on
//	<run-dir>/dev   a read-only tmpfs with the allowed device nodes (hostdev.go)
const (
	initMountDir = "init"
	rootMountDir = "root"
	rootsDir     = "roots"
	emptyDir     = "empty" // overlay needs two lower layers without an upper one
)

// hostMounts makes the engine's own mounts and returns the init binary's path, each
// image's root by name ("" for the default image) and the jobs' /dev. Stale ones of a
// killed daemon are replaced.
func hostMounts(runDir string, images map[string]string) (initBin string, roots map[string]string, dev string, err error) {
	initDir := filepath.Join(runDir, initMountDir)
	dev = filepath.Join(runDir, devMountDir)
	_ = unmountHostMounts(runDir)
	roots = map[string]string{}
	if initBin, err = installInit(initDir); err == nil {
		for name, tree := range images {
			root := filepath.Join(runDir, rootMountDir)
			if name != "" {
				root = filepath.Join(runDir, rootsDir, name)
			}
			if err = mountRoot(root, tree, filepath.Join(runDir, emptyDir)); err != nil {
				break
			}
			roots[name] = root
		}
		if err == nil {
			err = mountDev(dev)
		}
	}
	if err != nil {
		_ = unmountHostMounts(runDir)
		return "", nil, "", err
	}
	return initBin, roots, dev, nil
}

// unmountHostMounts removes the engine's own mounts (at Close, or stale at start).
func unmountHostMounts(runDir string) error {
	var errs []error
	ents, _ := os.ReadDir(filepath.Join(runDir, rootsDir))
	for _, ent := range ents {
		errs = append(errs, unmount(filepath.Join(runDir, rootsDir, ent.Name())))
	}
	for _, d := range []string{devMountDir, rootMountDir, initMountDir} {
		errs = append(errs, unmount(filepath.Join(runDir, d)))
	}
	return errors.Join(errs...)
}

// missingCommand names the first command of rt (its compile, run and bootstrap argv's
// first element) that tree lacks, looked up as the job's PATH would; "" if none.
func missingCommand(tree string, rt Runtime, env []string) string {
	var dirs []string
	for _, kv := range env {
		if p, ok := strings.CutPrefix(kv, "PATH="); ok {
			dirs = strings.Split(p, ":")
		}
	}
	var cmds []string
	for _, argv := range [][]string{rt.Compile, rt.Run, bootstraps[rt.Bootstrap]} {
		if len(argv) > 0 && !strings.HasPrefix(argv[0], "{") && !strings.HasPrefix(argv[0], WorkDir+"/") {
			cmds = append(cmds, argv[0])
		}
	}
	for _, c := range cmds {
		found := false
		if strings.HasPrefix(c, "/") {
			_, err := os.Lstat(filepath.Join(tree, c))
			found = err == nil
		}
		for _, d := range dirs {
			if _, err := os.Lstat(filepath.Join(tree, d, c)); err == nil && !strings.Contains(c, "/") {
				found = true
				break
			}
		}
		if !found {
			return c
		}
	}
	return ""
}

// installInit copies the running executable into a read-only tmpfs at dir, for jobs to
// bind-mount as their pid 1. A copy, so no job ever has a path to the daemon's own file.
// It must be static: the job's root filesystem has none of the host's libraries.
func installInit(dir string) (string, error) {
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return "", fmt.Errorf("open own executable: %w", err)
	}
	defer self.Close()
	if err := checkStatic(self); err != nil {
		return "", err
	}
	fi, err := self.Stat()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", err
	}
	opts := "mode=0755,size=" + strconv.FormatInt(fi.Size()+1<<20, 10)
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return "", fmt.Errorf("mount init tmpfs: %w", err)
	}
	dst := filepath.Join(dir, "sbx-init")
	err = copyFile(dst, self)
	if err == nil {
		err = unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, opts)
	}
	if err != nil {
		_ = unmount(dir)
		return "", fmt.Errorf("install job init: %w", err)
	}
	return dst, nil
}

func copyFile(dst string, src io.Reader) error {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o555)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// mountRoot mounts a read-only overlay of tree at dir.
func mountRoot(dir, tree, empty string) error {
	for _, d := range []string{dir, empty} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, d := range []string{tree, empty} {
		fd, err := unix.Open(d, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", d, err)
		}
		fds = append(fds, fd)
	}
	lower := fmt.Sprintf("lowerdir=/proc/self/fd/%d:/proc/self/fd/%d", fds[0], fds[1])
	if err := unix.Mount("overlay", dir, "overlay", unix.MS_RDONLY|unix.MS_NODEV, lower); err != nil {
		return fmt.Errorf("mount the jobs' root (overlay): %w", err)
	}
	return nil
}

// searchable makes dir mode 0711 and checks that every directory above it can be
// searched by others: jobs' root is an unprivileged host uid that must reach dir/root.
func searchable(dir string) error {
	if err := os.Chmod(dir, 0o711); err != nil {
		return err
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("run dir %s: %s has mode %o; jobs need every directory above the run dir searchable (o+x)", dir, d, fi.Mode().Perm())
		}
		if d == "/" {
			return nil
		}
	}
}

// checkStatic refuses an executable that needs a dynamic loader.
func checkStatic(r io.ReaderAt) error {
	f, err := elf.NewFile(r)
	if err != nil {
		return fmt.Errorf("read own executable: %w", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return ErrNotStatic
		}
	}
	return nil
}
