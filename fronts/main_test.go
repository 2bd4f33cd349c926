// Package fronts_test proves the Piston and Judge0 fronts against a real daemon with
// the fronts' real clients: the npm piston-client and ws packages (pinned), driven by
// node, and Judge0's documented requests. It needs root, the static daemon binary
// (SANDBOXD_BIN, default the repository's bin/sandboxd) and the rootfs tarball
// (SANDBOXD_ROOTFS); without them, or without node and npm, the tests skip and say why.
package fronts_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The pinned npm packages the proof runs.
const (
	pistonClient = "piston-client@1.0.2"
	wsPackage    = "ws@8.18.3"
)

// judge0Token is the daemon's judge0_auth_token_file content.
const judge0Token = "fronts-test-judge0-token"

var (
	skipReason string
	daemonURL  string
	daemonLog  string
	runtimes   []v1Runtime // GET /v1/runtimes
)

type v1Runtime struct {
	Name     string   `json:"name"`
	Version  string   `json:"version"`
	Aliases  []string `json:"aliases"`
	Compiled bool     `json:"compiled"`
}

func TestMain(m *testing.M) {
	code := func() int {
		stop, reason, err := start()
		if err != nil {
			fmt.Fprintln(os.Stderr, "fronts: start daemon:", err)
			return 1
		}
		skipReason = reason
		defer stop()
		return m.Run()
	}()
	os.Exit(code)
}

// start runs bin/sandboxd on a loopback port with its own state dir, run dir and
// cgroup name. A non-empty reason means the suite skips.
func start() (stop func(), reason string, err error) {
	stop = func() {}
	if os.Geteuid() != 0 {
		return stop, "the fronts' end-to-end tests need root: they start the real daemon", nil
	}
	bin := os.Getenv("SANDBOXD_BIN")
	if bin == "" {
		bin = "../bin/sandboxd"
	}
	tarball := os.Getenv("SANDBOXD_ROOTFS")
	if tarball == "" {
		return stop, "SANDBOXD_ROOTFS is not set: run `make test`, which builds the rootfs and bin/sandboxd", nil
	}
	for _, p := range []*string{&bin, &tarball} {
		if *p, err = filepath.Abs(*p); err != nil {
			return stop, "", err
		}
		if _, err := os.Stat(*p); err != nil {
			return stop, fmt.Sprintf("%s is missing (SANDBOXD_BIN / SANDBOXD_ROOTFS): run `make build rootfs`", *p), nil
		}
	}
	dir, err := os.MkdirTemp("", "sandboxd-fronts-")
	if err != nil {
		return stop, "", err
	}
	if err := os.Chmod(dir, 0o711); err != nil { // jobs must be able to reach the run dir
		return stop, "", err
	}
	state := os.Getenv("SANDBOXD_FRONTS_STATE") // kept between runs: the unpacked rootfs
	if state == "" {
		state = "/var/tmp/sandboxd-fronts-test"
	}
	tokFile := filepath.Join(dir, "judge0.token")
	conf := filepath.Join(dir, "sandboxd.toml")
	if err := os.WriteFile(tokFile, []byte(judge0Token+"\n"), 0o600); err != nil {
		return stop, "", err
	}
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("judge0_auth_token_file = %q\n", tokFile)), 0o600); err != nil {
		return stop, "", err
	}
	addr, err := freePort()
	if err != nil {
		return stop, "", err
	}
	daemonLog = filepath.Join(dir, "daemon.log")
	logf, err := os.Create(daemonLog)
	if err != nil {
		return stop, "", err
	}
	cmd := exec.Command(bin, "--config", conf, "--rootfs", tarball, "--state-dir", state,
		"--run-dir", filepath.Join(dir, "run"), "--listen", addr, "--pool-size", "2",
		"--cgroup-name", fmt.Sprintf("sandboxd-fronts-%d", os.Getpid()), "--max-jobs", "4", "--max-queue", "64")
	// Other runtimes' images and definitions, where the run has them (make test passes
	// SANDBOXD_IMAGES); without, python and bash on the rootfs.
	if dir := os.Getenv("SANDBOXD_IMAGES"); dir != "" {
		cmd.Args = append(cmd.Args, "--images-dir", dir)
	}
	if dir := os.Getenv("SANDBOXD_RUNTIMES_DIR"); dir != "" {
		cmd.Args = append(cmd.Args, "--runtimes-dir", dir)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// A test binary killed before TestMain's stop (a timeout, a closed pipe) must not
	// leave the daemon running: it drains on SIGTERM as under systemd.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return stop, "", err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop = func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if os.Getenv("SANDBOXD_FRONTS_KEEP") == "" {
			os.RemoveAll(dir)
		}
	}
	daemonURL = "http://" + addr
	deadline := time.Now().Add(3 * time.Minute)
	for {
		select {
		case <-done:
			return stop, "", fmt.Errorf("the daemon exited: %s", tail(daemonLog))
		default:
		}
		if resp, err := http.Get(daemonURL + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			stop()
			return func() {}, "", fmt.Errorf("no /healthz within 3m: %s", tail(daemonLog))
		}
		time.Sleep(200 * time.Millisecond)
	}
	var rts struct {
		Runtimes []v1Runtime `json:"runtimes"`
	}
	if err := getJSON(daemonURL+"/v1/runtimes", &rts); err != nil {
		stop()
		return func() {}, "", err
	}
	runtimes = rts.Runtimes
	return stop, "", nil
}

func need(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %s %s", url, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// installed reports whether a runtime named name (or aliased so) is installed.
func installed(name string) (v1Runtime, bool) {
	for _, rt := range runtimes {
		if rt.Name == name {
			return rt, true
		}
		for _, a := range rt.Aliases {
			if a == name {
				return rt, true
			}
		}
	}
	return v1Runtime{}, false
}

// npmDir installs the pinned packages once into a cache (SANDBOXD_NPM_CACHE, default
// /var/cache/sandboxd-npm) and returns the directory holding their node_modules; it
// skips the test when node or npm is missing or the registry cannot be reached.
func npmDir(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: the proof runs the real npm clients", tool)
		}
	}
	cache := os.Getenv("SANDBOXD_NPM_CACHE")
	if cache == "" {
		cache = "/var/cache/sandboxd-npm"
	}
	dir := filepath.Join(cache, strings.NewReplacer("@", "-", "/", "-").Replace(pistonClient+"+"+wsPackage))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "piston-client", "package.json")); err == nil {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "ws", "package.json")); err == nil {
			return dir
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--prefix", dir, pistonClient, wsPackage)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Skipf("npm install %s %s failed (is the npm registry reachable?): %v\n%s", pistonClient, wsPackage, err, out)
	}
	return dir
}

// node runs a script from testdata beside the installed packages with args, and
// decodes its one line of JSON output into v.
func node(t *testing.T, script string, v any, args ...string) {
	t.Helper()
	dir := npmDir(t)
	src, err := os.ReadFile(filepath.Join("testdata", script))
	if err != nil {
		t.Fatal(err)
	}
	// ESM resolves packages from the script's own directory upwards.
	path := filepath.Join(dir, script)
	if err := os.WriteFile(path, src, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{path}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node %s: %v\nstdout: %s\nstderr: %s", script, err, stdout.String(), stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), v); err != nil {
		t.Fatalf("node %s: output is not JSON: %v\n%s\nstderr: %s", script, err, stdout.String(), stderr.String())
	}
}

// hello is a program per language that prints "hello from <language>" and then its
// arguments, one per line; the table covers every runtime sandboxd ships.
var hello = map[string]string{
	"python":     "import sys\nprint('hello from python')\nfor a in sys.argv[1:]: print(a)\n",
	"bash":       "echo 'hello from bash'\nfor a in \"$@\"; do echo \"$a\"; done\n",
	"javascript": "console.log('hello from javascript');\nfor (const a of process.argv.slice(2)) console.log(a);\n",
	"typescript": "const greeting: string = 'hello from typescript';\nconsole.log(greeting);\nfor (const a of process.argv.slice(2)) console.log(a);\n",
	"c":          "#include <stdio.h>\nint main(int argc, char **argv) {\n  puts(\"hello from c\");\n  for (int i = 1; i < argc; i++) puts(argv[i]);\n  return 0;\n}\n",
	"c++":        "#include <iostream>\nint main(int argc, char **argv) {\n  std::cout << \"hello from c++\" << std::endl;\n  for (int i = 1; i < argc; i++) std::cout << argv[i] << std::endl;\n}\n",
	"java":       "public class Main {\n  public static void main(String[] args) {\n    System.out.println(\"hello from java\");\n    for (String a : args) System.out.println(a);\n  }\n}\n",
	"go":         "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nfunc main() {\n\tfmt.Println(\"hello from go\")\n\tfor _, a := range os.Args[1:] {\n\t\tfmt.Println(a)\n\t}\n}\n",
	"rust":       "fn main() {\n    println!(\"hello from rust\");\n    for a in std::env::args().skip(1) {\n        println!(\"{}\", a);\n    }\n}\n",
	"ruby":       "puts 'hello from ruby'\nARGV.each { |a| puts a }\n",
}

// helloFor returns the hello program for an installed runtime, by name or alias.
func helloFor(rt v1Runtime) (string, string, bool) {
	for _, n := range append([]string{rt.Name}, rt.Aliases...) {
		if code, ok := hello[n]; ok {
			return n, code, true
		}
	}
	if rt.Name == "cpp" {
		return "c++", hello["c++"], true
	}
	return "", "", false
}

func post(t *testing.T, url string, body any, hdr ...string) (int, []byte) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	return do(t, http.MethodPost, url, r, hdr...)
}

func do(t *testing.T, method, url string, body io.Reader, hdr ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}
