#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Keep in sync with jobinit.go. */
#define INIT_PATH "/dev/.sbx-init"
#define STATUS_FD 3
#define SECCOMP_ARG "-s"
#define SECCOMP_FD 4

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

void sbx_jobinit(int argc, char **argv, char **envp) {
	if (argc < 2 || argv == NULL || argv[0] == NULL || strcmp(argv[0], INIT_PATH) != 0)
		return;
	/* Not dumpable: the job may not open /proc/1/mem, fd 3 or environ of its init and
	 * tamper with what it reports. exec makes python dumpable again. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	char buf[32];
	int n, st;
	char **cmd = argv + 1;
	/* "-s": the job's seccomp filter is on SECCOMP_FD, to be loaded before anything of
	 * the job runs. If it cannot be, nothing runs: the daemon hears "fail errno". */
	if (strcmp(cmd[0], SECCOMP_ARG) == 0) {
		int err = load_filter();
		if (err == 0 && cmd[1] == NULL)
			err = EINVAL;
		if (err != 0) {
			n = snprintf(buf, sizeof buf, "fail %d\n", err);
			report(buf, n);
			_exit(124);
		}
		cmd++;
	}
	pid_t child = fork();
	if (child < 0)
		_exit(126);
	if (child == 0) {
		close(STATUS_FD);
		execvpe(cmd[0], cmd, envp);
		_exit(127);
	}
	/* The job's stdio is the command's: without the init's copies, the daemon sees the
	 * end of its output as soon as the last process of the job holding it is gone. */
	close(0);
	close(1);
	close(2);
	for (;;) {
		pid_t p = waitpid(-1, &st, 0);
		if (p < 0) {
			if (errno == EINTR)
				continue;
			_exit(125);
		}
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
}
