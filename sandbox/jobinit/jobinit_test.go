//go:build linux && cgo && seccomp

package jobinit_test

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/sandbox/jobinit"
	"github.com/sandboxd/sandboxd/sandbox/seccomp"
)

// runInit starts this test binary as the job init (the constructor takes over when
// argv[0] is InitPath) with args, the program file on SeccompFD, and returns its stdout
// and stderr, its report on StatusFD and its exit code.
func runInit(t *testing.T, prog *os.File, args ...string) (out, report string, code int) {
	t.Helper()
	out, report, code, _ = runInitWith(t, initRun{prog: prog}, args...)
	return out, report, code
}

// initRun is what an init gets besides its arguments: the read end of its control pipe
// (nil: none) and its seccomp program; newPID runs it as pid 1 of a new pid namespace,
// as in a job, where its exit ends every process it started.
type initRun struct {
	control, prog *os.File
	newPID        bool
}

// runInitWith is runInit with a control pipe; it also returns how long the init ran
// until its command's output was closed by every process holding it.
func runInitWith(t *testing.T, r initRun, args ...string) (out, report string, code int, took time.Duration) {
	t.Helper()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer statusR.Close()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := &exec.Cmd{Path: self, Args: append([]string{jobinit.InitPath}, args...)}
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stdout
	cmd.ExtraFiles = []*os.File{statusW, r.control, r.prog} // fds 3, 4 and 5
	if r.newPID {
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	}
	start := time.Now()
	err = cmd.Run() // returns once the output pipe is closed by every holder
	took = time.Since(start)
	statusW.Close()
	b, _ := io.ReadAll(statusR)
	if exit, ok := err.(*exec.ExitError); ok {
		return stdout.String(), string(b), exit.ExitCode(), took
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), string(b), 0, took
}

func file(t *testing.T, content []byte) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "prog")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// With -s the init loads the program on SeccompFD before it starts the command, which
// then runs under it; a program it cannot load means nothing runs at all.
func TestInitLoadsSeccompProgram(t *testing.T) {
	prog, err := seccomp.Compile(&configs.Seccomp{
		DefaultAction: configs.Allow,
		Syscalls: []*configs.Syscall{
			{Name: "mkdir", Action: configs.Errno, ErrnoRet: ptr(uint(unix.EPERM))},
			{Name: "mkdirat", Action: configs.Errno, ErrnoRet: ptr(uint(unix.EPERM))},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "made")
	out, report, code := runInit(t, file(t, prog.Bytes()), jobinit.SeccompArg, "/bin/mkdir", dir)
	if report != "exit 1\n" || code != 0 || !strings.Contains(out, "Operation not permitted") {
		t.Errorf("mkdir under a filter refusing it: report %q, init exit %d, output %q", report, code, out)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("mkdir ran unfiltered")
	}
	// Without -s the same command runs unfiltered: the refusal above was the program's.
	if _, report, _ := runInit(t, file(t, prog.Bytes()), "/bin/mkdir", dir); report != "exit 0\n" {
		t.Errorf("mkdir without a filter: report %q", report)
	}

	marker := filepath.Join(t.TempDir(), "ran")
	for name, c := range map[string]struct {
		prog []byte
		args []string
	}{
		"not whole instructions": {[]byte("garbage"), []string{jobinit.SeccompArg, "/bin/touch", marker}},
		"empty":                  {nil, []string{jobinit.SeccompArg, "/bin/touch", marker}},
		"too long":               {make([]byte, 8*4097), []string{jobinit.SeccompArg, "/bin/touch", marker}},
		"invalid BPF":            {make([]byte, 8*4), []string{jobinit.SeccompArg, "/bin/touch", marker}},
		"no command":             {prog.Bytes(), []string{jobinit.SeccompArg}},
		"unknown option":         {prog.Bytes(), []string{"-x", "/bin/touch", marker}},
		"bad open files":         {prog.Bytes(), []string{jobinit.NofileArg, "many", "/bin/touch", marker}},
		"open files soft > hard": {prog.Bytes(), []string{jobinit.NofileArg, "40:20", "/bin/touch", marker}},
		"open files missing":     {prog.Bytes(), []string{jobinit.NofileArg}},
	} {
		t.Run(name, func(t *testing.T) {
			_, report, code := runInit(t, file(t, c.prog), c.args...)
			if !strings.HasPrefix(report, "fail ") || code != 124 {
				t.Errorf("report %q, exit %d, want fail and 124", report, code)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Errorf("the command ran")
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// NofileArg sets the command's RLIMIT_NOFILE, one number or SOFT:HARD.
func TestInitSetsOpenFiles(t *testing.T) {
	for arg, want := range map[string]string{"17": "17 17", "20:40": "20 40"} {
		out, report, code := runInit(t, nil, jobinit.NofileArg, arg, "/bin/sh", "-c", "echo $(ulimit -Sn) $(ulimit -Hn)")
		if strings.TrimSpace(out) != want || report != "exit 0\n" || code != 0 {
			t.Errorf("-n %s: output %q, report %q, exit %d; want %q", arg, out, report, code, want)
		}
	}
}

// With ControlArg the init bounds its job alone: at the deadline the daemon gave it,
// and at once when the daemon is gone (its end of the control pipe closed), with or
// without a deadline. Its exit ends the pid namespace and so the command; the command
// holding the output pipe shows when that happens.
func TestInitBoundsTheJobAlone(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs the init as pid 1 of a new pid namespace")
	}
	sleeper := []string{"/bin/sh", "-c", "sleep 30; echo survived"}
	for _, c := range []struct {
		name     string
		send     string        // written to the control pipe first
		closeAt  time.Duration // when the daemon's end closes (0: never, until the end)
		min, max time.Duration
		code     int
	}{
		{"deadline", "300\n", 0, 300 * time.Millisecond, 5 * time.Second, jobinit.ExitDeadline},
		{"daemon gone before the clock starts", "", 200 * time.Millisecond, 200 * time.Millisecond, 5 * time.Second, jobinit.ExitOrphaned},
		{"daemon gone after the clock starts", "60000\n", 200 * time.Millisecond, 200 * time.Millisecond, 5 * time.Second, jobinit.ExitOrphaned},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctlR, ctlW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer ctlW.Close()
			if c.send != "" {
				if _, err := ctlW.WriteString(c.send); err != nil {
					t.Fatal(err)
				}
			}
			if c.closeAt > 0 {
				time.AfterFunc(c.closeAt, func() { ctlW.Close() })
			}
			out, report, code, took := runInitWith(t, initRun{control: ctlR, newPID: true}, append([]string{jobinit.ControlArg}, sleeper...)...)
			ctlR.Close()
			if code != c.code || report != "" || out != "" || took < c.min || took > c.max {
				t.Errorf("init exit %d after %v, report %q, output %q; want exit %d after %v to %v and the command killed",
					code, took.Round(time.Millisecond), report, out, c.code, c.min, c.max)
			}
		})
	}
	// A command that ends first is reported as before; the deadline does not matter.
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer ctlW.Close()
	defer ctlR.Close()
	_, _ = ctlW.WriteString("10000\n")
	if _, report, code, _ := runInitWith(t, initRun{control: ctlR, newPID: true}, jobinit.ControlArg, "/bin/sh", "-c", "exit 3"); report != "exit 3\n" || code != 0 {
		t.Errorf("a command ending before its deadline: report %q, init exit %d", report, code)
	}
}

// With AdoptArg the init runs no command: the process that exec'd it forked the command
// already (a fork server's job), and the init reports that child's end as its own
// command's. A pid it cannot have as a child is refused.
func TestAdopt(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, script, want string }{
		{"exit code", `(sleep 0.2; exit 7) & exec -a ` + jobinit.InitPath + ` "$0" -p $!`, "exit 7\n"},
		{"signal", `(sleep 0.2; kill -TERM $BASHPID) & exec -a ` + jobinit.InitPath + ` "$0" -p $!`, "signal 15\n"},
		{"no pid", `exec -a ` + jobinit.InitPath + ` "$0" -p x`, "fail 22\n"},
		{"pid 1", `exec -a ` + jobinit.InitPath + ` "$0" -p 1`, "fail 22\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			statusR, statusW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer statusR.Close()
			cmd := exec.Command("bash", "-c", c.script, self)
			cmd.ExtraFiles = []*os.File{statusW}
			_ = cmd.Run()
			statusW.Close()
			b, _ := io.ReadAll(statusR)
			if string(b) != c.want {
				t.Errorf("report %q, want %q", b, c.want)
			}
		})
	}
}
