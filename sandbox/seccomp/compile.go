package seccomp

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
	"unsafe"

	"github.com/opencontainers/runc/libcontainer/configs"
	libcontainerseccomp "github.com/opencontainers/runc/libcontainer/seccomp"
	"golang.org/x/sys/unix"
)

// Program is a compiled seccomp filter: classic BPF, as prctl(PR_SET_SECCOMP) takes it.
type Program []unix.SockFilter

// Bytes is the program as the kernel lays out struct sock_filter: 8 bytes per
// instruction, native byte order.
func (p Program) Bytes() []byte {
	out := make([]byte, 0, len(p)*8)
	for _, in := range p {
		out = binary.NativeEndian.AppendUint16(out, in.Code)
		out = append(out, in.Jt, in.Jf)
		out = binary.NativeEndian.AppendUint32(out, in.K)
	}
	return out
}

// ErrCompile wraps why a profile could not be compiled ahead of time; the caller can
// still have libcontainer compile it in each container.
var ErrCompile = errors.New("seccomp: cannot compile the profile ahead of time")

// Compile turns p into the exact program libcontainer would load for it in every
// container, once: libcontainer builds the filter with libseccomp and then patches it
// (unknown, newer system calls get ENOSYS), and neither step is exported on its own. So
// a child process (this binary again) loads p with libcontainer's InitSeccomp, as
// runc's init does, and stops; this process reads the loaded program back with
// ptrace(PTRACE_SECCOMP_GET_FILTER) and kills the child.
//
// Compiling once saves every container start ~4 ms (libseccomp's work in runc's init).
// It needs ptrace of a child and CONFIG_CHECKPOINT_RESTORE (every mainstream kernel);
// where either is missing, it fails with ErrCompile.
func Compile(p *configs.Seccomp) (Program, error) {
	if p == nil {
		return nil, fmt.Errorf("%w: no profile", ErrCompile)
	}
	if len(p.Flags) > 0 || p.ListenerPath != "" {
		return nil, fmt.Errorf("%w: profiles with flags or a listener need libcontainer", ErrCompile)
	}
	for _, s := range p.Syscalls {
		if s.Action == configs.Notify {
			return nil, fmt.Errorf("%w: SCMP_ACT_NOTIFY needs libcontainer", ErrCompile)
		}
	}
	js, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	// ptrace requests must come from the thread that attached.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	cmd := exec.Command("/proc/self/exe", exportArg)
	cmd.Env = []string{exportEnv + "=1"}
	cmd.Stdin = bytes.NewReader(js)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCompile, err)
	}
	pid := cmd.Process.Pid
	// Never leave the child behind, whatever happens; never wait forever on it.
	watchdog := time.AfterFunc(10*time.Second, func() { _ = cmd.Process.Kill() })
	defer func() {
		watchdog.Stop()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	fail := func(what string, err error) error {
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			msg = " (" + msg + ")"
		}
		return fmt.Errorf("%w: %s: %w%s", ErrCompile, what, err, msg)
	}

	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WUNTRACED, nil); err != nil {
		return nil, fail("wait for the loader", err)
	}
	if !ws.Stopped() {
		return nil, fail("loader", fmt.Errorf("ended (status %#x) instead of stopping with the filter loaded", uint32(ws)))
	}
	// Attach to the stopped loader (its main thread, which loaded the filter) and put it
	// in a ptrace stop, where its filters can be read.
	if err := unix.PtraceSeize(pid); err != nil {
		return nil, fail("ptrace seize", err)
	}
	if err := unix.PtraceInterrupt(pid); err != nil {
		return nil, fail("ptrace interrupt", err)
	}
	_ = unix.Kill(pid, unix.SIGCONT)
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
		return nil, fail("wait for the ptrace stop", err)
	}
	if !ws.Stopped() {
		return nil, fail("loader", fmt.Errorf("not in a ptrace stop (status %#x)", uint32(ws)))
	}
	// Index 0 is the newest filter: the one just loaded (any older ones were inherited
	// from this daemon and apply to every container anyway).
	n, err := getFilter(pid, nil)
	if err != nil {
		return nil, fail("read the filter's length", err)
	}
	if n == 0 || n > maxInstructions {
		return nil, fail("read the filter", fmt.Errorf("%d instructions", n))
	}
	prog := make(Program, n)
	if got, err := getFilter(pid, prog); err != nil || got != n {
		return nil, fail("read the filter", errors.Join(err, fmt.Errorf("%d of %d instructions", got, n)))
	}
	return prog, nil
}

// maxInstructions is the kernel's BPF_MAXINSNS.
const maxInstructions = 4096

const ptraceSeccompGetFilter = 0x420c // PTRACE_SECCOMP_GET_FILTER

// getFilter reads filter 0 of the stopped tracee pid into buf, or with a nil buf
// returns its length.
func getFilter(pid int, buf Program) (int, error) {
	var p unsafe.Pointer
	if len(buf) > 0 {
		p = unsafe.Pointer(&buf[0])
	}
	n, _, errno := unix.Syscall6(unix.SYS_PTRACE, ptraceSeccompGetFilter, uintptr(pid), 0, uintptr(p), 0, 0)
	runtime.KeepAlive(buf)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

const (
	exportArg = "sandboxd-seccomp-compile"
	exportEnv = "_SANDBOXD_SECCOMP_COMPILE"
)

// The loader side of Compile: this binary re-executed, it loads the profile read from
// stdin and stops. Package initialisation runs on the main thread, the one that the
// filter is loaded on and that the parent attaches to.
func init() {
	if len(os.Args) != 2 || os.Args[1] != exportArg || os.Getenv(exportEnv) != "1" {
		return
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "seccomp loader:", err)
		os.Exit(125)
	}
	var p configs.Seccomp
	if err := json.NewDecoder(os.Stdin).Decode(&p); err != nil {
		fail(err)
	}
	// As runc's init: no_new_privs first, then the filter, on this thread only.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fail(err)
	}
	if _, err := libcontainerseccomp.InitSeccomp(&p); err != nil {
		fail(err)
	}
	_ = unix.Kill(unix.Getpid(), unix.SIGSTOP)
	fail(errors.New("resumed without being read"))
}
