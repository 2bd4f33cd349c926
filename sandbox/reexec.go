package sandbox

import (
	"fmt"
	"os"
	"strconv"

	"github.com/opencontainers/runc/libcontainer/exeseal"
	"golang.org/x/sys/unix"
)

// ReexecSealed makes the running daemon a sealed in-memory copy of itself, once, at
// start. libcontainer starts every container's "runc init" from the daemon's binary and,
// so that no container can ever overwrite that binary (CVE-2019-5736), otherwise copies
// the whole binary into a fresh memfd for every container: about half the daemon's CPU
// per cold start. A daemon already running from a sealed copy skips that. Call it first
// thing in main; it returns only if the daemon already runs sealed, or on error.
func ReexecSealed() error {
	if exeseal.IsSelfExeCloned() {
		// Running sealed: keep the copy's fd out of every process the daemon starts.
		if fd, err := strconv.Atoi(os.Getenv(sealedFDEnv)); err == nil {
			_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		}
		return os.Unsetenv(sealedFDEnv)
	}
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return err
	}
	defer self.Close()
	fi, err := self.Stat()
	if err != nil {
		return err
	}
	sealed, err := exeseal.CloneBinary(self, fi.Size(), "/proc/self/exe", os.TempDir())
	if err != nil {
		return fmt.Errorf("seal own binary: %w", err)
	}
	if !exeseal.IsCloned(sealed) { // a sealed memfd, or re-exec would loop
		return fmt.Errorf("seal own binary: no sealed memfd on this kernel")
	}
	fd := strconv.Itoa(int(sealed.Fd()))
	// exec needs the fd open (not CLOEXEC); the new image closes it on exec of others.
	if _, err := unix.FcntlInt(sealed.Fd(), unix.F_SETFD, 0); err != nil {
		return err
	}
	return unix.Exec("/proc/self/fd/"+fd, os.Args, append(os.Environ(), sealedFDEnv+"="+fd))
}

const sealedFDEnv = "_SANDBOXD_SEALED_FD"
