package main

import (
	"fmt"

	"github.com/opencontainers/runc/libcontainer/configs"

	"github.com/sandboxd/sandboxd/sandbox/seccomp"
)

// jobSeccomp returns the jobs' seccomp filter.
func jobSeccomp() (*configs.Seccomp, error) {
	p, err := seccomp.Profile()
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	return p, nil
}
