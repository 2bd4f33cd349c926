package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNoBlockDevice is returned for io limits when the state directory is not on a block
// device (tmpfs, overlay, network filesystems): there is nothing to throttle.
var ErrNoBlockDevice = errors.New("the state directory is not on a block device")

// blockDevice is a disk as cgroup io rules name it.
type blockDevice struct{ major, minor int64 }

func (d blockDevice) String() string { return fmt.Sprintf("%d:%d", d.major, d.minor) }

// blockDeviceOf finds the whole disk holding path. cgroup io throttles apply to disks,
// so a partition is resolved to its parent through sysfs (sysRoot, normally /sys).
func blockDeviceOf(path, sysRoot string) (blockDevice, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return blockDevice{}, err
	}
	return diskOf(int64(unix.Major(st.Dev)), int64(unix.Minor(st.Dev)), sysRoot)
}

func diskOf(major, minor int64, sysRoot string) (blockDevice, error) {
	link := filepath.Join(sysRoot, "dev/block", fmt.Sprintf("%d:%d", major, minor))
	target, err := filepath.EvalSymlinks(link)
	if err != nil {
		return blockDevice{}, fmt.Errorf("%w (device %d:%d)", ErrNoBlockDevice, major, minor)
	}
	if _, err := os.Stat(filepath.Join(target, "partition")); err == nil {
		target = filepath.Dir(target)
	}
	raw, err := os.ReadFile(filepath.Join(target, "dev"))
	if err != nil {
		return blockDevice{}, fmt.Errorf("%w: %v", ErrNoBlockDevice, err)
	}
	maj, min, ok := strings.Cut(strings.TrimSpace(string(raw)), ":")
	if !ok {
		return blockDevice{}, fmt.Errorf("%w: bad dev %q", ErrNoBlockDevice, raw)
	}
	d := blockDevice{}
	if d.major, err = strconv.ParseInt(maj, 10, 64); err == nil {
		d.minor, err = strconv.ParseInt(min, 10, 64)
	}
	if err != nil {
		return blockDevice{}, fmt.Errorf("%w: bad dev %q", ErrNoBlockDevice, raw)
	}
	return d, nil
}

// ioWeightSupported reports whether job cgroups will have an io weight to set: on v1 the
// blkio controller exposes one only under BFQ; on v2 the io controller has io.weight.
func ioWeightSupported(mode CgroupMode, mountpoint string) bool {
	if mode == CgroupV2 {
		_, err := os.Stat(filepath.Join(mountpoint, "cgroup.controllers"))
		return err == nil
	}
	for _, f := range []string{"blkio.weight", "blkio.bfq.weight"} {
		if _, err := os.Stat(filepath.Join(mountpoint, "blkio", f)); err == nil {
			return true
		}
	}
	return false
}
