package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// Each job's share is the host's limit over twice max_jobs, for every /proc/sys/user
// count there is and the per-user rlimits that are not unlimited.
func TestKernelShares(t *testing.T) {
	dir := t.TempDir()
	for name, v := range map[string]string{"max_inotify_instances": "128\n", "max_user_namespaces": "15\n", "other": "9\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	own := func(res int) (unix.Rlimit, error) {
		switch res {
		case unix.RLIMIT_MSGQUEUE:
			return unix.Rlimit{Cur: 819200, Max: 819200}, nil
		case unix.RLIMIT_SIGPENDING:
			return unix.Rlimit{Cur: 1000, Max: 2000}, nil
		}
		return unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}, nil
	}
	s, err := kernelSharesFor(dir, 8, own)
	if err != nil {
		t.Fatal(err)
	}
	wantSysctl := map[string]string{"user.max_inotify_instances": "8", "user.max_user_namespaces": "0"}
	wantRlimits := []configs.Rlimit{{Type: unix.RLIMIT_MSGQUEUE, Soft: 51200, Hard: 51200}, {Type: unix.RLIMIT_SIGPENDING, Soft: 62, Hard: 62}}
	if !reflect.DeepEqual(s.sysctl, wantSysctl) || !reflect.DeepEqual(s.rlimits, wantRlimits) {
		t.Errorf("shares %v %v, want %v %v", s.sysctl, s.rlimits, wantSysctl, wantRlimits)
	}
	cfg := &configs.Config{Rlimits: []configs.Rlimit{{Type: unix.RLIMIT_CORE}}}
	s.apply(cfg)
	if len(cfg.Rlimits) != 3 || cfg.Sysctl["user.max_inotify_instances"] != "8" {
		t.Errorf("applied: %v %v", cfg.Rlimits, cfg.Sysctl)
	}
	if err := os.WriteFile(filepath.Join(dir, "max_bad"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := kernelSharesFor(dir, 8, own); err == nil {
		t.Error("an unreadable limit was ignored")
	}
	if _, err := kernelSharesFor(dir, 8, func(int) (unix.Rlimit, error) { return unix.Rlimit{}, errors.New("no") }); err == nil {
		t.Error("an rlimit that cannot be read was ignored")
	}
}

// Maximums above the daemon's own hard rlimits are lowered to them; others stay.
func TestFitOwnRlimits(t *testing.T) {
	p := DefaultPolicy()
	got, lowered := fitOwnRlimits(p, func(res int) (unix.Rlimit, error) {
		if res == unix.RLIMIT_NOFILE {
			return unix.Rlimit{Cur: 1024, Max: 20000}, nil
		}
		return unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}, nil
	})
	want := p
	want.Max.OpenFiles = 20000
	if got != want || !reflect.DeepEqual(lowered, []string{"open_files"}) {
		t.Errorf("got %+v lowered %v", got.Max, lowered)
	}
}

// Hard limits cover a job when none would have to be raised.
func TestLimitsCover(t *testing.T) {
	d, m := DefaultPolicy().Default, DefaultPolicy().Max
	if !m.covers(d) || !m.covers(m) || d.covers(m) {
		t.Error("covers is wrong about the default and maximum policies")
	}
	more := d
	more.Stack++
	if d.covers(more) {
		t.Error("a larger stack is covered")
	}
}
