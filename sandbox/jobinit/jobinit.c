#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Keep in sync with jobinit.go. */
#define INIT_PATH "/dev/.sbx-init"
#define STATUS_FD 3
#define CONTROL_FD 4
#define SECCOMP_FD 5
#define SECCOMP_ARG "-s"
#define CONTROL_ARG "-c"
#define NOFILE_ARG "-n"
#define ADOPT_ARG "-p"
#define READY_FD 6
/* Exit codes when the init ends the job on its own (nobody may be there to hear). */
#define EXIT_DEADLINE 122
#define EXIT_ORPHANED 123

static struct sock_filter filter_buf[BPF_MAXINSNS];

/* load_filter installs the seccomp program the daemon compiled once (raw struct
 * sock_filter, read from SECCOMP_FD) on this process, which no_new_privs already
 * allows. Returns 0 or an errno. */
static int load_filter(void) {
	struct stat st;
	if (fstat(SECCOMP_FD, &st) < 0)
		return errno;
	if (st.st_size <= 0 || st.st_size % sizeof(struct sock_filter) != 0 || st.st_size > (off_t)sizeof filter_buf)
		return EINVAL;
	size_t want = st.st_size, got = 0;
	while (got < want) {
		ssize_t n = pread(SECCOMP_FD, (char *)filter_buf + got, want - got, got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? errno : EIO;
		got += n;
	}
	close(SECCOMP_FD);
	struct sock_fprog prog = {.len = want / sizeof(struct sock_filter), .filter = filter_buf};
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0)
		return errno;
	return 0;
}

static void report(const char *buf, int n) {
	while (write(STATUS_FD, buf, n) < 0 && errno == EINTR)
		;
}

static void fail(int err) {
	char buf[32];
	int n = snprintf(buf, sizeof buf, "fail %d\n", err);
	report(buf, n);
	_exit(124);
}

/* parse_count reads a decimal count ending at end (a NUL or the given delimiter). */
static int parse_count(const char *s, char delim, unsigned long long *v, const char **rest) {
	char *end;
	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	*v = strtoull(s, &end, 10);
	if (errno != 0 || (*end != '\0' && *end != delim))
		return -1;
	*rest = end;
	return 0;
}

/* parse_nofile reads "SOFT:HARD" or "N" (both the same). */
static int parse_nofile(const char *s, struct rlimit *rl) {
	unsigned long long soft, hard;
	const char *rest;
	if (parse_count(s, ':', &soft, &rest) != 0)
		return -1;
	hard = soft;
	if (*rest == ':' && (parse_count(rest + 1, '\0', &hard, &rest) != 0 || *rest != '\0'))
		return -1;
	if (soft > hard)
		return -1;
	rl->rlim_cur = soft;
	rl->rlim_max = hard;
	return 0;
}

static long long now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sbx_jobinit(int argc, char **argv, char **envp) {
	if (argc < 2 || argv == NULL || argv[0] == NULL || strcmp(argv[0], INIT_PATH) != 0)
		return;
	/* Not dumpable: the job may not open /proc/1/mem, fd 3 or environ of its init and
	 * tamper with what it reports. exec makes python dumpable again. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	char buf[32];
	const char *adopt_end;
	int n, st;
	char **cmd = argv + 1;
	int seccomp = 0, control = 0, nofile = 0;
	unsigned long long adopt = 0;
	struct rlimit nofile_rl;
	/* Options, then the command. Anything wrong: nothing runs ("fail errno"). */
	for (; cmd[0] != NULL && cmd[0][0] == '-'; cmd++) {
		if (strcmp(cmd[0], SECCOMP_ARG) == 0)
			seccomp = 1;
		else if (strcmp(cmd[0], CONTROL_ARG) == 0)
			control = 1;
		else if (strcmp(cmd[0], NOFILE_ARG) == 0 && cmd[1] != NULL && parse_nofile(cmd[1], &nofile_rl) == 0)
			nofile = 1, cmd++;
		else if (strcmp(cmd[0], ADOPT_ARG) == 0 && cmd[1] != NULL && parse_count(cmd[1], '\0', &adopt, &adopt_end) == 0 &&
			 adopt > 1 && adopt < 1u << 22)
			cmd++;
		else
			fail(EINVAL);
	}
	if (cmd[0] == NULL && adopt == 0)
		fail(EINVAL);
	/* The job's seccomp filter is on SECCOMP_FD, to be loaded before anything of the
	 * job runs. */
	if (seccomp) {
		int err = load_filter();
		if (err != 0)
			fail(err);
	}
	/* RLIMIT_NOFILE is the job's, set here rather than by libcontainer: runc's own init
	 * needs more descriptors than the lowest limit a job may ask for. */
	if (nofile && setrlimit(RLIMIT_NOFILE, &nofile_rl) != 0)
		fail(errno);
	/* SIGCHLD arrives on a descriptor, so one poll waits for the command, the daemon's
	 * control pipe and the deadline at once. */
	sigset_t chld, old;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &chld, &old) != 0)
		fail(errno);
	int sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0)
		fail(errno);
	/* With ADOPT_ARG the command is already running as the given pid, a child of this
	 * process (a fork server's job: the process that exec'd this init forked it); it waits
	 * for READY_FD to close, which happens once this init watches it. */
	pid_t child = adopt ? (pid_t)adopt : fork();
	if (adopt)
		close(READY_FD);
	if (child < 0)
		_exit(126);
	if (child == 0) {
		close(STATUS_FD);
		if (control)
			close(CONTROL_FD);
		sigprocmask(SIG_SETMASK, &old, NULL);
		execvpe(cmd[0], cmd, envp);
		_exit(127);
	}
	/* The job's stdio is the command's: without the init's copies, the daemon sees the
	 * end of its output as soon as the last process of the job holding it is gone. */
	close(0);
	close(1);
	close(2);
	/* With CONTROL_ARG the daemon holds the write end of CONTROL_FD, and nobody else
	 * does. It writes the job's deadline ("<ms>\n", counted from now) when the job's
	 * clock starts; the init ends the job when that passes, so a job is bounded even if
	 * the daemon is gone or stuck. End of file means the daemon is gone (or tearing the
	 * job down): nobody will read the job's result, so it ends at once. Ending the job
	 * is exiting: the pid namespace ends with its init, and every process in it. */
	long long deadline = -1;
	for (;;) {
		for (;;) {
			pid_t p = waitpid(-1, &st, WNOHANG);
			if (p < 0 && errno == EINTR)
				continue;
			if (p < 0)
				_exit(125);
			if (p == 0)
				break;
			if (p != child)
				continue; /* an orphan reaped */
			if (WIFEXITED(st))
				n = snprintf(buf, sizeof buf, "exit %d\n", WEXITSTATUS(st));
			else if (WIFSIGNALED(st))
				n = snprintf(buf, sizeof buf, "signal %d\n", WTERMSIG(st));
			else
				continue;
			report(buf, n);
			_exit(0);
		}
		int timeout = -1;
		if (deadline >= 0) {
			long long left = deadline - now_ms();
			if (left <= 0)
				_exit(EXIT_DEADLINE);
			timeout = left > 1000000 ? 1000000 : (int)left;
		}
		struct pollfd fds[2] = {{.fd = sfd, .events = POLLIN}, {.fd = CONTROL_FD, .events = POLLIN}};
		if (poll(fds, control ? 2 : 1, timeout) < 0) {
			if (errno == EINTR)
				continue;
			_exit(125);
		}
		if (fds[0].revents) {
			struct signalfd_siginfo si;
			while (read(sfd, &si, sizeof si) > 0)
				;
		}
		if (control && fds[1].revents) {
			ssize_t r = read(CONTROL_FD, buf, sizeof buf - 1);
			if (r < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			if (r <= 0)
				_exit(EXIT_ORPHANED);
			buf[r] = '\0';
			unsigned long long ms;
			const char *rest;
			if (deadline < 0 && parse_count(buf, '\n', &ms, &rest) == 0)
				deadline = now_ms() + (long long)(ms > 86400000ULL ? 86400000ULL : ms);
		}
	}
}
