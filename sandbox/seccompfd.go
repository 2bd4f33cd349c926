package sandbox

import (
	"fmt"
	"os"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/sandbox/seccomp"
)

// compileSeccomp compiles the jobs' seccomp profile once (see seccomp.Compile) into a
// sealed memfd, opened read-only, that every container's init gets as
// jobinit.SeccompFD and loads before the job's command runs. libcontainer would
// otherwise build the same program with libseccomp in every container's init: ~4 ms of
// each cold start. It returns the file and the program's length in instructions.
func compileSeccomp(p *configs.Seccomp) (*os.File, int, error) {
	prog, err := seccomp.Compile(p)
	if err != nil {
		return nil, 0, err
	}
	fd, err := unix.MemfdCreate("sandboxd-seccomp", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, 0, fmt.Errorf("memfd for the seccomp program: %w", err)
	}
	rw := os.NewFile(uintptr(fd), "sandboxd-seccomp")
	defer rw.Close()
	if _, err := rw.Write(prog.Bytes()); err != nil {
		return nil, 0, fmt.Errorf("write the seccomp program: %w", err)
	}
	const seals = unix.F_SEAL_WRITE | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(rw.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		return nil, 0, fmt.Errorf("seal the seccomp program: %w", err)
	}
	// What the containers get can only be read (with pread: they share one offset).
	ro, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", rw.Fd()), os.O_RDONLY, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("reopen the seccomp program: %w", err)
	}
	return ro, len(prog), nil
}
