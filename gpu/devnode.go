package gpu

import (
	"errors"
	"os"

	"github.com/opencontainers/cgroups/devices/config"
	"golang.org/x/sys/unix"
)

var errNotADevice = errors.New("not a device node")

// deviceFromPath is github.com/moby/sys/devices.DeviceFromPath, which runc
// now points to but this module does not otherwise need.
func deviceFromPath(path, permissions string) (*config.Device, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return nil, &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	var t config.Type
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		t = config.CharDevice
	case unix.S_IFBLK:
		t = config.BlockDevice
	default:
		return nil, &os.PathError{Op: "lstat", Path: path, Err: errNotADevice}
	}
	return &config.Device{
		Rule: config.Rule{
			Type:        t,
			Major:       int64(unix.Major(st.Rdev)),
			Minor:       int64(unix.Minor(st.Rdev)),
			Permissions: config.Permissions(permissions),
		},
		Path:     path,
		FileMode: os.FileMode(st.Mode &^ unix.S_IFMT),
		Uid:      st.Uid,
		Gid:      st.Gid,
	}, nil
}
