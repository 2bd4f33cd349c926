//go:build !linux || !cgo || !seccomp

package seccomp

import "testing"

// The tests that load the filter need libcontainer's seccomp support, which
// is compiled in only with cgo and -tags seccomp.
const noSeccomp = "seccomp support not compiled in: run with CGO_ENABLED=1 go test -tags seccomp"

func TestNamesKnownToLibseccomp(t *testing.T) { t.Skip(noSeccomp) }
func TestFilterCallByCall(t *testing.T)       { t.Skip(noSeccomp) }
func TestPythonUnderFilter(t *testing.T)      { t.Skip(noSeccomp) }
