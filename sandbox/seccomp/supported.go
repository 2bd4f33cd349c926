//go:build linux && cgo && seccomp

package seccomp

// Supported reports nil: libcontainer's seccomp support (libseccomp, through cgo and the
// seccomp build tag) is compiled in.
func Supported() error { return nil }
