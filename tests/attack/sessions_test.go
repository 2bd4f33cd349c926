package attack_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/sandboxd/sandboxd/internal/testenv"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// session is a code-interpreter session of a daemon, through /v1/sessions.
type session struct {
	d  *daemon
	id string
}

func (d *daemon) call(method, path string, body any, out any) (int, error) {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+d.addr+path, r)
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %d, not JSON: %q", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, nil
}

// newSession starts a session, or skips when the rootfs has no ipykernel.
func newSession(t *testing.T, d *daemon, body map[string]any) *session {
	t.Helper()
	var got struct {
		ID    string `json:"id"`
		Error string `json:"error"`
	}
	code, err := d.call("POST", "/v1/sessions", body, &got)
	if err != nil {
		t.Fatal(err)
	}
	if code == http.StatusNotImplemented {
		t.Skip("the rootfs has no ipykernel (SANDBOXD_ROOTFS must be the python image for sessions)")
	}
	if code != http.StatusCreated {
		t.Fatalf("create session: %d %s", code, got.Error)
	}
	s := &session{d: d, id: got.ID}
	t.Cleanup(func() { _, _ = d.call("DELETE", "/v1/sessions/"+s.id, nil, nil) })
	return s
}

type cellResult struct {
	Results []struct {
		Data map[string]json.RawMessage `json:"data"`
	} `json:"results"`
	Status       string `json:"status"`
	Stdout       string `json:"stdout"`
	Stderr       string `json:"stderr"`
	SessionEnded string `json:"session_ended"`
	Error        *struct {
		Name, Value string
	} `json:"error"`
}

func (s *session) exec(t *testing.T, code string) cellResult {
	t.Helper()
	var r cellResult
	status, err := s.d.call("POST", "/v1/sessions/"+s.id+"/execute", map[string]string{"code": code}, &r)
	if err != nil || status != 200 {
		t.Fatalf("execute: %d %v", status, err)
	}
	return r
}

// The attack suite's categories, run inside a session's kernel: it is contained as a
// job is, and survives each attempt.
func TestSessionContained(t *testing.T) {
	testenv.SkipOnSlowCPU(t, "an IPython kernel with numpy and pandas takes minutes to start")
	d := need(t)
	s := newSession(t, d, map[string]any{"limits": map[string]any{"timeout": 20, "pids": 64}})
	cases := []struct{ name, code, want string }{
		{"host information", `
import os
print(os.path.exists('/etc/shadow') and os.access('/etc/shadow', os.R_OK))
def env(p):
    try: return open('/proc/%s/environ' % p, 'rb').read().decode(errors='replace')
    except OSError: return ''
print(any('` + canaryEnv + `' in env(p) for p in os.listdir('/proc') if p.isdigit()))
print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit())[0])
print(any('/var/' in l or '/run/sandboxd' in l for l in open('/proc/self/mountinfo')))
`, "False\nFalse\n1\nFalse\n"},
		{"filesystem", `
import os
for p in ['/usr/bin/x', '/etc/x', '/x']:
    try: open(p, 'w'); print('wrote', p)
    except OSError: pass
try: os.mknod('/work/null', 0o20666, os.makedev(1, 3)); print('mknod')
except OSError: print('no mknod')
`, "no mknod\n"},
		{"privilege", `
import ctypes, os
st = dict(l.split(':\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\t' in l)
print([st[k].strip() for k in ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']] == ['0000000000000000'] * 5, st['NoNewPrivs'].strip(), st['Seccomp'].strip())
libc = ctypes.CDLL(None, use_errno=True)
print(libc.unshare(0x10000000), libc.mount(b'none', b'/work', b'tmpfs', 0, None))
`, "True 1 2\n-1 -1\n"},
		{"network", `
import os, socket
print(os.listdir('/sys/class/net') if os.path.exists('/sys/class/net') else ['lo'])
for fam, typ in [(socket.AF_INET, socket.SOCK_STREAM)]:
    try: socket.create_connection(('` + strings.Split(d.addr, ":")[0] + `', ` + strings.Split(d.addr, ":")[1] + `), timeout=1); print('daemon reachable')
    except OSError: print('daemon unreachable')
try: socket.getaddrinfo('example.com', 80); print('dns')
except OSError: print('no dns')
try: socket.socket(socket.AF_PACKET, socket.SOCK_RAW); print('packet')
except OSError: print('no packet')
`, "['lo']\ndaemon unreachable\nno dns\nno packet\n"},
		{"fork bomb", `
import os, signal
kids = []
try:
    while True:
        pid = os.fork()
        if pid == 0:
            import time; time.sleep(30); os._exit(0)
        kids.append(pid)
except OSError as e: print('stopped', e.errno)
for k in kids:
    os.kill(k, signal.SIGKILL); os.waitpid(k, 0)
`, "stopped 11\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.exec(t, c.code)
			if r.Stdout != c.want || r.SessionEnded != "" {
				t.Fatalf("got %q (err %+v, ended %q), want %q", r.Stdout, r.Error, r.SessionEnded, c.want)
			}
		})
	}
	// The daemon's python runtime renders matplotlib with Agg for jobs; a session's
	// figures still come back as PNGs.
	r := s.exec(t, "import matplotlib.pyplot as plt\nplt.plot([1, 2]); plt.show()")
	if len(r.Results) == 0 || !strings.HasPrefix(string(r.Results[0].Data["image/png"]), `"iVBORw0K`) {
		t.Errorf("no PNG from a figure: %+v", r)
	}
	// Nothing of IPython's or matplotlib's lands in /work (their caches are in /dev/shm).
	if r := s.exec(t, "import os; print(sorted(os.listdir('/work')))"); r.Stdout != "[]\n" {
		t.Errorf("/work holds %q", r.Stdout)
	}
	// Persistence: what one session planted, the next never sees.
	s.exec(t, "open('/work/planted', 'w').write('x'); open('/tmp/planted', 'w').write('x')")
	s2 := newSession(t, d, map[string]any{})
	if r := s2.exec(t, "import os; print(os.path.exists('/work/planted'), os.path.exists('/tmp/planted'))"); r.Stdout != "False False\n" {
		t.Fatalf("planted files seen: %q", r.Stdout)
	}
}

// A daemon SIGKILLed with a session alive: its restart removes the kernel, its
// container, cgroup, storage and kernel directory.
func TestSessionCrashRecovery(t *testing.T) {
	testenv.SkipOnSlowCPU(t, "an IPython kernel with numpy and pandas takes minutes to start")
	need(t)
	d, err := startDaemon("sesscrash", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := newSessionNoCleanup(t, d)
	s.exec(t, "x = 1")
	before := d.jobIDs()
	var pids []string
	for _, cg := range d.jobCgroups() {
		if b, err := os.ReadFile(filepath.Join(cg, "cgroup.procs")); err == nil {
			pids = append(pids, strings.Fields(string(b))...)
		}
	}
	if len(before) == 0 || len(pids) == 0 {
		_ = d.kill()
		t.Fatalf("no session container: %v %v", before, pids)
	}
	if err := d.kill(); err != nil {
		t.Fatal(err)
	}
	// The kernel goes with the daemon, restart or not (its stdin, the daemon's pipe, ends).
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && len(alive(pids)) > 0; {
		time.Sleep(50 * time.Millisecond)
	}
	if a := alive(pids); len(a) > 0 {
		t.Errorf("the kernel outlived its daemon: %v", a)
	}
	d2, err := startDaemon("sesscrash", 0, d)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d2.stop(); err != nil {
			t.Error(err)
		}
	}()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && len(alive(pids)) > 0; {
		time.Sleep(50 * time.Millisecond)
	}
	if a := alive(pids); len(a) > 0 {
		t.Errorf("the crashed daemon's kernel still runs: %v", a)
	}
	for id, where := range d2.jobIDs() {
		if _, ok := before[id]; ok {
			t.Errorf("the crashed daemon's %s is still there: %v", id, where)
		}
	}
	noLeftovers(t, d2)
	if code, _ := d2.call("GET", "/v1/sessions/"+s.id, nil, nil); code != 404 {
		t.Errorf("the old session answers after the restart: %d", code)
	}
}

func newSessionNoCleanup(t *testing.T, d *daemon) *session {
	t.Helper()
	var got struct {
		ID string `json:"id"`
	}
	code, err := d.call("POST", "/v1/sessions", nil, &got)
	if err != nil || code != http.StatusCreated {
		_ = d.kill()
		if code == http.StatusNotImplemented {
			t.Skip("the rootfs has no ipykernel (SANDBOXD_ROOTFS must be the python image for sessions)")
		}
		t.Fatalf("create session: %d %v", code, err)
	}
	return &session{d: d, id: got.ID}
}
