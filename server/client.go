package server

import (
	"context"
	"net"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Client is who sent a request: a local process on the unix socket (known by its
// credentials) or a remote address on TCP.
type Client struct {
	Unix bool   // came over the unix socket, whose permissions already admitted it
	UID  int    // peer's uid on the unix socket; -1 if unknown or TCP
	PID  int    // peer's pid on the unix socket; 0 if unknown or TCP
	Addr string // remote address on TCP
}

func (c Client) String() string {
	if !c.Unix {
		return c.Addr
	}
	if c.UID < 0 {
		return "unix"
	}
	return "uid=" + strconv.Itoa(c.UID) + " pid=" + strconv.Itoa(c.PID)
}

type clientKey struct{}

// ConnContext is an http.Server's ConnContext: it records who is on the other end of
// the connection, reading SO_PEERCRED once per unix connection.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, clientKey{}, clientOf(c))
}

func clientOf(c net.Conn) Client {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Client{UID: -1, Addr: c.RemoteAddr().String()}
	}
	cl := Client{Unix: true, UID: -1}
	raw, err := uc.SyscallConn()
	if err != nil {
		return cl
	}
	_ = raw.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED); err == nil {
			cl.UID, cl.PID = int(cred.Uid), int(cred.Pid)
		}
	})
	return cl
}

// ClientFrom returns the request's client; a request that did not come through
// ConnContext counts as a remote one, so it never passes for a trusted local peer.
func ClientFrom(ctx context.Context) Client {
	if c, ok := ctx.Value(clientKey{}).(Client); ok {
		return c
	}
	return Client{UID: -1, Addr: "unknown"}
}
