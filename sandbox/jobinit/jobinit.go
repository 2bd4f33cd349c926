// Package jobinit is the tiny init that runs as pid 1 of every job.
//
// Python as pid 1 of a pid namespace would ignore every signal it has no handler for
// (so os.kill(os.getpid(), SIGKILL) would do nothing) and never reap orphans. Instead,
// the daemon's own (static) binary is bind-mounted into the job as InitPath and started
// as pid 1; this C constructor recognises that argv[0] before the Go runtime starts,
// forks the job's command, reaps every process, and when the command ends writes
// "exit N" or "signal N" to fd 3 (a pipe to the daemon, closed in the command) and exits,
// which ends the pid namespace and so every process left in it. Given SeccompArg, it
// first loads the job's seccomp filter from SeccompFD; given NofileArg, it sets the
// job's RLIMIT_NOFILE; given ControlArg, it bounds the job on its own (see ControlFD).
package jobinit

// InitPath is where the init binary is mounted inside every job; argv[0] must be exactly
// this for the constructor to take over.
const InitPath = "/dev/.sbx-init"

// StatusFD is the descriptor on which the init reports how the command ended.
const StatusFD = 3

// SeccompArg, as an option of the init, says that SeccompFD holds the job's seccomp
// program (raw struct sock_filter, compiled once by the daemon): the init loads it on
// itself before it starts the command, or reports "fail <errno>" and runs nothing.
const (
	SeccompArg = "-s"
	SeccompFD  = 5
)

// NofileArg, followed by "SOFT:HARD" (or one number for both), sets RLIMIT_NOFILE before
// the command starts. libcontainer's rlimits are applied to runc's own init, which needs
// more descriptors than the lowest limit a job may have.
const NofileArg = "-n"

// ControlArg says that ControlFD is the read end of a pipe only the daemon writes to.
// When the job's clock starts the daemon writes its deadline, "<ms>\n" from then on; the
// init ends the job (exits, ending its pid namespace) when that passes, whether or not
// the daemon is still there to do it. End of file on ControlFD means the daemon is gone:
// the job ends at once, before or after its clock started.
const (
	ControlArg = "-c"
	ControlFD  = 4
)

// Exit codes of an init that ended its job on its own: the deadline passed, or the
// daemon went away.
const (
	ExitDeadline = 122
	ExitOrphaned = 123
)

// AdoptArg, followed by a pid, says the command is already running as that pid, a child
// of the process that exec'd the init (a fork server's job, sandbox/forkserver.py): the
// init forks nothing, reports that child's end, and closes ReadyFD once it watches it (the
// child waits for that before it runs anything of the job).
const (
	AdoptArg = "-p"
	ReadyFD  = 6
)
