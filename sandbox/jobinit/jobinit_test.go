//go:build linux && cgo && seccomp

package jobinit_test

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
	cmd.ExtraFiles = []*os.File{statusW, prog} // fds 3 and 4
	err = cmd.Run()
	statusW.Close()
	b, _ := io.ReadAll(statusR)
	if exit, ok := err.(*exec.ExitError); ok {
		return stdout.String(), string(b), exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), string(b), 0
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
