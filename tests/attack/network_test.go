package attack_test

import (
	"strings"
	"testing"
)

// Network: a job's namespace holds only lo; nothing leaves it, and the daemon's own
// port and socket are out of reach.
func TestNetwork(t *testing.T) {
	connectPy := `
import socket, errno
def conn(fam, typ, addr):
    s = socket.socket(fam, typ)
    s.settimeout(2)
    try:
        s.sendto(b"x", addr) if typ == socket.SOCK_DGRAM else s.connect(addr)
        return "CONNECTED"
    except socket.timeout:
        return "TIMEOUT"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e))
    finally:
        s.close()
`
	cases := []jobCase{
		{name: "only loopback", code: `
import os, socket
print([n for _, n in socket.if_nameindex()], os.listdir("/proc/sys/net/ipv4/conf"))
print(len(open("/proc/net/route").read().splitlines()))
`, status: "ok", stdout: "['lo'] ['all', 'default', 'lo']\n1\n"},

		{name: "no route anywhere", code: connectPy + `
print("tcp", conn(socket.AF_INET, socket.SOCK_STREAM, ("1.1.1.1", 443)))
print("udp", conn(socket.AF_INET, socket.SOCK_DGRAM, ("8.8.8.8", 53)))
print("tcp6", conn(socket.AF_INET6, socket.SOCK_STREAM, ("2606:4700:4700::1111", 443)))
print("metadata", conn(socket.AF_INET, socket.SOCK_STREAM, ("169.254.169.254", 80)))
`, status: "ok", stdout: "tcp ENETUNREACH\nudp ENETUNREACH\ntcp6 ENETUNREACH\nmetadata ENETUNREACH\n"},

		{name: "dns fails", code: `
import socket
try:
    socket.getaddrinfo("example.com", 443)
    print("RESOLVED")
except socket.gaierror:
    print("dns failed")
`, status: "ok", stdout: "dns failed\n"},

		// Raw link and IP access, hypervisor sockets, kernel crypto and netlink beyond
		// routing are refused at socket(); route netlink and plain sockets still work.
		{name: "dangerous socket families refused", code: `
import socket, errno
for name, args in (("AF_PACKET raw", (17, socket.SOCK_RAW, 0x300)), ("AF_PACKET dgram", (17, socket.SOCK_DGRAM, 0x300)),
                   ("AF_INET raw", (2, socket.SOCK_RAW, 1)), ("AF_INET6 raw", (10, socket.SOCK_RAW, 58)),
                   ("AF_INET icmp", (2, socket.SOCK_DGRAM, 1)), ("AF_VSOCK", (40, socket.SOCK_STREAM, 0)),
                   ("AF_ALG", (38, socket.SOCK_SEQPACKET, 0)), ("NETLINK_SOCK_DIAG", (16, socket.SOCK_RAW, 4)),
                   ("NETLINK_AUDIT", (16, socket.SOCK_RAW, 9)), ("NETLINK_KOBJECT_UEVENT", (16, socket.SOCK_RAW, 15)),
                   ("NETLINK_ROUTE", (16, socket.SOCK_RAW, 0)), ("AF_INET stream", (2, socket.SOCK_STREAM, 0)),
                   ("AF_UNIX", (1, socket.SOCK_STREAM, 0))):
    try:
        socket.socket(*args).close()
        print(name, "OPEN")
    except OSError as e:
        print(name, "refused" if e.errno in (errno.EPERM, errno.EACCES) else errno.errorcode[e.errno])
`, status: "ok", check: func(t *testing.T, r *result) {
			got := lines(r.Stdout)
			if len(got) != 13 {
				t.Fatalf("want 13 lines:\n%s", r)
			}
			for i, l := range got {
				want := " refused"
				if i >= 10 {
					want = " OPEN"
				}
				if !strings.HasSuffix(l, want) {
					t.Errorf("%s, want%s", l, want)
				}
			}
		}},

		{name: "daemon unreachable", code: connectPy + `
print("tcp", conn(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", {{port}})))
print("tcp6", conn(socket.AF_INET6, socket.SOCK_STREAM, ("::1", {{port}})))
print("unix", conn(socket.AF_UNIX, socket.SOCK_STREAM, "{{socket}}"))
print("unix sockets", open("/proc/net/unix").read().splitlines()[1:])
print("listeners", [l.split()[1] for l in open("/proc/net/tcp").read().splitlines()[1:] if l.split()[3] == "0A"])
`, status: "ok", stdout: "tcp ECONNREFUSED\ntcp6 ECONNREFUSED\nunix ENOENT\nunix sockets []\nlisteners []\n"},
	}
	runCases(t, cases)
}
