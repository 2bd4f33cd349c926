package runtimes_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/runtimes"
	"github.com/sandboxd/sandboxd/sandbox"
)

// warmCases are, per runtime with a warm bootstrap, programs whose every observable
// (stdout, stderr, exit code, status) must be the same on a pooled container as on a
// fresh one. sandbox/pool_test.go holds python's long list; these add argv and files.
var warmCases = map[string][]sandbox.Request{
	"python": {
		{Files: []sandbox.File{{Name: "src/app.py", Content: []byte("import sys, os\nfrom helper import x\nprint(sys.argv, __file__, sys.path[0], x, os.getcwd())")},
			{Name: "src/helper.py", Content: []byte("x = 42")}}, Args: []string{"-v", "a b"}},
		{Code: "import sys\nprint(sys.argv)\nprint(input())", Args: []string{"only"}, Stdin: []byte("in\n")},
	},
	"javascript": {
		{Code: "console.log(process.argv.slice(1), __filename, __dirname, require.main === module, process.cwd())", Args: []string{"x", "y z"}},
		{Files: []sandbox.File{{Name: "lib/app.js", Content: []byte("const h = require('./h'); console.log(h, module.id, require.main.filename)")},
			{Name: "lib/h.js", Content: []byte("module.exports = 'helper'")}}},
		{Code: "let s = ''; process.stdin.on('data', d => s += d); process.stdin.on('end', () => console.log(JSON.stringify(s)))", Stdin: []byte("line 1\nline 2\x00\n")},
		{Code: "console.error('err'); process.exitCode = 7"},
		{Code: "function f() { throw new Error('boom') }\nf()"},
		{Code: "setTimeout(() => console.log('later'), 100); console.log('now')"},
		{Code: "syntax error here("},
		{Code: "process.kill(process.pid, 'SIGTERM')"},
		{Code: "console.log(typeof require, typeof module, typeof exports, this === module.exports)"},
		{Code: "Promise.reject(new Error('unhandled'))"},
	},
}

func TestWarmBehavesLikeColdEveryBootstrap(t *testing.T) {
	images := testenv.Images(t)
	shipped, err := runtimes.Shipped()
	if err != nil {
		t.Fatal(err)
	}
	pools := map[string]int{}
	for _, rt := range shipped {
		if rt.Bootstrap != "" {
			pools[rt.Name] = 1
			if len(warmCases[rt.Name]) == 0 {
				t.Errorf("runtime %s has a bootstrap but no warm-vs-cold cases", rt.Name)
			}
		}
	}
	cold := testenv.Engine(t, sandbox.Options{Images: images, Runtimes: shipped, PoolSize: -1, PoolSizes: map[string]int{}})
	warm := testenv.Engine(t, sandbox.Options{Images: images, Runtimes: shipped, PoolSizes: pools})
	// Python's reprs hold addresses. Node's stack traces end in node's own frames below
	// the user's code, which differ (the bootstrap starts the main module from an eval):
	// the frames of the program itself are compared.
	noise := regexp.MustCompile(`0x[0-9a-f]+|(?m)^\s+at .*(node:internal/|\[eval\]).*\n`)
	for name, cases := range warmCases {
		for i, req := range cases {
			req.Language = name
			t.Run(name, func(t *testing.T) {
				waitPool(t, warm, 1)
				rc, err := cold.Run(context.Background(), req)
				if err != nil {
					t.Fatal(err)
				}
				rw, err := warm.Run(context.Background(), req)
				if err != nil {
					t.Fatal(err)
				}
				if rc.Warm || !rw.Warm {
					t.Fatalf("case %d: cold ran warm=%v, warm ran warm=%v", i, rc.Warm, rw.Warm)
				}
				if rc.Status != rw.Status || rc.ExitCode != rw.ExitCode || rc.Signal != rw.Signal || rc.Stdout != rw.Stdout ||
					noise.ReplaceAllString(rc.Stderr, "") != noise.ReplaceAllString(rw.Stderr, "") {
					t.Errorf("case %d\ncold: %s %d %q\nstdout %q\nstderr %q\nwarm: %s %d %q\nstdout %q\nstderr %q", i,
						rc.Status, rc.ExitCode, rc.Signal, rc.Stdout, rc.Stderr, rw.Status, rw.ExitCode, rw.Signal, rw.Stdout, rw.Stderr)
				}
			})
		}
	}
}

// waitPool waits until n warm containers are ready (all runtimes together, one pool
// filling at a time here: the test runs one runtime's case, then waits for its refill).
func waitPool(t *testing.T, e *sandbox.Engine, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for e.PoolIdle() < len(warmCases)*n {
		if time.Now().After(deadline) {
			t.Fatalf("pool has %d warm containers after 60 s", e.PoolIdle())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
