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
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

// exitDaemon is the exit status when sandboxctl or the daemon failed, rather than the
// job (as docker run uses 125).
const exitDaemon = 125

// commonFlags are accepted before the command and after it (urfave/cli reads a flag only
// at the level that defines it, so every command defines them too; see common).
func commonFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "socket", Value: "/run/sandboxd/sandboxd.sock", EnvVars: []string{"SANDBOXD_SOCKET"}, Usage: "the daemon's unix socket"},
		&cli.StringFlag{Name: "url", EnvVars: []string{"SANDBOXD_URL"}, Usage: "reach the daemon over TCP instead, e.g. http://127.0.0.1:8000"},
		&cli.StringFlag{Name: "token", EnvVars: []string{"SANDBOXD_TOKEN"}, Usage: "bearer token for --url (the API token, or the admin token for admin commands)"},
		&cli.StringFlag{Name: "token-file", EnvVars: []string{"SANDBOXD_TOKEN_FILE"}, Usage: "read the token from this file"},
		jsonFlag,
	}
}

// withCommon gives every command that runs something the common flags it lacks.
func withCommon(cmds []*cli.Command) []*cli.Command {
	for _, cmd := range cmds {
		if len(cmd.Subcommands) > 0 {
			withCommon(cmd.Subcommands)
			continue
		}
		for _, f := range commonFlags() {
			if !slices.ContainsFunc(cmd.Flags, func(g cli.Flag) bool { return g.Names()[0] == f.Names()[0] }) {
				cmd.Flags = append(cmd.Flags, f)
			}
		}
	}
	return cmds
}

// common returns the context where a common flag was given: the command's own, the
// app's (sandboxctl --json status), or, when neither set it, the command's, whose
// value is the default or the environment's.
func common(c *cli.Context, name string) *cli.Context {
	for _, x := range c.Lineage() {
		if slices.Contains(x.LocalFlagNames(), name) {
			return x
		}
	}
	return c
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "sandboxctl",
		Usage:     "drive a sandboxd daemon",
		Version:   version,
		Reader:    stdin,
		Writer:    stdout,
		ErrWriter: stderr,
		Flags:     commonFlags(),
		Commands: withCommon([]*cli.Command{
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
		}),
		// main decides the exit status; tests call the app and read the error.
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

func main() {
	err := runApp(context.Background(), newApp(os.Stdin, os.Stdout, os.Stderr), os.Args)
	os.Exit(exitStatus(err, os.Stderr))
}

// runApp runs the app on a command line whose flags may follow the arguments.
func runApp(ctx context.Context, app *cli.App, args []string) error {
	return app.RunContext(ctx, flagsFirst(app, args))
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

// flagsFirst moves each command's flags before its arguments, so that
// "sandboxctl run hello.py --json" reads as "sandboxctl run --json hello.py": urfave/cli
// v2 (like Go's flag package) stops at the first argument and has no option to go on.
// A lone "-" is an argument (standard input); after "--" nothing is moved.
func flagsFirst(app *cli.App, args []string) []string {
	if len(args) == 0 {
		return args
	}
	out := []string{args[0]}
	flags, cmds, rest := app.Flags, app.Commands, args[1:]
	for {
		var fl, pos []string
		descended := false
		for i := 0; i < len(rest); i++ {
			a := rest[i]
			switch {
			case a == "--":
				pos = append(pos, rest[i:]...)
				i = len(rest)
			case strings.HasPrefix(a, "-") && a != "-":
				fl = append(fl, a)
				if takesValue(flags, a) && i+1 < len(rest) {
					i++
					fl = append(fl, rest[i])
				}
			case len(pos) == 0 && findCommand(cmds, a) != nil:
				cmd := findCommand(cmds, a)
				out = append(append(out, fl...), a)
				flags, cmds, rest = cmd.Flags, cmd.Subcommands, rest[i+1:]
				descended = true
				i = len(rest)
			default:
				pos = append(pos, a)
			}
			if descended {
				break
			}
		}
		if !descended {
			return append(append(out, fl...), pos...)
		}
	}
}

// takesValue says whether the flag token a ("--timeout", "-t") is followed by its value.
func takesValue(flags []cli.Flag, a string) bool {
	name := strings.TrimLeft(a, "-")
	if strings.Contains(name, "=") {
		return false
	}
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			_, isBool := f.(*cli.BoolFlag)
			return !isBool
		}
	}
	return false // unknown: left for cli to refuse
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
