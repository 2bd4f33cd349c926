// Command sandboxd is the daemon: it unpacks the jobs' root filesystem once, then runs
// each request's code in a fresh container and answers over HTTP. main only wires:
// configuration, signals and the daemon (internal/daemon).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/BurntSushi/toml"

	"github.com/sandboxd/sandboxd/internal/daemon"
	"github.com/sandboxd/sandboxd/sandbox"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

func main() {
	// Before anything else: run from a sealed copy of this binary, so starting a
	// container does not copy the binary each time (see sandbox.ReexecSealed).
	if err := sandbox.ReexecSealed(); err != nil {
		fmt.Fprintln(os.Stderr, "sandboxd: warning: running unsealed:", err)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	// Signals first: a SIGTERM during the slow start still shuts down cleanly, and a
	// SIGHUP does not kill a daemon that is still starting.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	// A log stream that closes (journald restarting, a parent that read the output and
	// went away) must not kill the daemon by SIGPIPE at its next log line, mid-job, with
	// its containers, mounts and cgroups left behind: with SIGPIPE caught, such a write
	// fails with EPIPE and the daemon goes on. A handler, not SIG_IGN, so the jobs it
	// starts keep the default (exec resets handlers, not an ignored signal).
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	cfg, opts, err := loadConfig(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case opts.version:
		fmt.Fprintln(stdout, "sandboxd", version)
		return 0
	case err != nil:
		fmt.Fprintln(stderr, "sandboxd: configuration:", err)
		return 1
	case opts.checkConfig:
		cfg.Listen = cfg.ListenAddrs()
		fmt.Fprintln(stdout, "# configuration OK; in effect:")
		if err := toml.NewEncoder(stdout).Encode(cfg); err != nil {
			fmt.Fprintln(stderr, "sandboxd:", err)
			return 1
		}
		return 0
	}

	level := new(slog.LevelVar)
	cfg.SetLevel(level)
	log := daemon.NewLogger(stderr, cfg.LogFormat, level)
	d := daemon.New(cfg, daemon.Options{Logger: log, Level: level, Version: version})
	go func() {
		for range hup {
			next, _, err := loadConfig(args, io.Discard)
			if err == nil {
				err = d.Reload(next)
			}
			if err != nil {
				log.Error("reload failed; the configuration in force stays", "err", err)
			}
		}
	}()
	if err := d.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("sandboxd failed", "err", err)
		return 1
	}
	return 0
}
