// Package jobinit is the tiny init that runs as pid 1 of every job.
//
// Python as pid 1 of a pid namespace would ignore every signal it has no handler for
// (so os.kill(os.getpid(), SIGKILL) would do nothing) and never reap orphans. Instead,
// the daemon's own (static) binary is bind-mounted into the job as InitPath and started
// as pid 1; this C constructor recognises that argv[0] before the Go runtime starts,
// forks the job's command, reaps every process, and when the command ends writes
// "exit N" or "signal N" to fd 3 (a pipe to the daemon, closed in the command) and exits,
// which ends the pid namespace and so every process left in it. Given SeccompArg, it
// first loads the job's seccomp filter from SeccompFD.
package jobinit

// InitPath is where the init binary is mounted inside every job; argv[0] must be exactly
// this for the constructor to take over.
const InitPath = "/dev/.sbx-init"

// StatusFD is the descriptor on which the init reports how the command ended.
const StatusFD = 3

// SeccompArg, as the init's first argument, says that SeccompFD holds the job's seccomp
// program (raw struct sock_filter, compiled once by the daemon): the init loads it on
// itself before it starts the command, or reports "fail <errno>" and runs nothing.
const (
	SeccompArg = "-s"
	SeccompFD  = 4
)
