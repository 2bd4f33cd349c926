package sandbox

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ErrNotStatic is returned when the running binary cannot serve as the jobs' init.
var ErrNotStatic = errors.New("the sandboxd binary must be statically linked (build it with make)")

// installInit copies the running executable to dir/sbx-init, read-only, for jobs to
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
	if _, err := self.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	dst := filepath.Join(dir, "sbx-init")
	tmp, err := os.CreateTemp(dir, ".sbx-init-*")
	if err != nil {
		return "", fmt.Errorf("install job init: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, self); err != nil {
		tmp.Close()
		return "", fmt.Errorf("install job init: %w", err)
	}
	if err := tmp.Chmod(0o555); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", fmt.Errorf("install job init: %w", err)
	}
	return dst, nil
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
