package gpu

import (
	"bufio"
	"fmt"
	"io"
	"runtime"
	"strings"
)

// ldEntry is one line of `ldconfig -p`:
//
//	libcuda.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libcuda.so.1
type ldEntry struct {
	Name  string // the soname, e.g. libcuda.so.1
	Flags string // e.g. "libc6,x86-64"
	Path  string
}

// parseLdCache reads the output of `ldconfig -p`, skipping its header and
// footer lines.
func parseLdCache(r io.Reader) ([]ldEntry, error) {
	var out []ldEntry
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		lhs, path, ok := strings.Cut(sc.Text(), " => ")
		if !ok {
			continue
		}
		name, flags, ok := strings.Cut(strings.TrimSpace(lhs), " (")
		if !ok || !strings.HasSuffix(flags, ")") {
			continue
		}
		out = append(out, ldEntry{Name: name, Flags: strings.TrimSuffix(flags, ")"), Path: strings.TrimSpace(path)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("ld cache: %w", err)
	}
	return out, nil
}

// ldArch is how ldconfig tags libraries of this process's architecture;
// the 32-bit copies that multilib hosts also list have other tags.
var ldArch = map[string]string{
	"amd64":   "x86-64",
	"arm64":   "AArch64",
	"ppc64le": "64bit",
}[runtime.GOARCH]

// nativeArch reports whether flags (e.g. "libc6,x86-64, OS ABI: Linux
// 3.2.0") name this process's architecture.
func nativeArch(flags string) bool {
	for _, f := range strings.Split(flags, ",") {
		if strings.TrimSpace(f) == ldArch {
			return true
		}
	}
	return false
}
