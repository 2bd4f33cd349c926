package server_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sandboxd/sandboxd/server"
)

// umask reads this process's umask without changing it.
func umask(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Umask:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("no Umask in /proc/self/status")
	return ""
}

// A unix socket is created 0660, a live one is never taken over, a stale one is
// replaced, Close removes it, and the process-wide umask is never changed: other
// goroutines (the warm pool) create files while the daemon binds.
func TestListenUnix(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	before := umask(t)
	var stop atomic.Bool
	var changed atomic.Value
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // watches the umask while the binds below run
		defer wg.Done()
		for !stop.Load() {
			if u := umask(t); u != before {
				changed.Store(u)
			}
		}
	}()
	for range 50 {
		ln, err := server.Listen(server.ListenConfig{Addr: "unix:" + sock})
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(sock)
		if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
			t.Fatalf("socket %v %v, want a socket with 0660", fi, err)
		}
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatalf("dial the socket: %v", err)
		}
		c.Close()
		if _, err := server.Listen(server.ListenConfig{Addr: "unix:" + sock}); !errors.Is(err, server.ErrLiveSocket) {
			t.Fatalf("second listener on a live socket: %v, want ErrLiveSocket", err)
		}
		ln.Close()
		if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Close left the socket: %v", err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if u := changed.Load(); u != nil {
		t.Errorf("the umask changed to %v while binding (was %s)", u, before)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Errorf("binding left %v behind", ents)
	}

	// A stale socket (nobody listening) is replaced; a file that is not a socket is not.
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	ln, err := server.Listen(server.ListenConfig{Addr: "unix:" + sock})
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln.Close()
	plain := filepath.Join(dir, "file")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Listen(server.ListenConfig{Addr: "unix:" + plain}); err == nil {
		t.Error("a plain file was replaced by a socket")
	}
}

// A listener opened elsewhere (systemd's) gets the same rule as Listen's TCP addresses.
func TestCheckListener(t *testing.T) {
	for _, c := range []struct {
		addr    string
		token   bool
		refused bool
	}{
		{"127.0.0.1:0", false, false},
		{"[::1]:0", false, false},
		{"0.0.0.0:0", false, true},
		{"[::]:0", false, true},
		{"0.0.0.0:0", true, false},
	} {
		ln, err := net.Listen("tcp", c.addr)
		if err != nil {
			t.Logf("skip %s: %v", c.addr, err)
			continue
		}
		err = server.CheckListener(ln, c.token)
		ln.Close()
		if refused := errors.Is(err, server.ErrNeedsToken); refused != c.refused || (err != nil && !refused) {
			t.Errorf("%s token %v: %v, want refused %v", c.addr, c.token, err, c.refused)
		}
	}
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := server.CheckListener(ln, false); err != nil {
		t.Errorf("unix socket: %v", err)
	}
}
