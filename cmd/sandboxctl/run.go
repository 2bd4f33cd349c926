package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/api"
)

// Exit statuses for jobs that did not exit on their own, as a shell reports a process
// killed by a signal (128+n) and as timeout(1) reports a timeout.
const (
	exitTimeout  = 124
	exitMemory   = 128 + 9  // the OOM killer's SIGKILL
	exitCPULimit = 128 + 24 // SIGXCPU
)

var runCommand = &cli.Command{
	Name:      "run",
	Usage:     "run a program (- reads it from standard input) and exit with its exit status",
	ArgsUsage: "FILE|- [EXTRA-FILE...]",
	Description: `Sends FILE as the main file (its base name is its name in /work) and each
EXTRA-FILE beside it, runs it with --lang's runtime (default python), prints the job's
stdout and stderr to sandboxctl's own and exits with the job's exit code; a job killed
by a signal exits 128+n, a timeout 124, a CPU-time limit 152, a memory limit 137, a
compile error 1 (its output on stderr), and a failure of the daemon or of sandboxctl
125. Limits take units: --memory 512MB --timeout 30s. With --test IN:OUT (repeatable),
the program runs once per test with IN as stdin and its stdout compared with OUT; each
verdict is printed and the exit status is 0 only if every test passed.`,
	Flags: append(slices.Clone(jobFlags), streamFlag),
	Action: func(c *cli.Context) error {
		if c.NArg() < 1 {
			return cli.Exit("run takes a FILE (or - for standard input), then any extra files", exitDaemon)
		}
		req, err := runRequest(c)
		if err != nil {
			return err
		}
		cl, err := newClient(c)
		if err != nil {
			return err
		}
		if c.Bool("stream") {
			return runStream(c, cl, req)
		}
		var raw json.RawMessage
		if err := cl.do(c.Context, http.MethodPost, "/v1/execute", req, &raw); err != nil {
			return err
		}
		var res api.Result
		if err := json.Unmarshal(raw, &res); err != nil {
			return fmt.Errorf("unexpected answer from sandboxd: %w", err)
		}
		if dir := c.String("collect"); dir != "" {
			if err := saveFiles(dir, res.Files, c.App.ErrWriter); err != nil {
				return err
			}
		}
		if wantJSON(c) {
			if err := printJSON(c.App.Writer, raw); err != nil {
				return err
			}
		} else {
			printResult(c, &res)
		}
		return exitOf(&res)
	},
}

// jobFlags are what run and submit take to build a job.
var jobFlags = []cli.Flag{
	&cli.StringFlag{Name: "lang", Aliases: []string{"l"}, Usage: "runtime, by name or alias (sandboxctl runtimes lists them)"},
	&cli.StringSliceFlag{Name: "arg", Usage: "an argument for the program (repeatable, in order)"},
	&cli.StringSliceFlag{Name: "env", Usage: "NAME=value for the program's environment (repeatable)"},
	&cli.StringFlag{Name: "collect", Usage: "directory to write the files the job leaves (those matching --glob) into"},
	&cli.StringSliceFlag{Name: "glob", Usage: `files to collect, relative to /work (repeatable; default "*")`},
	&cli.StringSliceFlag{Name: "test", Usage: "IN:OUT, files of a test case's stdin and expected stdout (repeatable)"},
	&cli.StringFlag{Name: "timeout", Usage: "wall-clock limit, e.g. 30s"},
	&cli.StringFlag{Name: "cpu-time", Usage: "CPU time of all its processes, e.g. 10s"},
	&cli.StringFlag{Name: "cpus", Usage: "CPU cores, e.g. 0.5"},
	&cli.StringFlag{Name: "memory", Usage: "RAM, e.g. 512MB"},
	&cli.StringFlag{Name: "storage", Usage: "size of its /work and /tmp, e.g. 64MB"},
	&cli.StringFlag{Name: "pids", Usage: "processes and threads at once"},
	&cli.StringFlag{Name: "compile-timeout", Usage: "wall-clock limit of the compile step"},
	&cli.StringFlag{Name: "gpus", Usage: `how many GPUs, or "all"`},
	&cli.StringSliceFlag{Name: "gpu", Usage: "a GPU by UUID or index (repeatable)"},
	&cli.StringFlag{Name: "stdin", Usage: "file whose content is the job's standard input"},
	jsonFlag,
}

// runRequest builds the job from run's arguments and flags.
func runRequest(c *cli.Context) (*api.ExecuteRequest, error) {
	req := &api.ExecuteRequest{Language: c.String("lang"), Args: c.StringSlice("arg")}
	main := c.Args().First()
	code, err := readArg(c, main)
	if err != nil {
		return nil, err
	}
	if main == "-" {
		s := string(code)
		req.Code = &s
	} else {
		req.Files = append(req.Files, api.File{Name: filepath.Base(main), Content: base64.StdEncoding.EncodeToString(code), Encoding: "base64"})
	}
	for _, extra := range c.Args().Slice()[1:] {
		b, err := os.ReadFile(extra)
		if err != nil {
			return nil, err
		}
		name := filepath.ToSlash(filepath.Clean(extra))
		if filepath.IsAbs(extra) || strings.HasPrefix(name, "../") {
			name = filepath.Base(extra)
		}
		req.Files = append(req.Files, api.File{Name: name, Content: base64.StdEncoding.EncodeToString(b), Encoding: "base64"})
	}
	if f := c.String("stdin"); f != "" {
		in, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		req.Stdin = string(in)
	}
	for _, kv := range c.StringSlice("env") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, cli.Exit(fmt.Sprintf("--env %q: want NAME=value", kv), exitDaemon)
		}
		if req.Env == nil {
			req.Env = map[string]string{}
		}
		req.Env[k] = v
	}
	if c.String("collect") != "" {
		req.Collect = c.StringSlice("glob")
		if len(req.Collect) == 0 {
			req.Collect = []string{"*"}
		}
	}
	for _, t := range c.StringSlice("test") {
		in, out, ok := strings.Cut(t, ":")
		if !ok {
			return nil, cli.Exit(fmt.Sprintf("--test %q: want IN:OUT (two files)", t), exitDaemon)
		}
		stdin, err := os.ReadFile(in)
		if err != nil {
			return nil, err
		}
		want, err := os.ReadFile(out)
		if err != nil {
			return nil, err
		}
		w := string(want)
		req.Tests = append(req.Tests, api.Test{Stdin: string(stdin), ExpectedOutput: &w})
	}
	var lim api.Limits
	set := false
	for flag, dst := range map[string]*json.RawMessage{"timeout": &lim.Timeout, "cpu-time": &lim.CPUTime, "cpus": &lim.CPUs,
		"memory": &lim.Memory, "storage": &lim.Storage, "pids": &lim.Pids, "gpus": &lim.GPUs, "compile-timeout": &lim.CompileTimeout} {
		if v := c.String(flag); v != "" {
			*dst, _ = json.Marshal(v) // the daemon parses units and names a bad field
			set = true
		}
	}
	if ids := c.StringSlice("gpu"); len(ids) > 0 {
		list := make([]any, len(ids))
		for i, id := range ids {
			list[i] = id
			if n, err := strconv.Atoi(id); err == nil {
				list[i] = n
			}
		}
		lim.GPUs, _ = json.Marshal(list)
		set = true
	}
	if set {
		req.Limits = &lim
	}
	return req, nil
}

// printResult writes the job's output: a failed compile step's, the run's, or each
// test's verdict.
func printResult(c *cli.Context, r *api.Result) {
	if r.Compile != nil && r.Compile.Status != "ok" {
		io.WriteString(c.App.ErrWriter, r.Compile.Stdout+r.Compile.Stderr)
		return
	}
	if len(r.Tests) == 0 {
		io.WriteString(c.App.Writer, r.Stdout)
		io.WriteString(c.App.ErrWriter, r.Stderr)
		return
	}
	for i, t := range r.Tests {
		fmt.Fprintf(c.App.Writer, "test %d: %s (%.1f ms)\n", i+1, t.Verdict, t.WallMS)
		if t.Verdict != "passed" && t.Stderr != "" {
			io.WriteString(c.App.ErrWriter, t.Stderr)
		}
	}
	fmt.Fprintf(c.App.Writer, "%d of %d passed\n", *r.TestsPassed, len(r.Tests))
}

// saveFiles writes collected files into dir, confined to it; skipped ones are named.
func saveFiles(dir string, files []api.CollectedFile, errw io.Writer) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("--collect: %w", err)
	}
	defer root.Close()
	for _, f := range files {
		if f.Skipped != "" {
			fmt.Fprintf(errw, "not collected: %s (%s)\n", f.Name, f.Skipped)
			continue
		}
		b, err := base64.StdEncoding.DecodeString(f.Content)
		if err != nil {
			return fmt.Errorf("collected %s: %w", f.Name, err)
		}
		if d := path.Dir(f.Name); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		if err := root.WriteFile(f.Name, b, 0o644); err != nil {
			return err
		}
		if f.Truncated {
			fmt.Fprintf(errw, "truncated: %s (%d of %d bytes)\n", f.Name, len(b), f.Size)
		}
	}
	return nil
}

// exit turns how the job ended into sandboxctl's exit status, saying why on stderr
// when the job did not simply exit.
func exitOf(r *api.Result) error {
	why := func(code int, format string, args ...any) error {
		return cli.Exit(fmt.Sprintf("job %s: "+format, append([]any{r.ID}, args...)...), code)
	}
	switch r.Status {
	case "wrong_answer":
		return cli.Exit("", 1)
	case "compile_error":
		return why(1, "did not compile")
	case "compile_timeout":
		return why(exitTimeout, "its compile step ran out of time")
	case "ok", "error":
		if len(r.Tests) > 0 {
			for _, t := range r.Tests {
				if t.Verdict != "passed" {
					return cli.Exit("", 1)
				}
			}
			return nil
		}
		if r.ExitCode == 0 {
			return nil
		}
		return cli.Exit("", r.ExitCode)
	case "timeout":
		return why(exitTimeout, "timed out after %s", time.Duration(r.Limits.TimeoutMS)*time.Millisecond)
	case "cpu_limit":
		return why(exitCPULimit, "used up its CPU time (%s)", time.Duration(r.Limits.CPUTimeMS)*time.Millisecond)
	case "memory_limit":
		return why(exitMemory, "ran out of memory (%d bytes)", r.Limits.Memory)
	case "signaled":
		return why(128+int(unix.SignalNum(r.Signal)), "killed by %s", r.Signal)
	}
	return why(exitDaemon, "%s: %s", r.Status, r.Error)
}

func readArg(c *cli.Context, name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(c.App.Reader)
	}
	return os.ReadFile(name)
}
