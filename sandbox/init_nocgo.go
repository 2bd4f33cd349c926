//go:build !cgo

package sandbox

// Without cgo there is no nsenter (libcontainer's C constructor that joins a container's
// namespaces), so this binary cannot be a container's init; the daemon refuses to start
// (see Supported) rather than fail every job.
