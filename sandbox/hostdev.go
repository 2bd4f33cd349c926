package sandbox

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/sandbox/jobinit"
)

// devMountDir holds the jobs' /dev: a tmpfs the daemon fills once with the allowed
// device nodes (allowedDevices: null, zero, full, random, urandom, tty), the usual
// links and the mountpoints, then makes read-only. Each job bind-mounts it read-only,
// which costs one mount instead of a tmpfs plus one bind per device node (jobs in a
// user namespace cannot mknod). Device nodes work on a read-only mount; the devices
// cgroup still allows exactly these.
const devMountDir = "dev"

func mountDev(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64"); err != nil {
		return fmt.Errorf("mount the jobs' /dev: %w", err)
	}
	err := fillDev(dir)
	if err == nil {
		err = unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64")
	}
	if err != nil {
		_ = unmount(dir)
		return fmt.Errorf("prepare the jobs' /dev: %w", err)
	}
	return nil
}

func fillDev(dir string) error {
	devs, _ := allowedDevices()
	for _, d := range devs {
		path := filepath.Join(dir, filepath.Base(d.Path))
		if err := unix.Mknod(path, unix.S_IFCHR|0o666, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor)))); err != nil {
			return err
		}
		if err := os.Chmod(path, 0o666); err != nil { // umask
			return err
		}
	}
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
		"stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx",
	} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	for _, d := range []string{"pts", "shm"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	// The mountpoint of the jobs' init.
	return os.WriteFile(filepath.Join(dir, filepath.Base(jobinit.InitPath)), nil, 0o444)
}

// useOwnDev switches a job to a /dev of its own (a tmpfs libcontainer fills with
// cfg.Devices: the allowed nodes plus what a GPU grant added), for jobs whose devices
// differ from everyone's.
func useOwnDev(cfg *configs.Config) {
	devs, _ := allowedDevices()
	cfg.Devices = append(devs, cfg.Devices...)
	for i, m := range cfg.Mounts {
		if m.Destination == "/dev" {
			cfg.Mounts[i] = &configs.Mount{Source: "tmpfs", Destination: "/dev", Device: "tmpfs",
				Flags: unix.MS_NOSUID | unix.MS_STRICTATIME, Data: "mode=755,size=65536k"}
		}
	}
}
