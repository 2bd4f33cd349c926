package seccomp

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// mustRefuse is the set the security issue names: never allowed, whatever
// the arguments.
var mustRefuse = []string{
	"ptrace", "process_vm_readv", "process_vm_writev",
	"unshare", "setns",
	"mount", "umount2", "pivot_root", "move_mount", "open_tree",
	"fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
	"keyctl", "add_key", "request_key",
	"bpf", "perf_event_open", "userfaultfd",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"reboot", "swapon", "swapoff",
	"open_by_handle_at", "name_to_handle_at", "acct",
	"settimeofday", "clock_settime", "adjtimex", "clock_adjtime",
	"syslog", "quotactl", "lookup_dcookie",
}

// pythonNeeds are calls glibc and CPython 3.11 make on every start, or for
// threads, subprocess and multiprocessing; they must be allowed outright.
var pythonNeeds = []string{
	"execve", "brk", "mmap", "munmap", "mprotect", "mremap", "madvise", "arch_prctl",
	"set_tid_address", "set_robust_list", "rseq", "futex", "prlimit64", "getrandom",
	"openat", "read", "write", "close", "close_range", "newfstatat", "fstat", "statx",
	"faccessat2", "lseek", "ioctl", "fcntl", "getdents64", "readlink", "getcwd",
	"rt_sigaction", "rt_sigprocmask", "sigaltstack", "sysinfo", "sched_getaffinity",
	"vfork", "wait4", "waitid", "pipe2", "dup2", "kill", "exit_group", "gettid",
	"epoll_create1", "epoll_ctl", "epoll_wait", "poll", "select", "pselect6",
	"memfd_create", "ftruncate", "unlink", "uname", "getuid", "getpid", "clock_gettime",
	"connect", "bind", "sendmsg", "recvmsg", "setsockopt",
}

const nsFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP

func mustProfile(t *testing.T) *configs.Seccomp {
	t.Helper()
	if runtime.GOARCH != "amd64" {
		t.Skipf("the profile is for x86_64 only, this is %s", runtime.GOARCH)
	}
	p, err := Profile()
	if err != nil {
		t.Fatalf("Profile: %v", err)
	}
	return p
}

func rulesFor(p *configs.Seccomp, name string) []*configs.Syscall {
	var rules []*configs.Syscall
	for _, s := range p.Syscalls {
		if s.Name == name {
			rules = append(rules, s)
		}
	}
	return rules
}

func TestProfileDefaults(t *testing.T) {
	p := mustProfile(t)
	if p.DefaultAction != configs.Errno || p.DefaultErrnoRet == nil || *p.DefaultErrnoRet != uint(unix.EPERM) {
		t.Errorf("default action %v errno %v, want errno EPERM", p.DefaultAction, p.DefaultErrnoRet)
	}
	if !slices.Equal(p.Architectures, []string{"amd64"}) {
		t.Errorf("architectures %q, want only amd64", p.Architectures)
	}
	if len(p.Flags) != 0 || p.ListenerPath != "" {
		t.Errorf("flags %v listener %q, want none", p.Flags, p.ListenerPath)
	}

	var raw profileFile
	if err := json.Unmarshal(profileJSON, &raw); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(raw.Architectures, []string{"SCMP_ARCH_X86_64"}) {
		t.Errorf("profile.json architectures %q, want only SCMP_ARCH_X86_64 (no x86, no x32)", raw.Architectures)
	}
	for i, r := range raw.Syscalls {
		if r.Comment == "" {
			t.Errorf("profile.json syscalls[%d] (%v) has no comment", i, r.Names)
		}
	}
}

func TestParseRejectsBadProfiles(t *testing.T) {
	for name, doc := range map[string]string{
		"not json":           `{`,
		"unknown field":      `{"defaultAction": "SCMP_ACT_ERRNO", "sycalls": []}`,
		"unknown action":     `{"defaultAction": "SCMP_ACT_MAYBE"}`,
		"unknown arch":       `{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_Z80"]}`,
		"unknown op":         `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"op": "SCMP_CMP_ALMOST"}]}]}`,
		"rule without names": `{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := parse([]byte(doc)); !errors.Is(err, ErrInvalidProfile) {
				t.Errorf("parse = %v, want ErrInvalidProfile", err)
			}
		})
	}
}

func TestProfileIsAFreshCopy(t *testing.T) {
	a := mustProfile(t)
	*a.DefaultErrnoRet = 99
	a.Architectures[0] = "x32"
	a.Syscalls[0].Name = "changed"
	for _, s := range a.Syscalls {
		if len(s.Args) > 0 {
			s.Args[0].Value = 99
		}
		if s.ErrnoRet != nil {
			*s.ErrnoRet = 99
		}
	}
	b := mustProfile(t)
	if *b.DefaultErrnoRet != uint(unix.EPERM) || b.Architectures[0] != "amd64" || b.Syscalls[0].Name == "changed" {
		t.Fatal("changing one Profile result changed the next")
	}
	for _, s := range b.Syscalls {
		if len(s.Args) > 0 && s.Args[0].Value == 99 || s.ErrnoRet != nil && *s.ErrnoRet == 99 {
			t.Fatalf("changing one Profile result changed rule %s of the next", s.Name)
		}
	}
}

func TestRulesAreWellFormed(t *testing.T) {
	p := mustProfile(t)
	seen := map[string]bool{}
	for _, s := range p.Syscalls {
		key := fmt.Sprintf("%s %v", s.Name, ruleString(s))
		if seen[key] {
			t.Errorf("duplicate rule %s", key)
		}
		seen[key] = true

		switch s.Action {
		case configs.Allow:
			if s.ErrnoRet != nil {
				t.Errorf("%s: allow rule with an errno", s.Name)
			}
		case configs.Errno:
			if s.ErrnoRet == nil {
				t.Errorf("%s: errno rule without errnoRet", s.Name)
			}
		default:
			// Kill, trap, trace or notify would break "refused calls fail
			// and the job goes on".
			t.Errorf("%s: action %v, want allow or errno", s.Name, s.Action)
		}

		// libcontainer splits conditions on the same argument into separate
		// rules, turning AND into OR.
		var indexes []uint
		for _, a := range s.Args {
			if a.Index > 5 || slices.Contains(indexes, a.Index) {
				t.Errorf("%s: argument index %d repeated or out of range", s.Name, a.Index)
			}
			indexes = append(indexes, a.Index)
		}
	}

	// A name is either allowed outright, allowed under conditions, or refused.
	byName := map[string][]*configs.Syscall{}
	for _, s := range p.Syscalls {
		byName[s.Name] = append(byName[s.Name], s)
	}
	for name, rules := range byName {
		if len(rules) == 1 {
			continue
		}
		for _, s := range rules {
			if s.Action != configs.Allow || len(s.Args) == 0 {
				t.Errorf("%s has %d rules, one of them %s: only conditional allow rules may share a name", name, len(rules), ruleString(s))
			}
		}
	}
}

func ruleString(s *configs.Syscall) string {
	out := fmt.Sprintf("action=%d", s.Action)
	if s.ErrnoRet != nil {
		out += fmt.Sprintf(" errno=%d", *s.ErrnoRet)
	}
	for _, a := range s.Args {
		out += fmt.Sprintf(" arg%d op%d %#x %#x", a.Index, a.Op, a.Value, a.ValueTwo)
	}
	return out
}

func TestRefusedSyscalls(t *testing.T) {
	p := mustProfile(t)
	for _, name := range mustRefuse {
		t.Run(name, func(t *testing.T) {
			for _, s := range rulesFor(p, name) {
				if s.Action == configs.Allow {
					t.Errorf("allowed: %s", ruleString(s))
				}
			}
		})
	}
	t.Run("clone3 gets ENOSYS", func(t *testing.T) {
		rules := rulesFor(p, "clone3")
		if len(rules) != 1 || rules[0].Action != configs.Errno || len(rules[0].Args) != 0 ||
			rules[0].ErrnoRet == nil || *rules[0].ErrnoRet != uint(unix.ENOSYS) {
			t.Errorf("clone3 rules %v, want one unconditional errno ENOSYS", rules)
		}
	})
}

// TestConditionalRules checks every allow rule of the calls the profile
// allows only for some arguments: each must pin down what the issue requires.
func TestConditionalRules(t *testing.T) {
	p := mustProfile(t)
	arg := func(s *configs.Syscall, index uint) *configs.Arg {
		for _, a := range s.Args {
			if a.Index == index {
				return a
			}
		}
		return nil
	}
	cases := map[string]func(s *configs.Syscall) error{
		"clone": func(s *configs.Syscall) error {
			a := arg(s, 0)
			if a == nil || a.Op != configs.MaskEqualTo || a.Value&nsFlags != nsFlags || a.ValueTwo&nsFlags != 0 {
				return errors.New("flags are not masked to exclude every namespace flag")
			}
			return nil
		},
		"personality": func(s *configs.Syscall) error {
			a := arg(s, 0)
			if a == nil || a.Op != configs.EqualTo || !slices.Contains([]uint64{0, 0x8, 0x20000, 0x20008, 0xffffffff}, a.Value) {
				return errors.New("persona is not one of Docker's allowed values")
			}
			return nil
		},
		"socketpair": func(s *configs.Syscall) error {
			if a := arg(s, 0); a == nil || a.Op != configs.EqualTo || a.Value != unix.AF_UNIX {
				return errors.New("family is not AF_UNIX")
			}
			return nil
		},
		"socket": func(s *configs.Syscall) error {
			family := arg(s, 0)
			if family == nil || family.Op != configs.EqualTo {
				return errors.New("family is not pinned")
			}
			switch family.Value {
			case unix.AF_NETLINK:
				if proto := arg(s, 2); proto == nil || proto.Op != configs.EqualTo || proto.Value != unix.NETLINK_ROUTE {
					return errors.New("netlink protocol is not NETLINK_ROUTE")
				}
				return nil
			case unix.AF_UNIX, unix.AF_INET, unix.AF_INET6:
			default:
				return fmt.Errorf("family %d allowed", family.Value)
			}
			typ := arg(s, 1)
			if typ == nil || typ.Op != configs.MaskEqualTo || typ.Value&0xf != 0xf ||
				!slices.Contains([]uint64{unix.SOCK_STREAM, unix.SOCK_DGRAM, unix.SOCK_SEQPACKET}, typ.ValueTwo) {
				return errors.New("type is not masked to stream, datagram or seqpacket")
			}
			return nil
		},
	}
	for name, check := range cases {
		t.Run(name, func(t *testing.T) {
			rules := rulesFor(p, name)
			if len(rules) == 0 {
				t.Fatal("no rule: always refused")
			}
			for _, s := range rules {
				if s.Action != configs.Allow {
					continue
				}
				if len(s.Args) == 0 {
					t.Errorf("allowed unconditionally")
				} else if err := check(s); err != nil {
					t.Errorf("%s: %v", ruleString(s), err)
				}
			}
		})
	}
}

func TestPythonBaselineAllowed(t *testing.T) {
	p := mustProfile(t)
	for _, name := range pythonNeeds {
		t.Run(name, func(t *testing.T) {
			if !slices.ContainsFunc(rulesFor(p, name), func(s *configs.Syscall) bool {
				return s.Action == configs.Allow && len(s.Args) == 0
			}) {
				t.Error("not allowed outright")
			}
		})
	}
}
