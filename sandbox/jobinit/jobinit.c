#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* Keep in sync with jobinit.go. */
#define INIT_PATH "/dev/.sbx-init"
#define STATUS_FD 3

void sbx_jobinit(int argc, char **argv, char **envp) {
	if (argc < 2 || argv == NULL || argv[0] == NULL || strcmp(argv[0], INIT_PATH) != 0)
		return;
	/* Not dumpable: the job may not open /proc/1/mem, fd 3 or environ of its init and
	 * tamper with what it reports. exec makes python dumpable again. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	pid_t child = fork();
	if (child < 0)
		_exit(126);
	if (child == 0) {
		close(STATUS_FD);
		execvpe(argv[1], argv + 1, envp);
		_exit(127);
	}
	char buf[32];
	int n, st;
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
		while (write(STATUS_FD, buf, n) < 0 && errno == EINTR)
			;
		_exit(0);
	}
}
