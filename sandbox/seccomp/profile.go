// Package seccomp provides the seccomp profile applied to every job.
//
// The profile is data: profile.json, embedded at build time, reviewed like
// code. Its entries map one to one onto libcontainer's configs.Seccomp, so
// what a reviewer reads is what runc loads.
package seccomp

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/opencontainers/runc/libcontainer/configs"
	libcontainerseccomp "github.com/opencontainers/runc/libcontainer/seccomp"
)

//go:embed profile.json
var profileJSON []byte

// profileFile is the layout of profile.json. Names of actions, operators and
// architectures are libseccomp's (SCMP_ACT_ALLOW, SCMP_CMP_MASKED_EQ, ...), as
// in the OCI runtime spec and Docker's profiles, and are converted by
// libcontainer's own functions.
type profileFile struct {
	Comment         string        `json:"comment"`
	DefaultAction   string        `json:"defaultAction"`
	DefaultErrnoRet *uint         `json:"defaultErrnoRet"`
	Architectures   []string      `json:"architectures"`
	Syscalls        []syscallRule `json:"syscalls"`
}

// syscallRule becomes one configs.Syscall per name. Arguments on different
// indexes must all match; give each alternative its own rule, because
// libcontainer turns two conditions on the same index into two rules (OR).
type syscallRule struct {
	Comment  string    `json:"comment"`
	Names    []string  `json:"names"`
	Action   string    `json:"action"`
	ErrnoRet *uint     `json:"errnoRet,omitempty"`
	Args     []argRule `json:"args,omitempty"`
}

// argRule is configs.Arg. For SCMP_CMP_MASKED_EQ, Value is the mask and
// ValueTwo the value the masked argument must equal.
type argRule struct {
	Index    uint   `json:"index"`
	Value    uint64 `json:"value"`
	ValueTwo uint64 `json:"valueTwo"`
	Op       string `json:"op"`
}

var parsed = sync.OnceValues(func() (*configs.Seccomp, error) {
	return parse(profileJSON)
})

// Profile returns the job seccomp profile for libcontainer's
// configs.Config.Seccomp. Each call returns a fresh deep copy that the caller
// may modify.
func Profile() (*configs.Seccomp, error) {
	if runtime.GOARCH != "amd64" {
		return nil, ErrUnsupportedArch
	}
	p, err := parsed()
	if err != nil {
		return nil, err
	}
	return deepCopy(p), nil
}

func parse(data []byte) (*configs.Seccomp, error) {
	var f profileFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidProfile, err)
	}
	defaultAction, err := libcontainerseccomp.ConvertStringToAction(f.DefaultAction)
	if err != nil {
		return nil, fmt.Errorf("%w: default action: %w", ErrInvalidProfile, err)
	}
	p := &configs.Seccomp{
		DefaultAction:   defaultAction,
		DefaultErrnoRet: f.DefaultErrnoRet,
	}
	for _, a := range f.Architectures {
		arch, err := libcontainerseccomp.ConvertStringToArch(a)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidProfile, err)
		}
		p.Architectures = append(p.Architectures, arch)
	}
	for i, r := range f.Syscalls {
		action, err := libcontainerseccomp.ConvertStringToAction(r.Action)
		if err != nil {
			return nil, fmt.Errorf("%w: syscalls[%d]: %w", ErrInvalidProfile, i, err)
		}
		var args []*configs.Arg
		for _, a := range r.Args {
			op, err := libcontainerseccomp.ConvertStringToOperator(a.Op)
			if err != nil {
				return nil, fmt.Errorf("%w: syscalls[%d]: %w", ErrInvalidProfile, i, err)
			}
			args = append(args, &configs.Arg{Index: a.Index, Value: a.Value, ValueTwo: a.ValueTwo, Op: op})
		}
		if len(r.Names) == 0 {
			return nil, fmt.Errorf("%w: syscalls[%d] names no system call", ErrInvalidProfile, i)
		}
		for _, name := range r.Names {
			p.Syscalls = append(p.Syscalls, &configs.Syscall{
				Name:     name,
				Action:   action,
				ErrnoRet: r.ErrnoRet,
				Args:     args,
			})
		}
	}
	return p, nil
}

func deepCopy(p *configs.Seccomp) *configs.Seccomp {
	c := *p
	c.Architectures = slices.Clone(p.Architectures)
	c.Flags = slices.Clone(p.Flags)
	c.DefaultErrnoRet = copyUint(p.DefaultErrnoRet)
	c.Syscalls = make([]*configs.Syscall, len(p.Syscalls))
	for i, s := range p.Syscalls {
		sc := *s
		sc.ErrnoRet = copyUint(s.ErrnoRet)
		sc.Args = nil
		for _, a := range s.Args {
			ac := *a
			sc.Args = append(sc.Args, &ac)
		}
		c.Syscalls[i] = &sc
	}
	return &c
}

func copyUint(p *uint) *uint {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
