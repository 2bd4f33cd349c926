// Command sandboxctl drives a sandboxd daemon over its unix socket (or over TCP with
// --url and a token): run code, see the daemon's status, jobs and GPUs, kill a job,
// drain and resume, and manage root filesystems. One subcommand per file.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

// exitDaemon is the exit status when sandboxctl or the daemon failed, rather than the
// job (as docker run uses 125).
const exitDaemon = 125

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "sandboxctl",
		Usage:     "drive a sandboxd daemon",
		Version:   version,
		Reader:    stdin,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "socket", Value: "/run/sandboxd/sandboxd.sock", EnvVars: []string{"SANDBOXD_SOCKET"}, Usage: "the daemon's unix socket"},
			&cli.StringFlag{Name: "url", EnvVars: []string{"SANDBOXD_URL"}, Usage: "reach the daemon over TCP instead, e.g. http://127.0.0.1:8000"},
			&cli.StringFlag{Name: "token", EnvVars: []string{"SANDBOXD_TOKEN"}, Usage: "bearer token for --url (the API token, or the admin token for admin commands)"},
			&cli.StringFlag{Name: "token-file", EnvVars: []string{"SANDBOXD_TOKEN_FILE"}, Usage: "read the token from this file"},
		},
		Commands: []*cli.Command{
			runCommand,
			runtimesCommand,
			submitCommand,
			getCommand,
			cancelCommand,
			statusCommand,
			jobsCommand,
			killCommand,
			gpusCommand,
			drainCommand,
			resumeCommand,
			rootfsCommand,
		},
		// main decides the exit status; tests call the app and read the error.
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

func main() {
	err := newApp(os.Stdin, os.Stdout, os.Stderr).RunContext(context.Background(), os.Args)
	os.Exit(exitStatus(err, os.Stderr))
}

// exitStatus reports err (if any) and turns it into the process's exit status.
func exitStatus(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(stderr, "sandboxctl:", msg)
		}
		return ec.ExitCode()
	}
	fmt.Fprintln(stderr, "sandboxctl:", err)
	return exitDaemon
}
