package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sandboxd/sandboxd/runtimes"
	"github.com/sandboxd/sandboxd/sandbox"
)

var (
	goJudgeBin     = flag.String("go-judge", "build/go-judge", "go-judge binary (scripts/go-judge.sh builds it); \"\" or missing skips its rows")
	goJudgePrefork = flag.Int("go-judge-prefork", 4, "go-judge -pre-fork: containers started before the first request")
	goJudgePar     = flag.Int("go-judge-parallelism", 8, "go-judge -parallelism: requests run at once (sandboxd's --max-jobs)")
)

// jobEnv is sandboxd's fixed job environment (sandbox/config.go), which a runtime's env
// is added to; the bare and go-judge rows give their python the same.
var jobEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/work", "LANG=C.UTF-8", "TMPDIR=/tmp"}

// goJudge is a running go-judge (github.com/criyle/go-judge) whose containers see the
// same image as sandboxd's python jobs: its /usr and /etc bound read-only, the image's
// /bin, /lib, /lib64 and /sbin symlinks, tmpfs /work and /tmp, /proc and the device
// nodes of go-judge's own default mounts.
type goJudge struct {
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has ended
	url    string
	dir    string
	prefix string // its cgroup, below each v1 hierarchy's root (or v2's), which it leaves behind
	logs   bytes.Buffer
	env    []string
	limits goJudgeLimits
	python string // its python's version, the image's
}

// goJudgeLimits are sandboxd's python defaults in go-judge's units: the same limits for
// both sides of a row.
type goJudgeLimits struct {
	cpuNS, clockNS, memory, stack, procs, cpuRate, output int64
	storage                                               int64
}

func pythonRuntime() (sandbox.Runtime, error) {
	shipped, err := runtimes.Shipped()
	if err != nil {
		return sandbox.Runtime{}, err
	}
	for _, rt := range shipped {
		if rt.Name == "python" {
			return rt, nil
		}
	}
	return sandbox.Runtime{}, errors.New("no python runtime shipped")
}

// startGoJudge starts go-judge with its documented pre-fork and parallelism options on
// 127.0.0.1. It returns nil, nil (after printing why) when there is no binary or it does
// not start.
func startGoJudge(rootfs string) (*goJudge, error) {
	if *goJudgeBin == "" {
		return nil, nil
	}
	if _, err := os.Stat(*goJudgeBin); err != nil {
		fmt.Printf("go-judge rows skipped: no binary at %s (scripts/go-judge.sh builds it; it needs the Go module proxy once)\n\n", *goJudgeBin)
		return nil, nil
	}
	binPath, err := filepath.Abs(*goJudgeBin) // it runs in its own dir
	if err != nil {
		return nil, err
	}
	rt, err := pythonRuntime()
	if err != nil {
		return nil, err
	}
	// sandboxd's defaults (README, Limits): 1 cpu, 10 s of CPU and of wall, 512 MiB,
	// 64 pids, 8 MiB stack, 64 MiB of tmpfs, 1 MiB of each output, 1024 open files,
	// 64 MiB file size.
	g := &goJudge{env: append(append([]string{}, jobEnv...), rt.Env...), limits: goJudgeLimits{
		cpuNS: 10e9, clockNS: 10e9, memory: 512 << 20, stack: 8 << 20, procs: 64, cpuRate: 1000,
		output: 1 << 20, storage: 64 << 20,
	}}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	g.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	if g.dir, err = os.MkdirTemp("", "sbxbench-gojudge-"); err != nil {
		return nil, err
	}
	g.prefix = fmt.Sprintf("sbxbench-gojudge-%d", port)
	tmpfs := fmt.Sprintf("size=%d,nr_inodes=%d", g.limits.storage, g.limits.storage/4096)
	var mounts strings.Builder
	fmt.Fprintf(&mounts, "mount:\n")
	for _, d := range []string{"usr", "etc"} {
		fmt.Fprintf(&mounts, "  - {type: bind, source: %q, target: /%s, readonly: true}\n", filepath.Join(rootfs, d), d)
	}
	for _, d := range []string{"null", "urandom", "random", "zero", "full"} {
		fmt.Fprintf(&mounts, "  - {type: bind, source: /dev/%s, target: /dev/%s}\n", d, d)
	}
	fmt.Fprintf(&mounts, "  - {type: tmpfs, target: /work, data: %q}\n  - {type: tmpfs, target: /tmp, data: %q}\n", tmpfs, tmpfs)
	fmt.Fprintf(&mounts, "proc: true\nsymLink:\n")
	for _, l := range [][2]string{{"/bin", "usr/bin"}, {"/lib", "usr/lib"}, {"/lib64", "usr/lib64"}, {"/sbin", "usr/sbin"},
		{"/dev/fd", "/proc/self/fd"}, {"/dev/stdin", "/proc/self/fd/0"}, {"/dev/stdout", "/proc/self/fd/1"}, {"/dev/stderr", "/proc/self/fd/2"}} {
		fmt.Fprintf(&mounts, "  - {linkPath: %s, target: %s}\n", l[0], l[1])
	}
	// uid 1000 as sandboxd's job user; the host name as sandboxd's.
	fmt.Fprintf(&mounts, "workDir: /work\nhostName: sandbox\ndomainName: sandbox\nuid: 1000\ngid: 1000\n")
	conf := filepath.Join(g.dir, "mount.yaml")
	if err := os.WriteFile(conf, []byte(mounts.String()), 0o644); err != nil {
		g.stop()
		return nil, err
	}
	g.cmd = exec.Command(binPath, "-http-addr", g.url[len("http://"):], "-mount-conf", conf,
		"-pre-fork", strconv.Itoa(*goJudgePrefork), "-parallelism", strconv.Itoa(*goJudgePar),
		"-cgroup-prefix", g.prefix, "-enable-cpu-rate", "-no-fallback", "-release", "-silent",
		"-open-file-limit", "1024", "-output-limit", "64m", "-dir", filepath.Join(g.dir, "files"))
	g.cmd.Dir = g.dir
	g.cmd.Stdout, g.cmd.Stderr = &g.logs, &g.logs
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := os.Mkdir(filepath.Join(g.dir, "files"), 0o700); err != nil {
		g.stop()
		return nil, err
	}
	if err := g.cmd.Start(); err != nil {
		g.cmd = nil
		g.stop()
		return nil, err
	}
	g.done = make(chan struct{})
	go func() { _ = g.cmd.Wait(); close(g.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(g.url + "/version")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) || exited(g.done) {
			g.stop()
			// Its rows are skipped, the rest of the bench goes on (a host where it cannot
			// make its cgroups, say).
			fmt.Printf("go-judge rows skipped: it did not start (%v):\n%s\n\n", err, lastLines(g.logs.String(), 10))
			return nil, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Both sides run the same python: the image's, the one bare python's chroot runs.
	const which = "import sys; print(sys.executable, sys.version, sys.prefix)"
	bare := exec.Command("/usr/bin/python3", "-c", which)
	bare.SysProcAttr = &syscall.SysProcAttr{Chroot: rootfs}
	bare.Dir = "/"
	want, err := bare.Output()
	if err != nil {
		g.stop()
		return nil, fmt.Errorf("python in the image: %w", err)
	}
	code := which
	got, err := g.run(http.DefaultClient, goJudgeFile{Content: &code}, "")
	if err != nil || got != string(want) {
		g.stop()
		return nil, fmt.Errorf("go-judge's python is not the image's: %q, want %q (%v)", got, want, err)
	}
	g.python = strings.Fields(got)[1]
	return g, nil
}

// version is what go-judge's /version says it is.
func (g *goJudge) version(c *http.Client) string {
	resp, err := c.Get(g.url + "/version")
	if err != nil {
		return "?"
	}
	defer resp.Body.Close()
	var v struct {
		BuildVersion string `json:"buildVersion"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&v)
	return v.BuildVersion
}

func (g *goJudge) stop() {
	if g.done != nil {
		_ = g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.done:
		case <-time.After(10 * time.Second):
			_ = g.cmd.Process.Kill()
			<-g.done
		}
	}
	// go-judge leaves its cgroups (prefix, prefix/api, prefix/containers) behind: remove
	// them, deepest first. They are ours: the prefix is this run's.
	if g.prefix != "" {
		roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + g.prefix)
		if _, err := os.Stat("/sys/fs/cgroup/" + g.prefix); err == nil {
			roots = append(roots, "/sys/fs/cgroup/"+g.prefix)
		}
		for _, root := range roots {
			var dirs []string
			_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- {
				_ = os.Remove(dirs[i])
			}
		}
	}
	if g.dir != "" {
		os.RemoveAll(g.dir)
	}
}

// goJudgeFile is one entry of a go-judge cmd's files (stdin, then the stdout and stderr
// collectors) or copyIn.
type goJudgeFile struct {
	Content *string `json:"content,omitempty"`
	FileID  string  `json:"fileId,omitempty"`
	Name    string  `json:"name,omitempty"`
	Max     int64   `json:"max,omitempty"`
}

// cmd is one go-judge command running main.py (from content, or from a file uploaded
// once) on stdin, with the row's limits.
func (g *goJudge) command(main goJudgeFile, stdin string) map[string]any {
	return map[string]any{
		"args":         []string{"/usr/bin/python3", "main.py"},
		"env":          g.env,
		"files":        []goJudgeFile{{Content: &stdin}, {Name: "stdout", Max: g.limits.output}, {Name: "stderr", Max: g.limits.output}},
		"cpuLimit":     g.limits.cpuNS,
		"clockLimit":   g.limits.clockNS,
		"memoryLimit":  g.limits.memory,
		"stackLimit":   g.limits.stack,
		"procLimit":    g.limits.procs,
		"cpuRateLimit": g.limits.cpuRate,
		"copyIn":       map[string]goJudgeFile{"main.py": main},
	}
}

// run sends one /run request of one command and returns its stdout; anything but
// Accepted is an error.
func (g *goJudge) run(c *http.Client, main goJudgeFile, stdin string) (string, error) {
	body, err := json.Marshal(map[string]any{"cmd": []any{g.command(main, stdin)}})
	if err != nil {
		return "", err
	}
	resp, err := c.Post(g.url+"/run", "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var res []struct {
		Status string            `json:"status"`
		Error  string            `json:"error"`
		Files  map[string]string `json:"files"`
	}
	err = json.NewDecoder(resp.Body).Decode(&res)
	_, _ = io.Copy(io.Discard, resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || len(res) != 1 {
		return "", fmt.Errorf("go-judge /run: HTTP %d: %v", resp.StatusCode, err)
	}
	if res[0].Status != "Accepted" {
		return "", fmt.Errorf("go-judge /run: %s %s stderr %q", res[0].Status, res[0].Error, res[0].Files["stderr"])
	}
	return res[0].Files["stdout"], nil
}

// upload puts a file into go-judge's file store (POST /file) and returns its id, as a
// judge does with a submission it runs on many test cases.
func (g *goJudge) upload(c *http.Client, name, content string) (string, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("file", name)
	if err == nil {
		_, err = io.WriteString(fw, content)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return "", err
	}
	resp, err := c.Post(g.url+"/file", mw.FormDataContentType(), &body)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var id string
	if err := json.NewDecoder(resp.Body).Decode(&id); err != nil || resp.StatusCode != http.StatusOK || id == "" {
		return "", fmt.Errorf("go-judge POST /file: HTTP %d: %v", resp.StatusCode, err)
	}
	return id, nil
}

func (g *goJudge) hello(c *http.Client) error {
	code := hello
	out, err := g.run(c, goJudgeFile{Content: &code}, "")
	if err == nil && out != "hello\n" {
		err = fmt.Errorf("go-judge printed %q", out)
	}
	return err
}

// goJudgeRow starts the go-judge row's name (its version follows).
const goJudgeRow = "go-judge"

// figures are one hello-world row's: latency, and jobs/s by 1, 2 and 4 clients (0: not
// measured).
type figures struct {
	p50, p95 float64
	jobs     [3]float64
}

// line prints a row with its ratios to bare python's p50 and to go-judge's figures.
func (f figures) line(name string, bareP50 float64, gj *figures) string {
	num := func(v float64) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", v)
	}
	p50gj, jobsgj := "-", "-"
	if gj != nil {
		p50gj = fmt.Sprintf("%.2fx", f.p50/gj.p50)
		var parts []string
		for i, v := range f.jobs {
			if v == 0 || gj.jobs[i] == 0 {
				parts = append(parts, "-")
				continue
			}
			parts = append(parts, fmt.Sprintf("%.2f", v/gj.jobs[i]))
		}
		jobsgj = strings.Join(parts, "/")
	}
	return fmt.Sprintf("%-28s %7.1f %7.1f %8s %8s %8s %8.2fx %7s %18s", name, f.p50, f.p95,
		num(f.jobs[0]), num(f.jobs[1]), num(f.jobs[2]), f.p50/bareP50, p50gj, jobsgj)
}

func lastLines(s string, k int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-k):], "\n")
}

func exited(done chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}
