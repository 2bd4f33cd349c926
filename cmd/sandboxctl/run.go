package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
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
	Usage:     "run a Python file (- reads standard input) and exit with its exit status",
	ArgsUsage: "FILE|-",
	Description: `Prints the job's stdout and stderr to sandboxctl's own and exits with the job's
exit code; a job killed by a signal exits 128+n, a timeout 124, a CPU-time limit 152,
a memory limit 137, and a failure of the daemon or of sandboxctl 125. Limits take
units: --memory 512MB --timeout 30s. Flags may come before or after FILE.`,
	Flags: []cli.Flag{
		&cli.StringFlag{Name: "timeout", Usage: "wall-clock limit, e.g. 30s"},
		&cli.StringFlag{Name: "cpu-time", Usage: "CPU time of all its processes, e.g. 10s"},
		&cli.StringFlag{Name: "cpus", Usage: "CPU cores, e.g. 0.5"},
		&cli.StringFlag{Name: "memory", Usage: "RAM, e.g. 512MB"},
		&cli.StringFlag{Name: "storage", Usage: "size of its /work and /tmp, e.g. 64MB"},
		&cli.StringFlag{Name: "pids", Usage: "processes and threads at once"},
		&cli.StringFlag{Name: "gpus", Usage: `how many GPUs, or "all"`},
		&cli.StringSliceFlag{Name: "gpu", Usage: "a GPU by UUID or index (repeatable)"},
		&cli.StringFlag{Name: "stdin", Usage: "file whose content is the job's standard input"},
		jsonFlag,
	},
	Action: func(c *cli.Context) error {
		if c.NArg() != 1 {
			return cli.Exit("run takes one FILE (or - for standard input)", exitDaemon)
		}
		code, err := readArg(c, c.Args().First())
		if err != nil {
			return err
		}
		body := map[string]any{"code": string(code)}
		if f := c.String("stdin"); f != "" {
			in, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			body["stdin"] = string(in)
		}
		limits := map[string]any{}
		for flag, field := range map[string]string{"timeout": "timeout", "cpu-time": "cpu_time", "cpus": "cpus",
			"memory": "memory", "storage": "storage", "pids": "pids", "gpus": "gpus"} {
			if v := c.String(flag); v != "" {
				limits[field] = v // the daemon parses units and names a bad field
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
			limits["gpus"] = list
		}
		if len(limits) > 0 {
			body["limits"] = limits
		}
		cl, err := newClient(c)
		if err != nil {
			return err
		}
		var raw json.RawMessage
		if err := cl.do(c.Context, http.MethodPost, "/v1/execute", body, &raw); err != nil {
			return err
		}
		var res jobResult
		if err := json.Unmarshal(raw, &res); err != nil {
			return fmt.Errorf("unexpected answer from sandboxd: %w", err)
		}
		if wantJSON(c) {
			if err := printJSON(c.App.Writer, raw); err != nil {
				return err
			}
		} else {
			io.WriteString(c.App.Writer, res.Stdout)
			io.WriteString(c.App.ErrWriter, res.Stderr)
		}
		return res.exit()
	},
}

// jobResult is what run reads of a job's result.
type jobResult struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	ExitCode int    `json:"exit_code"`
	Signal   string `json:"signal"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	Error    string `json:"error"`
	Limits   struct {
		TimeoutMS int64 `json:"timeout_ms"`
		CPUTimeMS int64 `json:"cpu_time_ms"`
		Memory    int64 `json:"memory_bytes"`
	} `json:"limits"`
}

// exit turns how the job ended into sandboxctl's exit status, saying why on stderr
// when the job did not simply exit.
func (r *jobResult) exit() error {
	why := func(code int, format string, args ...any) error {
		return cli.Exit(fmt.Sprintf("job %s: "+format, append([]any{r.ID}, args...)...), code)
	}
	switch r.Status {
	case "ok", "error":
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
