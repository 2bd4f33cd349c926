package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// After ReexecSealed the process and every thread keep the binary's name: the kernel
// would name them after /proc/self/fd/N ("8"), which is what ps and top showed. The
// test binary re-executes itself as the daemon does and reports its names; ps must
// agree.
func TestReexecKeepsName(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestReexecKeepsNameChild$", "-test.v")
	cmd.Env = append(os.Environ(), "SANDBOXD_TEST_REEXEC_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	want := filepath.Base(os.Args[0])
	if len(want) > 15 {
		want = want[:15]
	}
	var comms []string
	for _, l := range strings.Split(string(out), "\n") {
		if c, ok := strings.CutPrefix(l, "COMM "); ok {
			comms = append(comms, c)
		}
	}
	if len(comms) < 2 {
		t.Fatalf("the child reported %d threads:\n%s", len(comms), out)
	}
	for _, c := range comms {
		if c != want {
			t.Errorf("a thread is named %q, want %q:\n%s", c, want, out)
			break
		}
	}
	if !strings.Contains(string(out), "SEALED true") {
		t.Errorf("the child did not run from the sealed copy:\n%s", out)
	}
	if !strings.Contains(string(out), "PS "+want+" "+os.Args[0]) {
		t.Errorf("ps -o comm,args does not show %q and its arguments:\n%s", want, out)
	}
}

func TestReexecKeepsNameChild(t *testing.T) {
	if os.Getenv("SANDBOXD_TEST_REEXEC_CHILD") == "" {
		t.Skip("run by TestReexecKeepsName")
	}
	if err := ReexecSealed(); err != nil { // returns only once running sealed
		t.Fatal(err)
	}
	exe, _ := os.Readlink("/proc/self/exe")
	t.Logf("exe %s", exe)
	os.Stdout.WriteString("SEALED " + strconv.FormatBool(strings.HasPrefix(exe, "/memfd:")) + "\n")
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join("/proc/self/task", task.Name(), "comm"))
		if err == nil {
			os.Stdout.WriteString("COMM " + strings.TrimSpace(string(b)) + "\n")
		}
	}
	if ps, err := exec.Command("ps", "-o", "comm=,args=", "-p", strconv.Itoa(os.Getpid())).Output(); err == nil {
		os.Stdout.WriteString("PS " + strings.Join(strings.Fields(string(ps)), " ") + "\n")
	} else {
		t.Logf("ps: %v", err)
	}
}
