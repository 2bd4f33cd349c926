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

// A TCP socket systemd passes obeys the rule configured listeners do: off loopback it
// needs an API token, or the daemon refuses to start (ListenStream=8000 is every
// interface). Each case passes one socket to a child, as TestSystemdListeners does.
func TestSystemdListenersNeedTokenOffLoopback(t *testing.T) {
	for _, c := range []struct {
		name, addr string
		token      bool
		refused    bool
	}{
		{"all interfaces", "0.0.0.0:0", false, true},
		{"all interfaces v6", "[::]:0", false, true},
		{"all interfaces with a token", "0.0.0.0:0", true, false},
		{"loopback", "127.0.0.1:0", false, false},
		{"unix", "unix", false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var ln net.Listener
			var err error
			if c.addr == "unix" {
				ln, err = net.Listen("unix", filepath.Join(t.TempDir(), "s.sock"))
			} else {
				ln, err = net.Listen("tcp", c.addr)
			}
			if err != nil {
				t.Skipf("cannot listen on %s here: %v", c.addr, err)
			}
			defer ln.Close()
			f, err := ln.(interface{ File() (*os.File, error) }).File()
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ exec "$0" -test.run='^TestSystemdListenCheckChild$'`, os.Args[0])
			cmd.ExtraFiles = []*os.File{f}
			cmd.Env = append(os.Environ(), "LISTEN_FDS=1", "LISTEN_FDNAMES=api", "SANDBOXD_TEST_ACTIVATION_CHILD=1",
				fmt.Sprintf("SANDBOXD_TEST_TOKEN=%t", c.token))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			refused := strings.Contains(string(out), "REFUSED")
			if refused != c.refused {
				t.Errorf("refused %v, want %v:\n%s", refused, c.refused, out)
			}
			if c.refused && (!strings.Contains(string(out), `socket "api" passed by systemd`) ||
				!strings.Contains(string(out), "needs an auth token") || !strings.Contains(string(out), "api_token_file")) {
				t.Errorf("the refusal does not say which socket and what to do:\n%s", out)
			}
		})
	}
}

// TestSystemdListenCheckChild is the daemon systemd started: it opens its listeners as
// Run does and says whether they were refused.
func TestSystemdListenCheckChild(t *testing.T) {
	if os.Getenv("SANDBOXD_TEST_ACTIVATION_CHILD") == "" {
		t.Skip("run by TestSystemdListenersNeedTokenOffLoopback")
	}
	d := New(Default(), Options{})
	if os.Getenv("SANDBOXD_TEST_TOKEN") == "true" {
		d.auth.SetTokens("secret", "")
	}
	lns, err := d.listen(d.config())
	if err != nil {
		fmt.Println("REFUSED:", err)
		return
	}
	for _, ln := range lns {
		fmt.Println("SERVING", ln.name, ln.Addr())
		ln.Close()
	}
}
