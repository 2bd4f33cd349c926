package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/sandbox"
	"github.com/sandboxd/sandboxd/server"
)

// The npm packages the Jupyter client test installs, pinned, and where (a cache kept
// across runs: SANDBOXD_NPM_CACHE, default /var/cache/sandboxd-npm).
const (
	jupyterServices = "@jupyterlab/services@7.6.6"
	nodeWS          = "ws@8.23.0"
)

// npmPackages installs pkgs into a cache dir named for them, once, and returns its
// node_modules; it skips the test, saying why, without node or npm or the registry.
func npmPackages(t *testing.T, name string, pkgs ...string) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: the real-client test needs Node.js", tool)
		}
	}
	cache := os.Getenv("SANDBOXD_NPM_CACHE")
	if cache == "" {
		cache = "/var/cache/sandboxd-npm"
	}
	dir := filepath.Join(cache, name)
	mods := filepath.Join(dir, "node_modules")
	if _, err := os.Stat(filepath.Join(mods, ".package-lock.json")); err == nil {
		return mods
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "package.json"), []byte(`{"name":"sandboxd-test-client","private":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", append([]string{"install", "--no-audit", "--no-fund", "--prefix", dir}, pkgs...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("npm install %v failed (is the npm registry reachable?): %v\n%s", pkgs, err, out)
	}
	return mods
}

// The real @jupyterlab/services client, through its KernelManager, against the Jupyter
// front on a real kernel: state, output, a DataFrame's HTML, a matplotlib PNG, an
// error, an interrupt mid-sleep, a restart and a shutdown.
func TestJupyterServicesClient(t *testing.T) {
	testenv.SkipOnSlowCPU(t, "an IPython kernel with numpy and pandas takes minutes to start")
	e := testenv.Engine(t, sandbox.Options{})
	if _, err := e.CreateSession(context.Background(), sandbox.SessionRequest{}); err != nil {
		if errors.Is(err, sandbox.ErrNoKernel) {
			t.Skip("the test rootfs has no ipykernel (set SANDBOXD_ROOTFS to the python image with python3-ipykernel)")
		}
		t.Fatal(err)
	}
	for _, s := range e.Sessions() {
		_, _ = e.DeleteSession(s.ID())
	}
	mods := npmPackages(t, "jupyterlab-services-7.6.6", jupyterServices, nodeWS)
	// The server's errors go to the test's log: a 500 the client sees is explained there.
	logs := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	ts := httptest.NewServer(server.New(e, server.Options{Sessions: e, Jupyter: e, Logger: logs}))
	t.Cleanup(ts.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "../tests/jupyter/kernel.cjs", ts.URL+"/")
	cmd.Env = append(os.Environ(), "NODE_PATH="+mods)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("client: %v\n%s\n%s", err, out, stderr)
	}
	// The library logs to stdout too; the script's answer is its last line.
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	out = []byte(lines[len(lines)-1])
	var seen map[string]any
	if err := json.Unmarshal(out, &seen); err != nil {
		t.Fatalf("client said %q", out)
	}
	t.Logf("client saw %s", out)
	want := map[string]any{
		"language":             "python",
		"state":                map[string]any{"stdout": "x is 20\n", "count": 2.0, "results": []any{[]any{"text/plain"}}},
		"dataframe":            true,
		"png":                  "iVBORw0K",
		"error":                []any{"error", "ZeroDivisionError"},
		"interrupt":            []any{"error", "KeyboardInterrupt", true},
		"afterInterrupt":       true,
		"restart":              "False",
		"shutdown":             true,
		"runningAfterShutdown": 0.0,
	}
	for k, v := range want {
		if !reflect.DeepEqual(seen[k], v) {
			t.Errorf("%s: got %v, want %v", k, seen[k], v)
		}
	}
	if n := len(e.Sessions()); n != 0 {
		t.Errorf("%d sessions left after shutdown", n)
	}
	testenv.NoLeftovers(t, e)
}
