// Package testenv gives tests a real engine on the real root filesystem, and checks
// that jobs leave nothing behind. Tests that need it skip, saying why, when not root or
// when no rootfs tarball is given (make test gives one in SANDBOXD_ROOTFS).
package testenv

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/rootfs"
	"github.com/sandboxd/sandboxd/sandbox"
	"github.com/sandboxd/sandboxd/sandbox/seccomp"
)

var (
	rootfsOnce sync.Once
	rootfsPath string
	rootfsErr  error
	engines    atomic.Int64
)

// Tarball returns the test rootfs tarball (SANDBOXD_ROOTFS), or skips the test, saying
// why, unless it runs as root with SANDBOXD_ROOTFS set (make test sets it).
func Tarball(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: starts real containers")
	}
	tarball := os.Getenv("SANDBOXD_ROOTFS")
	if tarball == "" {
		t.Skip("SANDBOXD_ROOTFS is not set: run `make test`, which builds the rootfs")
	}
	return tarball
}

// StateDir is where tests keep state across runs: SANDBOXD_TEST_STATE, default
// /var/tmp/sandboxd-test.
func StateDir() string {
	if state := os.Getenv("SANDBOXD_TEST_STATE"); state != "" {
		return state
	}
	return "/var/tmp/sandboxd-test"
}

// Rootfs returns the unpacked test root filesystem, importing SANDBOXD_ROOTFS once into a
// store that persists across runs (SANDBOXD_TEST_STATE, default /var/tmp/sandboxd-test).
func Rootfs(t testing.TB) string {
	t.Helper()
	tarball := Tarball(t)
	rootfsOnce.Do(func() {
		state := StateDir()
		if err := os.MkdirAll(state, 0o711); err != nil {
			rootfsErr = err
			return
		}
		store, err := rootfs.NewStore(filepath.Join(state, "rootfs"), rootfs.Options{})
		if err != nil {
			rootfsErr = err
			return
		}
		img, err := store.Import(context.Background(), tarball)
		rootfsPath, rootfsErr = img.Path, err
	})
	if rootfsErr != nil {
		t.Fatalf("import test rootfs %s: %v", tarball, rootfsErr)
	}
	return rootfsPath
}

var (
	imagesOnce sync.Once
	images     map[string]string
	imagesErr  error
)

// Images returns every runtime image of SANDBOXD_IMAGES (a directory of
// <image>.tar.zst, as make rootfs builds them), unpacked once into the persistent test
// store, by image name; or skips the test, saying why.
func Images(t testing.TB) map[string]string {
	t.Helper()
	Tarball(t) // root, and a rootfs for the store
	dir := os.Getenv("SANDBOXD_IMAGES")
	if dir == "" {
		t.Skip("SANDBOXD_IMAGES is not set: run `make test`, which builds every image")
	}
	imagesOnce.Do(func() {
		state := StateDir()
		store, err := rootfs.NewStore(filepath.Join(state, "rootfs"), rootfs.Options{})
		if err != nil {
			imagesErr = err
			return
		}
		tarballs, err := filepath.Glob(filepath.Join(dir, "*.tar.zst"))
		if err != nil || len(tarballs) == 0 {
			imagesErr = fmt.Errorf("no images in %s (%v)", dir, err)
			return
		}
		images = map[string]string{}
		for _, tb := range tarballs {
			img, err := store.Import(context.Background(), tb)
			if err != nil {
				imagesErr = fmt.Errorf("import %s: %w", tb, err)
				return
			}
			images[strings.TrimSuffix(filepath.Base(tb), ".tar.zst")] = img.Path
		}
	})
	if imagesErr != nil {
		t.Fatalf("test images: %v", imagesErr)
	}
	return images
}

// Engine starts a real engine for the test with its own run dir and jobs cgroup (so test
// binaries running in parallel never see each other's jobs), the real seccomp profile,
// and defaults for what opts leaves zero. At the end it checks that nothing is left.
func Engine(t testing.TB, opts sandbox.Options) *sandbox.Engine {
	t.Helper()
	if opts.Images == nil {
		opts.Rootfs = Rootfs(t)
	}
	if opts.RunDir == "" {
		opts.RunDir = RunDir(t)
	}
	if opts.CgroupName == "" {
		opts.CgroupName = fmt.Sprintf("sandboxd-test-%d-%d", os.Getpid(), engines.Add(1))
	}
	if opts.Seccomp == nil {
		prof, err := seccomp.Profile()
		if err != nil {
			t.Fatalf("seccomp profile: %v", err)
		}
		opts.Seccomp = prof
	}
	if opts.MaxJobs == 0 {
		opts.MaxJobs = 4
	}
	// SANDBOXD_TEST_POOL runs the same tests on warm containers (make test runs both).
	if n, err := strconv.Atoi(os.Getenv("SANDBOXD_TEST_POOL")); err == nil && opts.PoolSize == 0 {
		opts.PoolSize = n
	}
	// SANDBOXD_TEST_FORK=1 makes python's pool fork servers (a pool of 2 if none is set).
	if ForkServer() {
		opts.ForkServer = true
		if opts.PoolSize == 0 {
			opts.PoolSize = 2
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	e, err := sandbox.New(opts)
	if err != nil {
		t.Fatalf("sandbox.New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := e.Close(ctx); err != nil {
			t.Errorf("close engine: %v", err)
		}
		NoLeftovers(t, e)
	})
	return e
}

// RunDir makes a run dir jobs can reach: t.TempDir's parent is private (0700), and jobs'
// user-namespaced root must be able to search every directory down to <run-dir>/root.
func RunDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sandboxd-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // runs after the engine's Close
	return dir
}

// NoLeftovers fails the test if any job left a container, mount, storage dir or cgroup.
func NoLeftovers(t testing.TB, e *sandbox.Engine) {
	t.Helper()
	e.Settle() // teardown finishes just after a result is returned
	left, err := e.Leftovers()
	if err != nil {
		t.Fatalf("list leftovers: %v", err)
	}
	if len(left) > 0 {
		t.Errorf("jobs left behind: %v", left)
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// SkipOnSlowCPU skips a test that cannot finish in reasonable time on an emulated CPU
// (SANDBOXD_TEST_SLOW_CPU, which the VM stage sets under TCG), saying why.
func SkipOnSlowCPU(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("SANDBOXD_TEST_SLOW_CPU") != "" {
		t.Skipf("%s; this CPU is emulated (SANDBOXD_TEST_SLOW_CPU)", why)
	}
}

// ForkServer says whether the suites run with python's pool as fork servers
// (SANDBOXD_TEST_FORK=1).
func ForkServer() bool { return os.Getenv("SANDBOXD_TEST_FORK") == "1" }

// FreeAddr is a loopback TCP address free at the moment of the call, for a process the
// test starts (which may still lose it to another: callers retry or accept the rare flake).
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
