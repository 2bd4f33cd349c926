package sandbox

import (
	"errors"

	"github.com/sandboxd/sandboxd/sandbox/jobinit"
	"github.com/sandboxd/sandboxd/sandbox/seccomp"
)

// Supported says whether this binary can run jobs at all: it needs libcontainer's
// seccomp support (cgo and -tags seccomp) and the C job init (cgo). A daemon built
// without them would start, report ready and fail every job; it refuses to start instead.
func Supported() error {
	return errors.Join(jobinit.Supported(), seccomp.Supported())
}
