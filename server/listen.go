package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrLiveSocket is returned when another process already serves on a unix socket path.
var ErrLiveSocket = errors.New("another process is listening on this socket")

// ErrNeedsToken is returned for a TCP address other than loopback without an auth token.
var ErrNeedsToken = errors.New("a non-loopback TCP listener needs an auth token (--token-file)")

// ListenConfig says how to open one listener.
type ListenConfig struct {
	Addr        string // "unix:/path" or "host:port"
	SocketGroup string // group owning unix sockets (mode 0660); empty keeps root's group
	HaveToken   bool   // whether requests must carry a bearer token
}

// Listen opens a TCP or unix listener. A unix socket is created with mode 0660; a live
// socket at the path is never taken over, a stale one is replaced. TCP must name a
// loopback host unless a token is configured, and never binds all interfaces by default.
func Listen(c ListenConfig) (net.Listener, error) {
	if path, ok := strings.CutPrefix(c.Addr, "unix:"); ok {
		return listenUnix(path, c.SocketGroup)
	}
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", c.Addr, err)
	}
	if !isLoopback(host) && !c.HaveToken {
		return nil, fmt.Errorf("listen %s: %w", c.Addr, ErrNeedsToken)
	}
	return net.Listen("tcp", c.Addr)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func listenUnix(path, group string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 { // connect says ECONNREFUSED for any file
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: %w", path, ErrLiveSocket)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%s exists and is not a stale socket: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	// Bind it where nobody else can reach it, set its owner and mode, then rename it into
	// place: no moment at which the socket is reachable with a wider mode, and the
	// process-wide umask is never touched (the warm pool creates files, fifos and
	// container state from other goroutines while the daemon starts listening, and a
	// umask changed under them would give those the socket's tight mode, or ours theirs).
	// The private directory is on the socket's filesystem, so the rename is atomic.
	tmpDir, err := os.MkdirTemp(filepath.Dir(path), ".bind-") // 0700
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")
	l, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, err
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // it would unlink tmp; Close removes path instead
	ln := &unixListener{UnixListener: ul, path: path}
	gid := -1
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("socket group: %w", err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	if err := os.Chown(tmp, -1, gid); err != nil {
		ul.Close()
		return nil, err
	}
	if err := os.Chmod(tmp, 0o660); err != nil {
		ul.Close()
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ul.Close()
		return nil, err
	}
	return ln, nil
}

// unixListener removes its socket's path on Close, as net.UnixListener does for the path
// it bound, which here was the temporary one.
type unixListener struct {
	*net.UnixListener
	path string
	once sync.Once
}

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() { _ = os.Remove(l.path) })
	return err
}

// CheckListener applies Listen's rule to a socket opened elsewhere (systemd's): a TCP
// socket must be bound to loopback unless a token is configured. An unspecified address
// (0.0.0.0, ::) is every interface, not loopback.
func CheckListener(ln net.Listener, haveToken bool) error {
	addr, ok := ln.Addr().(*net.TCPAddr)
	if !ok || haveToken || addr.IP.IsLoopback() {
		return nil
	}
	return fmt.Errorf("listen %s: %w", addr, ErrNeedsToken)
}
