//go:build !linux || !cgo || !seccomp

package seccomp

// Supported reports ErrNotCompiledIn: without cgo and the seccomp build tag libcontainer
// cannot load a filter, so every job would fail. runc's seccomp_unsupported.go fails
// closed the same way; the daemon refuses to start on it.
func Supported() error { return ErrNotCompiledIn }
