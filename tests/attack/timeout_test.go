package attack_test

import (
	"testing"
	"time"
)

// Escape from the timeout: however the job hides, forks away or clings to its output,
// the whole job is gone (runCases checks its cgroup) when the answer comes, promptly.
func TestTimeoutEscape(t *testing.T) {
	cases := []jobCase{
		{name: "double fork and setsid", code: `
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        while True:
            time.sleep(1)
    os._exit(0)
print("parent spins", flush=True)
while True:
    pass
`, limits: limits{"timeout": 1}, status: "timeout", stdout: "parent spins\n", check: within(2500 * time.Millisecond)},

		{name: "ignored signals", code: `
import signal
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGXCPU, signal.SIGPIPE):
    signal.signal(s, signal.SIG_IGN)
print("deaf", flush=True)
while True:
    pass
`, limits: limits{"timeout": 1}, status: "timeout", stdout: "deaf\n", check: within(2500 * time.Millisecond)},

		// The command exits at once; a daemonised grandchild keeps stdout and stderr open
		// and would run forever. The job ends with its command.
		{name: "orphan holds stdout", code: `
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        while True:
            print("orphan", flush=True)
            time.sleep(0.05)
    os._exit(0)
time.sleep(0.2)
print("done", flush=True)
`, limits: limits{"timeout": 5}, status: "ok", check: within(2 * time.Second)},

		// Every process of the job stops itself and its siblings.
		{name: "stop everything", code: `
import os, signal
for _ in range(4):
    if os.fork() == 0:
        break
print("freezing", flush=True)
try:
    os.kill(-1, signal.SIGSTOP)  # every process of the job but init and the caller
except ProcessLookupError:
    pass
os.kill(os.getpid(), signal.SIGSTOP)
`, limits: limits{"timeout": 1}, status: "timeout", check: within(2500 * time.Millisecond)},

		// pid 1 is the job's init, not python: signals from the job cannot stop or kill it.
		{name: "attack the init", code: `
import os, signal
for s in (signal.SIGSTOP, signal.SIGTERM, signal.SIGKILL):
    os.kill(1, s)
print("init survives")
`, limits: limits{"timeout": 3}, status: "ok", stdout: "init survives\n", check: within(2 * time.Second)},
	}
	runCases(t, cases)
}
