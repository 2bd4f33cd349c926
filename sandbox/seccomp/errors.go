package seccomp

import "errors"

var (
	// ErrInvalidProfile wraps any problem with the embedded profile: it is a
	// build defect, caught by the package tests.
	ErrInvalidProfile = errors.New("seccomp: invalid embedded profile")

	// ErrUnsupportedArch is returned on hosts that are not x86_64. The profile
	// names x86_64 system calls and libcontainer resolves them for the native
	// architecture, so elsewhere it would load a filter nobody reviewed.
	ErrUnsupportedArch = errors.New("seccomp: the job profile supports x86_64 only")

	// ErrNotCompiledIn is Supported's answer in a binary built without seccomp support.
	ErrNotCompiledIn = errors.New("seccomp support is not compiled in: build sandboxd with `make build` (cgo and -tags seccomp)")
)
