package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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
			restoreName() // just re-exec'd from /proc/self/fd/N
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

// restoreName gives the process back the name it had before the re-exec. The kernel
// names a process (its comm, what ps and top show) after the last part of the path it
// was exec'd from, here /proc/self/fd/N, so the daemon showed as "8". argv is kept as
// given, so only comm needs fixing: PR_SET_NAME names one thread, and the Go runtime has
// started several by now; each is renamed through /proc/self/task/<tid>/comm, and since
// a new thread takes its creator's name, a pass that finds every thread named ends it.
func restoreName() {
	name := filepath.Base(os.Args[0])
	if len(name) > 15 { // TASK_COMM_LEN less the NUL
		name = name[:15]
	}
	for range 10 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return
		}
		renamed := false
		for _, t := range tasks {
			comm := filepath.Join("/proc/self/task", t.Name(), "comm")
			if b, err := os.ReadFile(comm); err == nil && strings.TrimSuffix(string(b), "\n") != name {
				_ = os.WriteFile(comm, []byte(name), 0)
				renamed = true
			}
		}
		if !renamed {
			return
		}
	}
}
