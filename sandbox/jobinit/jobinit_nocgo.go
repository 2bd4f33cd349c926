//go:build !cgo

package jobinit

import "errors"

// ErrNotCompiledIn is Supported's answer in a binary built without cgo.
var ErrNotCompiledIn = errors.New("the job init is not compiled in (built without cgo): build sandboxd with `make build`")

// Supported reports ErrNotCompiledIn: without cgo there is no C constructor, so the
// binary mounted as a job's pid 1 would start the daemon instead of the job. This stub
// lets go vet and go list work with CGO_ENABLED=0; the daemon refuses to start on it.
func Supported() error { return ErrNotCompiledIn }
