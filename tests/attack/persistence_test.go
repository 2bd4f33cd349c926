package attack_test

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// plantPy plants everything a job could leave for the next: files in each writable
// place, a daemonised process, a TCP and an abstract unix listener, a SysV shared memory
// segment, then prints the time it was done and holds for hold seconds.
const plantPy = `
import os, socket, subprocess, time, ctypes
for p in ("/work/planted", "/tmp/planted.tmp", "/dev/shm/planted"):
    open(p, "w").write("planted")
subprocess.Popen(["python3", "-c", "import time; time.sleep(120)  # planted"], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
tcp = socket.socket()
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("127.0.0.1", 31337))
tcp.listen()
uds = socket.socket(socket.AF_UNIX)
uds.bind("\0sandboxd-planted")
uds.listen()
libc = ctypes.CDLL(None, use_errno=True)
print("shm", libc.shmget(0x5bd, 4096, 0o1666) >= 0)
print("planted at", time.time(), flush=True)
time.sleep(HOLD)
`

// probePy reports whatever of plantPy it can find, and when it looked.
const probePy = `
import os, socket, errno, time, ctypes
found = []
for d in ("/work", "/tmp", "/dev/shm"):
    found += [d + "/" + n for n in os.listdir(d) if n != "main.py"]
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            if b"planted" in open("/proc/%s/cmdline" % p, "rb").read():
                found.append("process " + p)
        except OSError:
            pass
for fam, addr in ((socket.AF_INET, ("127.0.0.1", 31337)), (socket.AF_UNIX, "\0sandboxd-planted")):
    s = socket.socket(fam)
    try:
        s.connect(addr)
        found.append("listener %r" % (addr,))
    except OSError:
        pass
    s.close()
libc = ctypes.CDLL(None, use_errno=True)
if libc.shmget(0x5bd, 0, 0) >= 0:
    found.append("shm segment")
print("found", found)
print("looked at", time.time())
`

// Persistence: nothing one job plants is seen by the next, nor by a job running beside it.
func TestPersistence(t *testing.T) {
	need(t)
	for _, d := range []*daemon{shared, cold} {
		t.Run(d.name, func(t *testing.T) { persistence(t, d) })
	}
}

func persistence(t *testing.T, d *daemon) {
	plant := strings.Replace(plantPy, "HOLD", "0", 1)

	t.Run("next job", func(t *testing.T) {
		a := d.execute(t, plant, limits{"timeout": 5})
		if a.Status != "ok" || !strings.Contains(a.Stdout, "shm True") {
			t.Fatalf("planting failed:\n%s", a)
		}
		b := d.execute(t, probePy, limits{"timeout": 5})
		if b.Status != "ok" || !strings.HasPrefix(b.Stdout, "found []\n") {
			t.Errorf("the next job found what the last one planted:\n%s", b)
		}
		noLeftovers(t, d)
	})

	// The prober runs while the planter holds everything; the times they print prove
	// they overlapped.
	t.Run("concurrent job", func(t *testing.T) {
		needRealCPU(t) // the planter must be up within the prober's 1 s head start
		var a *result
		var aErr error
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, aErr = d.run(strings.Replace(plantPy, "HOLD", "3", 1), limits{"timeout": 10})
		}()
		time.Sleep(time.Second)
		b := d.execute(t, probePy, limits{"timeout": 5})
		wg.Wait()
		if aErr != nil {
			t.Fatal(aErr)
		}
		if a.Status != "ok" || b.Status != "ok" {
			t.Fatalf("planter:\n%s\nprober:\n%s", a, b)
		}
		if !strings.HasPrefix(b.Stdout, "found []\n") {
			t.Errorf("a concurrent job found what another planted:\n%s", b)
		}
		planted, looked := stamp(a.Stdout, "planted at "), stamp(b.Stdout, "looked at ")
		if planted == 0 || looked <= planted || looked > planted+3 {
			t.Errorf("the jobs did not overlap (planted at %f, looked at %f)", planted, looked)
		}
		noLeftovers(t, d)
	})
}

// stamp returns the number after prefix on one of out's lines.
func stamp(out, prefix string) float64 {
	for _, l := range lines(out) {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}
