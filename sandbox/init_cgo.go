//go:build cgo

package sandbox

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"
	// nsenter's C constructor joins the container's namespaces before the Go runtime
	// starts in the re-executed init; the devices import registers cgroup device rules.
	_ "github.com/opencontainers/cgroups/devices"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// A container's first process is this same binary re-executed as "<exe> init" by
// libcontainer. Doing it in the package's init makes every binary that links sandbox,
// its tests included, able to start containers.
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" && os.Getenv("_LIBCONTAINER_INITPIPE") != "" {
		libcontainer.Init()
	}
}
