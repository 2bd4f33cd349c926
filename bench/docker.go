package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

var dockerRowOn = flag.Bool("docker", true, "a `docker run --rm` per job row, when a Docker daemon answers")

// dockerRunner is `docker run --rm` per job, as the two seed projects run a job, on the
// same image (imported from the rootfs tarball once, tagged by its hash) with sandboxd's
// default limits. It returns the reason instead when there is no Docker daemon.
func dockerRunner(tarball string) (func() error, string) {
	if _, err := exec.LookPath("docker"); err != nil {
		return nil, "no docker command"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		return nil, fmt.Sprintf("no Docker daemon answers (docker info: %s)", strings.TrimSpace(string(out)))
	}
	f, err := os.Open(tarball)
	if err != nil {
		return nil, err.Error()
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return nil, err.Error()
	}
	image := "sbxbench-python:" + hex.EncodeToString(h.Sum(nil))[:12]
	if exec.Command("docker", "image", "inspect", image).Run() != nil {
		imp := exec.Command("sh", "-c", `zstd -dc "$1" | docker import - "$2"`, "sh", tarball, image)
		if out, err := imp.CombinedOutput(); err != nil {
			return nil, fmt.Sprintf("docker import failed: %v: %s", err, out)
		}
	}
	rt, err := pythonRuntime()
	if err != nil {
		return nil, err.Error()
	}
	args := []string{"run", "--rm", "--network", "none", "--cpus", "1", "--memory", "512m", "--memory-swap", "512m",
		"--pids-limit", "64", "--read-only", "--tmpfs", "/work:size=64m", "--tmpfs", "/tmp:size=64m",
		"--user", "1000:1000", "--workdir", "/work", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"}
	for _, kv := range append(append([]string{}, jobEnv...), rt.Env...) {
		args = append(args, "--env", kv)
	}
	args = append(args, image, "/usr/bin/python3", "-c", hello)
	return func() error { return runHello(exec.Command("docker", args...)) }, ""
}
