package daemon

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The sockets systemd passes (LISTEN_FDS from fd 3, LISTEN_PID, LISTEN_FDNAMES from
// FileDescriptorName=) are found by name and served, and the variables are unset so no
// child inherits them. As systemd does, the child is exec'd with LISTEN_PID already its
// own: sh sets it to $$ and execs.
func TestSystemdListeners(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	sock := filepath.Join(t.TempDir(), "s.sock")
	unix, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close()
	var files []*os.File
	for _, ln := range []interface{ File() (*os.File, error) }{tcp.(*net.TCPListener), unix.(*net.UnixListener)} {
		f, err := ln.File()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
	}
	// Connect before the child runs: the backlog holds them until it accepts.
	var conns []net.Conn
	for _, a := range []net.Addr{tcp.Addr(), unix.Addr()} {
		c, err := net.Dial(a.Network(), a.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}

	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" -test.run='^TestSystemdListenersChild$'`, os.Args[0])
	cmd.ExtraFiles = files // fds 3 and 4
	cmd.Env = append(os.Environ(), "LISTEN_FDS=2", "LISTEN_FDNAMES=api:local", "SANDBOXD_TEST_ACTIVATION_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for _, want := range []string{"api tcp " + tcp.Addr().String(), "local unix " + sock} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("child's listeners lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "LEFT") {
		t.Errorf("activation variables left for children:\n%s", out)
	}
	for i, want := range []string{"api", "local"} {
		got, _ := io.ReadAll(conns[i])
		if string(got) != want {
			t.Errorf("connection %d was served by %q, want %q", i, got, want)
		}
	}
}

// TestSystemdListenersChild is the process systemd started; it does nothing in a plain run.
func TestSystemdListenersChild(t *testing.T) {
	if os.Getenv("SANDBOXD_TEST_ACTIVATION_CHILD") == "" {
		t.Skip("run by TestSystemdListeners")
	}
	for _, ln := range systemdListeners() {
		fmt.Printf("%s %s %s\n", ln.name, ln.Addr().Network(), ln.Addr())
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(ln.name))
		c.Close()
	}
	for _, v := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		if os.Getenv(v) != "" {
			fmt.Println("LEFT", v)
		}
	}
}

// Without systemd there is nothing to notify and nothing passed; neither is an error.
func TestOutsideSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("LISTEN_FDS", "")
	notify(nil, "READY=1") // must not touch the logger: nothing went wrong
	if lns := systemdListeners(); len(lns) != 0 {
		t.Errorf("listeners without systemd: %v", lns)
	}
}
