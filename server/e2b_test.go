package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/sandbox"
	"github.com/sandboxd/sandboxd/server"
)

const e2bSDK = "@e2b/code-interpreter@2.8.0"

// The real @e2b/code-interpreter SDK, pointed at sandboxd by its own settings, creates a
// sandbox, runs code (onStdout, a PNG, a DataFrame, an error), uses a context and kills it.
func TestE2BCodeInterpreterSDK(t *testing.T) {
	testenv.SkipOnSlowCPU(t, "an IPython kernel with numpy and pandas takes minutes to start")
	e := testenv.Engine(t, sandbox.Options{})
	s, err := e.CreateSession(context.Background(), sandbox.SessionRequest{})
	if errors.Is(err, sandbox.ErrNoKernel) {
		t.Skip("the test rootfs has no ipykernel (set SANDBOXD_ROOTFS to the python image with python3-ipykernel)")
	}
	if err != nil {
		t.Fatal(err)
	}
	_, _ = e.DeleteSession(s.ID())
	mods := npmPackages(t, "e2b-code-interpreter-2.8.0", e2bSDK)
	ts := httptest.NewServer(server.New(e, server.Options{E2B: e}))
	t.Cleanup(ts.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "../tests/e2b/sandbox.cjs")
	cmd.Env = append(os.Environ(), "NODE_PATH="+mods, "E2B_API_KEY=e2b_sandboxd_test",
		"E2B_API_URL="+ts.URL+"/e2b/api", "E2B_SANDBOX_URL="+ts.URL+"/e2b/sandbox")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("client: %v\n%s\n%s", err, out, stderr)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var seen map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &seen); err != nil {
		t.Fatalf("client said %q", out)
	}
	t.Logf("client saw %s", lines[len(lines)-1])
	want := map[string]any{
		"created": true, "stdout": "x is 20\n", "text": "40", "count": 2.0, "png": "iVBORw0K", "html": true,
		"error": []any{"ZeroDivisionError", "division by zero"}, "contextFresh": "False", "contexts": 2.0,
		"contextsAfter": 1.0, "killed": true, "runningAfterKill": false,
	}
	for k, v := range want {
		if !reflect.DeepEqual(seen[k], v) {
			t.Errorf("%s: got %v, want %v", k, seen[k], v)
		}
	}
	if n := len(e.Sessions()); n != 0 {
		t.Errorf("%d sessions left after kill", n)
	}
	testenv.NoLeftovers(t, e)
}
