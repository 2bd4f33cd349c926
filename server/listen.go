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
	if _, err := os.Lstat(path); err == nil {
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
	// Create it unreachable, then open it up to owner and group only.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	gid := -1
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("socket group: %w", err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	if err := os.Chown(path, -1, gid); err != nil {
		ln.Close()
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
