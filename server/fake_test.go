package server_test

import (
	"context"
	"sync"

	"github.com/sandboxd/sandboxd/sandbox"
)

// fakeRunner stands in for the engine in tests that need no root, cgroups or rootfs: it
// records each sandbox.Request a front hands it and answers with a canned Result. With
// policy set it first resolves the limits as the engine does, so the engine's refusals
// (a limit above the maximum, below the floor) come back as the engine's *FieldError.
// The Runner interface is adapted here, in one place, when it changes.
type fakeRunner struct {
	mu     sync.Mutex
	reqs   []sandbox.Request
	policy *sandbox.Policy
	result sandbox.Result // returned for every job; ID and Status default to a fake ok
	err    error          // returned instead of a result when set
}

func (f *fakeRunner) Run(_ context.Context, req sandbox.Request) (*sandbox.Result, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	res := f.result
	if f.policy != nil {
		l, err := f.policy.Resolve(req.Limits)
		if err != nil {
			return nil, err
		}
		res.Limits = l.View()
	}
	if res.ID == "" {
		res.ID = "sbx-fake"
	}
	if res.Status == "" {
		res.Status = sandbox.StatusOK
	}
	return &res, nil
}

// canned is a Result with the given ending and output, for fakeRunner.result. (Field by
// field, not a literal, so it builds whichever struct holds them.)
func canned(status sandbox.Status, exitCode int, stdout, stderr string) sandbox.Result {
	var r sandbox.Result
	r.Status, r.ExitCode, r.Stdout, r.Stderr = status, exitCode, stdout, stderr
	return r
}

// requests returns what the runner was handed so far.
func (f *fakeRunner) requests() []sandbox.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sandbox.Request(nil), f.reqs...)
}
