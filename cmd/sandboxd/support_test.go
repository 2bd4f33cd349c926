package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A sandboxd built without seccomp support (no -tags seccomp) refuses to start, saying
// how to build it, instead of serving and failing every job.
func TestRefusesWithoutSeccomp(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go tool to build a sandboxd without seccomp")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sandboxd")
	build := exec.Command(gobin, "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build without tags: %v\n%s", err, out)
	}
	tarball := filepath.Join(dir, "rootfs.tar")
	if err := os.WriteFile(tarball, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "api.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--rootfs", tarball, "--state-dir", filepath.Join(dir, "state"),
		"--run-dir", filepath.Join(dir, "run"), "--listen", "unix:"+sock)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("want exit status 1, got %v; output:\n%s", err, stderr.String())
	}
	out := stderr.String()
	if !strings.Contains(out, "seccomp support is not compiled in") || !strings.Contains(out, "make build") {
		t.Errorf("the refusal does not say how to build it:\n%s", out)
	}
	if strings.Contains(out, "ready") {
		t.Errorf("it said ready:\n%s", out)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("it made its socket: %v", err)
	}
}
