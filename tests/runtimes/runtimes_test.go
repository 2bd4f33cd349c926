// Package runtimes_test runs every shipped runtime for real, through the /v1 HTTP API
// on a real engine holding every image: hello world, stdin, args, files in and out, a
// test-case run, a runtime error, a compile error and timeouts in both steps, and the
// memory limit. make test builds every image and sets SANDBOXD_IMAGES.
package runtimes_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"

	"github.com/sandboxd/sandboxd/api"
	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/runtimes"
	"github.com/sandboxd/sandboxd/sandbox"
	"github.com/sandboxd/sandboxd/server"
)

func TestEveryRuntime(t *testing.T) {
	images := testenv.Images(t)
	shipped, err := runtimes.Shipped()
	if err != nil {
		t.Fatal(err)
	}
	pools := map[string]int{}
	if n, err := strconv.Atoi(os.Getenv("SANDBOXD_TEST_POOL")); err == nil {
		for _, rt := range shipped {
			if rt.Bootstrap != "" {
				pools[rt.Name] = n
			}
		}
	}
	e := testenv.Engine(t, sandbox.Options{Images: images, Runtimes: shipped, PoolSizes: pools})
	srv := httptest.NewServer(server.New(server.NewGate(e, nil), server.Options{Runtimes: e.Runtimes}))
	defer srv.Close()

	var list api.Runtimes
	getJSON(t, srv.URL+"/v1/runtimes", &list)
	offered := map[string]api.Runtime{}
	for _, rt := range list.Runtimes {
		offered[rt.Name] = rt
	}
	// Every shipped runtime is offered (CI builds every image) and has its programs here.
	for _, rt := range shipped {
		if _, ok := offered[rt.Name]; !ok {
			t.Errorf("runtime %s (image %s) is not offered", rt.Name, rt.Image)
		}
		if _, ok := byRuntime[rt.Name]; !ok {
			t.Errorf("runtime %s has no test programs", rt.Name)
		}
	}
	for _, rt := range list.Runtimes {
		p := byRuntime[rt.Name]
		t.Run(rt.Name, func(t *testing.T) {
			if len(pools) > 0 && !rt.Warm {
				t.Skip("no warm bootstrap: the run without SANDBOXD_TEST_POOL covers it")
			}
			exec := func(t *testing.T, req api.ExecuteRequest) api.Result {
				t.Helper()
				req.Language = rt.Name
				return post(t, srv.URL, req)
			}
			data := []api.File{{Name: "data.txt", Content: "DATA\n"}}
			t.Run("hello", func(t *testing.T) {
				r := exec(t, api.ExecuteRequest{Code: &p.hello})
				if r.Status != "ok" || r.Stdout != "hello\n" || r.Runtime != rt.Name || r.Version != rt.Version {
					t.Errorf("%s %q %q %s %s", r.Status, r.Stdout, r.Stderr, r.Runtime, r.Version)
				}
				if rt.Compiled && (r.Compile == nil || r.Compile.Status != "ok") {
					t.Errorf("compile section %+v", r.Compile)
				}
				t.Logf("hello: wall %.1f ms, compile %v, warm %v", r.WallMS, compileMS(r), r.Warm)
			})
			t.Run("stdin args files collect", func(t *testing.T) {
				r := exec(t, api.ExecuteRequest{Code: &p.io, Stdin: "abc\n", Args: []string{"x", "y z"}, Files: data, Collect: []string{"out.txt"}})
				if r.Status != "ok" || r.Stdout != "abc x y z DATA\n" {
					t.Fatalf("%s %q %q %+v", r.Status, r.Stdout, r.Stderr, r.Compile)
				}
				if len(r.Files) != 1 || r.Files[0].Name != "out.txt" || r.Files[0].Content != base64.StdEncoding.EncodeToString([]byte("ok")) {
					t.Errorf("collected %+v", r.Files)
				}
			})
			t.Run("tests", func(t *testing.T) {
				r := exec(t, api.ExecuteRequest{Code: &p.io, Files: data, Tests: []api.Test{
					{Stdin: "abc\n", Args: []string{"1"}, ExpectedOutput: ptr("abc 1 DATA")},
					{Stdin: "xyz\n", ExpectedOutput: ptr("wrong")},
				}})
				if r.Status != "wrong_answer" || r.TestsPassed == nil || *r.TestsPassed != 1 || len(r.Tests) != 2 ||
					r.Tests[0].Verdict != "passed" || r.Tests[1].Verdict != "wrong_answer" || r.Tests[1].Stdout != "xyz DATA\n" {
					t.Errorf("%s %+v", r.Status, r.Tests)
				}
			})
			t.Run("runtime error", func(t *testing.T) {
				r := exec(t, api.ExecuteRequest{Code: &p.fail})
				if r.Status != "error" || r.ExitCode != 3 {
					t.Errorf("%s exit %d %q", r.Status, r.ExitCode, r.Stderr)
				}
			})
			t.Run("timeout", func(t *testing.T) {
				r := exec(t, api.ExecuteRequest{Code: &p.spin, Limits: &api.Limits{Timeout: raw(`"1s"`)}})
				if r.Status != "timeout" && r.Status != "cpu_limit" {
					t.Errorf("%s %q", r.Status, r.Stderr)
				}
			})
			t.Run("memory", func(t *testing.T) {
				r := exec(t, api.ExecuteRequest{Code: &p.hog, Limits: &api.Limits{Memory: raw(`"128MB"`), Timeout: raw("20")}})
				want := "memory_limit"
				if r.Status != want && r.Status != p.hogStatus {
					t.Errorf("%s (want %s) exit %d %q, compile %+v", r.Status, want, r.ExitCode, tail(r.Stderr), r.Compile)
				}
				// The kernel may charge a page or so past the limit before it reclaims or kills.
				if r.MemoryPeak > 128<<20+1<<20 {
					t.Errorf("peak %d over the limit", r.MemoryPeak)
				}
			})
			if !rt.Compiled {
				return
			}
			t.Run("compile error", func(t *testing.T) {
				r := exec(t, api.ExecuteRequest{Code: &p.broken})
				if r.Status != "compile_error" || r.Compile == nil || r.Compile.ExitCode == 0 || r.Compile.Stderr+r.Compile.Stdout == "" {
					t.Errorf("%s %+v", r.Status, r.Compile)
				}
				if r.Stdout != "" || r.WallMS != 0 {
					t.Errorf("the program ran: %+v", r.Outcome)
				}
			})
			t.Run("compile timeout", func(t *testing.T) {
				r := exec(t, api.ExecuteRequest{Code: &p.hello, Limits: &api.Limits{CompileTimeout: raw(`"10ms"`)}})
				if r.Status != "compile_timeout" || r.Compile == nil || r.Compile.Status != "timeout" {
					t.Errorf("%s %+v", r.Status, r.Compile)
				}
			})
		})
	}
}

func compileMS(r api.Result) any {
	if r.Compile == nil {
		return "-"
	}
	return r.Compile.WallMS
}

func tail(s string) string {
	if len(s) > 300 {
		return s[len(s)-300:]
	}
	return s
}

func ptr[T any](v T) *T { return &v }

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func post(t *testing.T, base string, req api.ExecuteRequest) api.Result {
	t.Helper()
	b, _ := json.Marshal(req)
	resp, err := http.Post(base+"/v1/execute", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r api.Result
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &r); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d: %v %s", resp.StatusCode, err, body)
	}
	return r
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// What code-interpreter users expect of the python image: numpy, pandas, scipy, PIL,
// and a matplotlib PNG saved to /work and collected.
func TestPythonScientificStack(t *testing.T) {
	images := testenv.Images(t)
	shipped, err := runtimes.Shipped()
	if err != nil {
		t.Fatal(err)
	}
	e := testenv.Engine(t, sandbox.Options{Images: images, Runtimes: shipped})
	srv := httptest.NewServer(server.New(server.NewGate(e, nil), server.Options{Runtimes: e.Runtimes}))
	defer srv.Close()
	code := `import numpy as np, pandas as pd, scipy.stats, PIL.Image
import matplotlib.pyplot as plt
a = np.arange(10)
df = pd.DataFrame({"x": a, "y": a ** 2})
print(int(df.y.sum()), round(float(scipy.stats.norm.cdf(0)), 2))
plt.plot(df.x, df.y)
plt.savefig("out/plot.png")
print(PIL.Image.open("out/plot.png").size)`
	r := post(t, srv.URL, api.ExecuteRequest{Code: &code, Files: []api.File{{Name: "out/.keep"}}, Collect: []string{"out/*.png"},
		Limits: &api.Limits{Timeout: raw(`"60s"`), CPUTime: raw(`"60s"`)}})
	if r.Status != "ok" || r.Stdout != "285 0.5\n(640, 480)\n" {
		t.Fatalf("%s %q %q", r.Status, r.Stdout, tail(r.Stderr))
	}
	if len(r.Files) != 1 || r.Files[0].Name != "out/plot.png" {
		t.Fatalf("collected %+v", r.Files)
	}
	png, err := base64.StdEncoding.DecodeString(r.Files[0].Content)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || int64(len(png)) != r.Files[0].Size {
		t.Errorf("not the PNG: %d bytes, %v", len(png), err)
	}
	t.Logf("numpy+pandas+scipy+matplotlib job: wall %.0f ms, cpu %.0f ms, peak %d MB", r.WallMS, r.CPUMS, r.MemoryPeak>>20)
}
