package attack_test

import "testing"

// Filesystem: the rootfs is read-only, the job writes only to its own capped storage,
// and it sees no device beyond the harmless ones.
func TestFilesystem(t *testing.T) {
	cases := []jobCase{
		{name: "rootfs read-only", code: `
import errno, glob
for d in ["/", "/usr", "/etc", "/bin", "/var/tmp", "/run", "/home", "/sys"] + glob.glob("/usr/lib/python3*")[:1]:
    try:
        open(d + "/x_probe", "w").close()
        print(d, "WROTE")
    except OSError as e:
        print(d, errno.errorcode[e.errno])
`, status: "ok", check: func(t *testing.T, r *result) {
			l := lines(r.Stdout)
			if len(l) != 9 {
				t.Fatalf("want 9 lines:\n%s", r)
			}
			for _, s := range l {
				if want := "EROFS"; s[len(s)-len(want):] != want {
					t.Errorf("rootfs not read-only: %s", s)
				}
			}
		}},

		// A walk of everything but /proc and /sys: the job's storage (its /work, also its
		// /tmp) and its private /dev/shm are the only writable places.
		{name: "writable only in job storage", code: `
import os
w = []
for root, dirs, files in os.walk("/"):
    if root in ("/proc", "/sys"):
        dirs[:] = []
        continue
    if os.access(root, os.W_OK):
        w.append(root)
print(sorted(w))  # directory order is the filesystem's
st = os.statvfs("/work")
print(st.f_blocks * st.f_frsize, os.stat("/work").st_dev == os.stat("/tmp").st_dev)
for p in ("/proc/sys/kernel/core_pattern", "/proc/sys/vm/drop_caches", "/proc/sysrq-trigger",
          "/sys/kernel/mm/transparent_hugepage/enabled"):
    try:
        with open(p, "w") as f:
            f.write("1")
        print(p, "WROTE")
    except OSError as e:
        print(p, "refused")
`, limits: limits{"storage": "8MB"}, status: "ok",
			stdout: "['/dev/shm', '/tmp', '/work']\n8388608 True\n" +
				"/proc/sys/kernel/core_pattern refused\n/proc/sys/vm/drop_caches refused\n/proc/sysrq-trigger refused\n" +
				"/sys/kernel/mm/transparent_hugepage/enabled refused\n"},

		{name: "only harmless devices", code: `
import os, stat, errno
devs = []
for root, dirs, files in os.walk("/dev"):
    for n in dirs + files:
        st = os.lstat(os.path.join(root, n))
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            devs.append(os.path.join(root, n))
print(sorted(devs))
for p in ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/pts/ptmx"):
    try:
        open(p, "rb").close()
        print(p, "opens")
    except OSError as e:
        print(p, errno.errorcode[e.errno])
`, status: "ok", stdout: "['/dev/full', '/dev/null', '/dev/pts/ptmx', '/dev/random', '/dev/tty', '/dev/urandom', '/dev/zero']\n" +
			"/dev/null opens\n/dev/zero opens\n/dev/full opens\n/dev/random opens\n/dev/urandom opens\n/dev/pts/ptmx EPERM\n"},

		{name: "mknod fails", code: `
import os, stat, errno
for path, mode, dev in (("/work/mem", stat.S_IFCHR, os.makedev(1, 1)), ("/tmp/null", stat.S_IFCHR, os.makedev(1, 3)),
                        ("/dev/shm/sda", stat.S_IFBLK, os.makedev(8, 0)), ("/work/kmsg", stat.S_IFCHR, os.makedev(1, 11))):
    try:
        os.mknod(path, mode | 0o666, dev)
        print(path, "CREATED")
    except OSError as e:
        print(path, errno.errorcode[e.errno])
`, status: "ok", stdout: "/work/mem EPERM\n/tmp/null EPERM\n/dev/shm/sda EPERM\n/work/kmsg EPERM\n"},

		// CVE-2019-5736 class: the job's pid 1 is a copy of the daemon binary; it must
		// not be writable through any path.
		{name: "init binary not writable", code: `
import errno
for p in ("/proc/1/exe", "/dev/.sbx-init", "/proc/self/exe"):
    try:
        open(p, "r+b").close()
        print(p, "WRITABLE")
    except OSError as e:
        print(p, errno.errorcode[e.errno])
`, status: "ok", stdout: "/proc/1/exe EACCES\n/dev/.sbx-init EROFS\n/proc/self/exe EROFS\n"},
	}
	runCases(t, cases)
}
