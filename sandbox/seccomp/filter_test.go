//go:build linux && cgo && seccomp

package seccomp

// These tests load the profile for real, the way runc does: the test binary
// re-executes itself, loads the filter with libcontainer's InitSeccomp and
// then execs the program under test (itself again, to make the calls one by
// one, or python3), which inherits the filter.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/opencontainers/runc/libcontainer/configs"
	libcontainerseccomp "github.com/opencontainers/runc/libcontainer/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

const (
	// envStage selects what the re-executed test binary does: "load" the
	// filter and exec envExec, run the "probe"s, or make an "x32" call.
	envStage = "SANDBOXD_SECCOMP_TEST_STAGE"
	envExec  = "SANDBOXD_SECCOMP_TEST_EXEC"
	// envErrno replaces EPERM as the refusal errno, so a test can tell the
	// filter's refusal from the kernel's.
	envErrno = "SANDBOXD_SECCOMP_TEST_ERRNO"
	// envCompiled makes the loader load the program Compile made, with a bare
	// prctl, as the job init does, instead of calling InitSeccomp.
	envCompiled = "SANDBOXD_SECCOMP_TEST_COMPILED"

	// markErrno is what no probe returns on its own.
	markErrno = unix.EHWPOISON

	x32SyscallBit = 0x40000000
	threadKilled  = "thread killed"
)

func TestMain(m *testing.M) {
	switch os.Getenv(envStage) {
	case "load":
		loadAndExec()
	case "probe":
		results := map[string]string{}
		for _, p := range probes {
			results[p.name] = p.call()
		}
		if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	case "x32":
		fmt.Print(x32Getpid())
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// loadAndExec does what runc's init does last: load the filter, then exec.
func loadAndExec() {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "seccomp test loader:", err)
		os.Exit(125)
	}
	var argv []string
	if err := json.Unmarshal([]byte(os.Getenv(envExec)), &argv); err != nil || len(argv) == 0 {
		fail(fmt.Errorf("bad %s=%q", envExec, os.Getenv(envExec)))
	}
	p, err := Profile()
	if err != nil {
		fail(err)
	}
	if v := os.Getenv(envErrno); v != "" {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			fail(err)
		}
		markRefusals(p, uint(n))
	}
	var prog Program
	if os.Getenv(envCompiled) != "" {
		if prog, err = Compile(p); err != nil {
			fail(err)
		}
	}
	// libcontainer loads the filter with prctl(PR_SET_SECCOMP), without
	// TSYNC: only this thread is filtered, and exec makes it the whole process.
	runtime.LockOSThread()
	// runc sets no_new_privs itself; without it, loading needs CAP_SYS_ADMIN.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fail(err)
	}
	if prog != nil {
		fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
		if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0); err != nil {
			fail(err)
		}
	} else if _, err := libcontainerseccomp.InitSeccomp(p); err != nil {
		fail(err)
	}
	env := []string{envStage + "=probe"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SANDBOXD_SECCOMP_TEST_") {
			env = append(env, kv)
		}
	}
	fail(unix.Exec(argv[0], argv, env))
}

func markRefusals(p *configs.Seccomp, errno uint) {
	p.DefaultErrnoRet = &errno
	for _, s := range p.Syscalls {
		if s.Action == configs.Errno && *s.ErrnoRet == uint(unix.EPERM) {
			s.ErrnoRet = &errno
		}
	}
}

// filtered returns a command that runs argv under the profile, with
// refusals returning errno instead of EPERM if errno is not 0.
func filtered(ctx context.Context, t *testing.T, errno unix.Errno, argv ...string) *exec.Cmd {
	return filteredBy(ctx, t, false, errno, argv...)
}

// filteredBy is filtered with the program from Compile if compiled.
func filteredBy(ctx context.Context, t *testing.T, compiled bool, errno unix.Errno, argv ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if argv[0] == "" {
		argv[0] = self
	}
	encoded, err := json.Marshal(argv)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, self, "-test.run=^$")
	// Bound the wait for output: neither a descendant holding the pipes nor a
	// trace stop that Wait takes for an exit (a ptrace let through) may hang
	// the test.
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = append(os.Environ(), envStage+"=load", envExec+"="+string(encoded))
	if errno != 0 {
		cmd.Env = append(cmd.Env, fmt.Sprintf("%s=%d", envErrno, errno))
	}
	if compiled {
		cmd.Env = append(cmd.Env, envCompiled+"=1")
	}
	return cmd
}

func requireSeccomp(t *testing.T) {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skipf("the profile is for x86_64 only, this is %s", runtime.GOARCH)
	}
	if _, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0); err != nil {
		t.Skipf("kernel without seccomp: %v", err)
	}
}

func TestNamesKnownToLibseccomp(t *testing.T) {
	p := mustProfile(t)
	largest := 0
	for _, s := range p.Syscalls {
		// libcontainer skips names it cannot resolve, silently; negative
		// numbers are other architectures' calls.
		nr, err := libseccomp.GetSyscallFromNameByArch(s.Name, libseccomp.ArchAMD64)
		if err != nil || nr < 0 {
			t.Errorf("%s: not an x86_64 system call for libseccomp %s: %d %v", s.Name, libseccompVersion(), nr, err)
		}
		largest = max(largest, int(nr))
	}
	// runc answers ENOSYS above the largest number in the profile.
	t.Logf("calls above %d get ENOSYS", largest)
}

func libseccompVersion() string {
	major, minor, micro := libseccomp.GetLibraryVersion()
	return fmt.Sprintf("%d.%d.%d", major, minor, micro)
}

// A probe makes one system call under the filter and reports "ok", the
// errno's name, or threadKilled.
type probe struct {
	name string
	want string
	call func() string
}

// The arguments are chosen so that a call the filter wrongly let through
// fails in the kernel (or does nothing) instead of changing the host: the
// tests may run as root.
var probes = []probe{
	// Allowed.
	{"getpid", "ok", sys(unix.SYS_GETPID)},
	{"socket AF_UNIX SOCK_STREAM|SOCK_CLOEXEC", "ok", sysFD(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)},
	{"socket AF_UNIX SOCK_DGRAM", "ok", sysFD(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_DGRAM, 0)},
	{"socket AF_INET SOCK_STREAM", "ok", sysFD(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_STREAM, 0)},
	{"socket AF_INET SOCK_DGRAM|SOCK_NONBLOCK", "ok", sysFD(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK, 0)},
	{"socket AF_INET6 SOCK_STREAM", "ok", sysFD(unix.SYS_SOCKET, unix.AF_INET6, unix.SOCK_STREAM, 0)},
	{"socket AF_NETLINK SOCK_RAW NETLINK_ROUTE", "ok", sysFD(unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)},
	{"socketpair AF_UNIX", "ok", socketpair(unix.AF_UNIX)},
	{"memfd_create", "ok", func() string {
		fd, err := unix.MemfdCreate("probe", unix.MFD_CLOEXEC)
		if err == nil {
			unix.Close(fd)
		}
		return errResult(err)
	}},
	{"personality query", "ok", sys(unix.SYS_PERSONALITY, 0xffffffff)},
	// CLONE_THREAD without CLONE_SIGHAND: the kernel's EINVAL shows the
	// filter let it through, without creating anything.
	{"clone without namespace flags", "EINVAL", sys(unix.SYS_CLONE, unix.CLONE_THREAD)},
	{"fork and exec /bin/true", "ok", func() string {
		if err := exec.Command("/bin/true").Run(); err != nil {
			return err.Error()
		}
		return "ok"
	}},

	// Refused with ENOSYS.
	{"clone3", "ENOSYS", sys(unix.SYS_CLONE3, 0, 0)},
	{"listmount (newer than the profile)", "ENOSYS", sys(458, 0, 0, 0, 0)},

	// The x32 ABI is another architecture to libseccomp: the thread dies.
	{"x32 getpid", threadKilled, func() string {
		self, err := os.Executable()
		if err != nil {
			return err.Error()
		}
		cmd := exec.Command(self, "-test.run=^$")
		cmd.Env = append(os.Environ(), envStage+"=x32")
		out, err := cmd.Output()
		if err != nil {
			return err.Error()
		}
		return string(out)
	}},

	// Refused with EPERM.
	{"ptrace", "EPERM", sys(unix.SYS_PTRACE, unix.PTRACE_ATTACH, 0x3fffffff)},
	{"process_vm_readv", "EPERM", sys(unix.SYS_PROCESS_VM_READV, uintptr(os.Getpid()), 0, 0, 0, 0, 0)},
	{"process_vm_writev", "EPERM", sys(unix.SYS_PROCESS_VM_WRITEV, uintptr(os.Getpid()), 0, 0, 0, 0, 0)},
	{"unshare CLONE_NEWUSER", "EPERM", sys(unix.SYS_UNSHARE, unix.CLONE_NEWUSER)},
	{"unshare CLONE_NEWNS", "EPERM", sys(unix.SYS_UNSHARE, unix.CLONE_NEWNS)},
	{"setns", "EPERM", sys(unix.SYS_SETNS, ^uintptr(0), 0)},
	{"clone CLONE_NEWNS", "EPERM", sys(unix.SYS_CLONE, unix.CLONE_THREAD|unix.CLONE_NEWNS)},
	{"clone CLONE_NEWUTS", "EPERM", sys(unix.SYS_CLONE, unix.CLONE_THREAD|unix.CLONE_NEWUTS)},
	{"clone CLONE_NEWIPC", "EPERM", sys(unix.SYS_CLONE, unix.CLONE_THREAD|unix.CLONE_NEWIPC)},
	{"clone CLONE_NEWUSER", "EPERM", sys(unix.SYS_CLONE, unix.CLONE_THREAD|unix.CLONE_NEWUSER)},
	{"clone CLONE_NEWPID", "EPERM", sys(unix.SYS_CLONE, unix.CLONE_THREAD|unix.CLONE_NEWPID)},
	{"clone CLONE_NEWNET", "EPERM", sys(unix.SYS_CLONE, unix.CLONE_THREAD|unix.CLONE_NEWNET)},
	{"clone CLONE_NEWCGROUP", "EPERM", sys(unix.SYS_CLONE, unix.CLONE_THREAD|unix.CLONE_NEWCGROUP)},
	{"mount", "EPERM", sys(unix.SYS_MOUNT, 0, 0, 0, 0, 0)},
	{"umount2", "EPERM", sys(unix.SYS_UMOUNT2, 0, 0)},
	{"pivot_root", "EPERM", sys(unix.SYS_PIVOT_ROOT, 0, 0)},
	{"move_mount", "EPERM", sys(unix.SYS_MOVE_MOUNT, ^uintptr(0), 0, ^uintptr(0), 0, 0)},
	{"open_tree", "EPERM", sysFD(unix.SYS_OPEN_TREE, ^uintptr(0), 0, 0)},
	{"fsopen", "EPERM", sysFD(unix.SYS_FSOPEN, 0, 0)},
	{"fsconfig", "EPERM", sys(unix.SYS_FSCONFIG, ^uintptr(0), 0, 0, 0, 0)},
	{"fsmount", "EPERM", sysFD(unix.SYS_FSMOUNT, ^uintptr(0), 0, 0)},
	{"fspick", "EPERM", sysFD(unix.SYS_FSPICK, ^uintptr(0), 0, 0)},
	{"mount_setattr", "EPERM", sys(unix.SYS_MOUNT_SETATTR, ^uintptr(0), 0, 0, 0, 0)},
	{"keyctl", "EPERM", sys(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, uintptr(unix.KEY_SPEC_SESSION_KEYRING&0xffffffff), 0)},
	{"add_key", "EPERM", sys(unix.SYS_ADD_KEY, 0, 0, 0, 0, 0)},
	{"request_key", "EPERM", sys(unix.SYS_REQUEST_KEY, 0, 0, 0, 0)},
	{"bpf", "EPERM", sysFD(unix.SYS_BPF, unix.BPF_PROG_LOAD, 0, 0)},
	{"perf_event_open", "EPERM", sysFD(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0)},
	{"userfaultfd", "EPERM", sysFD(unix.SYS_USERFAULTFD, ^uintptr(0))},
	{"io_uring_setup", "EPERM", sysFD(unix.SYS_IO_URING_SETUP, 0, 0)},
	{"io_uring_enter", "EPERM", sys(unix.SYS_IO_URING_ENTER, ^uintptr(0), 0, 0, 0, 0, 0)},
	{"io_uring_register", "EPERM", sys(unix.SYS_IO_URING_REGISTER, ^uintptr(0), 0, 0, 0)},
	{"kexec_load", "EPERM", sys(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0x8000)},
	{"kexec_file_load", "EPERM", sys(unix.SYS_KEXEC_FILE_LOAD, ^uintptr(0), ^uintptr(0), 0, 0, 0xffff)},
	{"init_module", "EPERM", sys(unix.SYS_INIT_MODULE, 0, 0, 0)},
	{"finit_module", "EPERM", sys(unix.SYS_FINIT_MODULE, ^uintptr(0), 0, 0)},
	{"delete_module", "EPERM", sys(unix.SYS_DELETE_MODULE, 0, 0)},
	{"reboot", "EPERM", sys(unix.SYS_REBOOT, 0, 0, 0, 0)},
	{"swapon", "EPERM", sys(unix.SYS_SWAPON, 0, 0)},
	{"swapoff", "EPERM", sys(unix.SYS_SWAPOFF, 0)},
	{"open_by_handle_at", "EPERM", sysFD(unix.SYS_OPEN_BY_HANDLE_AT, ^uintptr(0), 0, 0)},
	{"name_to_handle_at", "EPERM", sys(unix.SYS_NAME_TO_HANDLE_AT, ^uintptr(0), 0, 0, 0, 0)},
	{"acct", "EPERM", func() string { return errResult(unix.Acct("")) }},
	{"settimeofday", "EPERM", sys(unix.SYS_SETTIMEOFDAY, 0, 0)},
	{"clock_settime", "EPERM", sys(unix.SYS_CLOCK_SETTIME, ^uintptr(0), 0)},
	{"adjtimex", "EPERM", sys(unix.SYS_ADJTIMEX, 0)},
	{"clock_adjtime", "EPERM", sys(unix.SYS_CLOCK_ADJTIME, ^uintptr(0), 0)},
	{"syslog", "EPERM", sys(unix.SYS_SYSLOG, unix.SYSLOG_ACTION_SIZE_BUFFER, 0, 0)},
	{"quotactl", "EPERM", sys(unix.SYS_QUOTACTL, 0, 0, 0, 0)},
	{"lookup_dcookie", "EPERM", sys(unix.SYS_LOOKUP_DCOOKIE, 0, 0, 0)},
	{"modify_ldt", "EPERM", sys(unix.SYS_MODIFY_LDT, 0, 0, 0)},
	{"personality ADDR_NO_RANDOMIZE", "EPERM", sys(unix.SYS_PERSONALITY, 0x0040000)},
	{"socket AF_PACKET", "EPERM", sysFD(unix.SYS_SOCKET, unix.AF_PACKET, unix.SOCK_RAW, 0)},
	{"socket AF_PACKET SOCK_DGRAM", "EPERM", sysFD(unix.SYS_SOCKET, unix.AF_PACKET, unix.SOCK_DGRAM, 0)},
	{"socket AF_INET SOCK_RAW|SOCK_CLOEXEC", "EPERM", sysFD(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)},
	{"socket AF_INET6 SOCK_RAW|SOCK_NONBLOCK", "EPERM", sysFD(unix.SYS_SOCKET, unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_NONBLOCK, unix.IPPROTO_ICMPV6)},
	{"socket AF_UNIX SOCK_RAW", "EPERM", sysFD(unix.SYS_SOCKET, unix.AF_UNIX, unix.SOCK_RAW, 0)},
	{"socket AF_NETLINK NETLINK_AUDIT", "EPERM", sysFD(unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT)},
	{"socket AF_ALG", "EPERM", sysFD(unix.SYS_SOCKET, unix.AF_ALG, unix.SOCK_SEQPACKET, 0)},
	{"socket AF_VSOCK", "EPERM", sysFD(unix.SYS_SOCKET, unix.AF_VSOCK, unix.SOCK_STREAM, 0)},
	{"socketpair AF_INET", "EPERM", socketpair(unix.AF_INET)},
}

func sys(nr uintptr, args ...uintptr) func() string {
	return func() string {
		_, errno := rawCall(nr, args)
		return result(errno)
	}
}

// sysFD is sys for calls that return a descriptor on success.
func sysFD(nr uintptr, args ...uintptr) func() string {
	return func() string {
		fd, errno := rawCall(nr, args)
		if errno == 0 {
			unix.Close(int(fd))
		}
		return result(errno)
	}
}

func socketpair(family int) func() string {
	return func() string {
		fds, err := unix.Socketpair(family, unix.SOCK_STREAM, 0)
		if err == nil {
			unix.Close(fds[0])
			unix.Close(fds[1])
		}
		return errResult(err)
	}
}

func rawCall(nr uintptr, args []uintptr) (uintptr, unix.Errno) {
	var a [6]uintptr
	copy(a[:], args)
	r, _, errno := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
	return r, errno
}

func errResult(err error) string {
	var errno unix.Errno
	if err != nil && !errors.As(err, &errno) {
		return err.Error()
	}
	return result(errno)
}

func result(errno unix.Errno) string {
	if errno == 0 {
		return "ok"
	}
	if name := unix.ErrnoName(errno); name != "" {
		return name
	}
	return strconv.Itoa(int(errno))
}

// x32Getpid makes getpid through the x32 ABI on a thread of its own and
// reports whether the call returned or the thread died. The process is one
// of its own: a Go program that lost a thread cannot be trusted afterwards.
func x32Getpid() string {
	tids := make(chan int)
	done := make(chan unix.Errno)
	go func() {
		runtime.LockOSThread()
		tids <- unix.Gettid()
		_, _, errno := unix.RawSyscall(x32SyscallBit|unix.SYS_GETPID, 0, 0, 0)
		done <- errno
	}()
	stat := fmt.Sprintf("/proc/self/task/%d/stat", <-tids)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		select {
		case errno := <-done:
			return result(errno)
		case <-time.After(5 * time.Millisecond):
		}
		// Gone, or a zombie if it was the thread group leader.
		b, err := os.ReadFile(stat)
		if errors.Is(err, fs.ErrNotExist) || err == nil && bytes.Contains(b[bytes.LastIndexByte(b, ')'):], []byte(") Z")) {
			return threadKilled
		}
	}
	return "hung"
}

func runProbes(t *testing.T, compiled bool, errno unix.Errno) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := filteredBy(ctx, t, compiled, errno, "", "-test.run=^$")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probes under the filter: %v\n%s", err, stderr.Bytes())
	}
	results := map[string]string{}
	if err := json.Unmarshal(out, &results); err != nil {
		t.Fatalf("probe output %q: %v", out, err)
	}
	return results
}

// TestFilterCallByCall loads the profile in a fresh process and makes each
// call. It does so twice: with the profile as shipped (refusals are EPERM),
// and with EPERM replaced by an errno the kernel never returns for these
// calls, which shows that the refusal comes from the filter and not from
// missing privileges.
//
// Both loaded by libcontainer (as runc's init would) and as the program that
// Compile read back, loaded with a bare prctl (as the job init does): the
// calls must give the same results either way.
func TestFilterCallByCall(t *testing.T) {
	requireSeccomp(t)
	for _, compiled := range []bool{false, true} {
		t.Run(map[bool]string{false: "libcontainer", true: "compiled"}[compiled], func(t *testing.T) {
			filterCallByCall(t, compiled)
		})
	}
}

func filterCallByCall(t *testing.T, compiled bool) {
	shipped := runProbes(t, compiled, 0)
	marked := runProbes(t, compiled, markErrno)
	for _, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			if got := shipped[p.name]; got != p.want {
				t.Errorf("under the profile: %s, want %s", got, p.want)
			}
			want := p.want
			if want == "EPERM" {
				want = result(markErrno)
			}
			if got := marked[p.name]; got != want {
				t.Errorf("with refusals marked as %s: %s, want %s", result(markErrno), got, want)
			}
		})
	}
}

func TestPythonUnderFilter(t *testing.T) {
	requireSeccomp(t)
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		if python, err = exec.LookPath("python3"); err != nil {
			t.Skip("no python3 on this host")
		}
	}
	for _, script := range []string{"workload.py", "refusals.py"} {
		t.Run(script, func(t *testing.T) {
			path, err := filepath.Abs(filepath.Join("testdata", script))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			start := time.Now()
			cmd := filtered(ctx, t, 0, python, path)
			cmd.Dir = t.TempDir()
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("hung under the filter:\n%s", out)
			}
			if err != nil || !bytes.Equal(bytes.TrimSpace(out), []byte("ok")) {
				t.Fatalf("%s under the filter: %v\n%s", script, err, out)
			}
			t.Logf("%s took %v", script, time.Since(start).Round(time.Millisecond))
		})
	}
}

// Compile reads back exactly what libcontainer loads: the same program every
// time, and a real one (hundreds of instructions for the shipped profile,
// ending in a return).
func TestCompile(t *testing.T) {
	requireSeccomp(t)
	p := mustProfile(t)
	a, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compile(mustProfile(t))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a, b) {
		t.Errorf("two compilations differ: %d and %d instructions", len(a), len(b))
	}
	const bpfRet = 0x06
	if len(a) < len(p.Syscalls) || a[len(a)-1].Code&0x07 != bpfRet {
		t.Errorf("%d instructions for %d rules, last %+v", len(a), len(p.Syscalls), a[len(a)-1])
	}
	if got := len(a.Bytes()); got != 8*len(a) {
		t.Errorf("Bytes: %d bytes for %d instructions", got, len(a))
	}
	for _, bad := range []*configs.Seccomp{
		nil,
		{DefaultAction: configs.Allow, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_LOG"}},
		{DefaultAction: configs.Allow, Syscalls: []*configs.Syscall{{Name: "getpid", Action: configs.Notify}}},
		{DefaultAction: configs.Allow, Syscalls: []*configs.Syscall{{Name: "no_such_call_at_all", Action: configs.Errno}}, Architectures: []string{"no-such-arch"}},
	} {
		if _, err := Compile(bad); !errors.Is(err, ErrCompile) {
			t.Errorf("Compile(%+v): %v, want ErrCompile", bad, err)
		}
	}
}
