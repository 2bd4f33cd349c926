package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/sandboxd/sandboxd/sandbox"
)

// Gate stands between the API's fronts and the engine: while the daemon drains it
// refuses new jobs as a closing engine does (503), and it logs one line per job with
// who asked for it. Neither the code nor its output is logged unless LogCode is on.
type Gate struct {
	run      Runner
	log      *slog.Logger
	draining atomic.Bool
	logCode  atomic.Bool
}

// NewGate wraps a Runner (the engine).
func NewGate(run Runner, log *slog.Logger) *Gate {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Gate{run: run, log: log}
}

// Drain refuses new jobs; running and queued ones go on. Resume takes jobs again.
func (g *Gate) Drain()             { g.draining.Store(true) }
func (g *Gate) Resume()            { g.draining.Store(false) }
func (g *Gate) Draining() bool     { return g.draining.Load() }
func (g *Gate) SetLogCode(on bool) { g.logCode.Store(on) }

// Run runs req unless the daemon drains, and logs the job's end.
func (g *Gate) Run(ctx context.Context, req sandbox.Request) (*sandbox.Result, error) {
	if g.draining.Load() {
		return nil, fmt.Errorf("%w: draining", sandbox.ErrClosed)
	}
	res, err := g.run.Run(ctx, req)
	if err != nil {
		return nil, err
	}
	l := res.Limits
	attrs := []slog.Attr{
		slog.String("job", res.ID),
		slog.String("runtime", res.Runtime),
		slog.String("status", string(res.Status)),
		slog.Int("exit_code", res.ExitCode),
		slog.Float64("wall_ms", res.WallMS),
		slog.Float64("cpu_ms", res.CPUMS),
		slog.Float64("cpu_user_ms", res.CPUUserMS),
		slog.Float64("cpu_system_ms", res.CPUSystemMS),
		slog.Int64("memory_peak_bytes", res.MemoryPeak),
		slog.Group("limits", "cpus", l.CPUs, "cpu_time_ms", l.CPUTimeMS, "memory_bytes", l.Memory,
			"storage_bytes", l.Storage, "pids", l.Pids, "timeout_ms", l.TimeoutMS),
		slog.String("client", ClientFrom(ctx).String()),
	}
	if res.Signal != "" {
		attrs = append(attrs, slog.String("signal", res.Signal))
	}
	if len(res.Tests) > 0 {
		attrs = append(attrs, slog.Int("tests", len(res.Tests)), slog.Int("tests_passed", res.TestsPassed))
	}
	if res.Compile != nil {
		attrs = append(attrs, slog.String("compile_status", string(res.Compile.Status)), slog.Float64("compile_wall_ms", res.Compile.WallMS))
	}
	if len(res.GPUs) > 0 {
		attrs = append(attrs, slog.Any("gpus", res.GPUs))
	}
	if g.logCode.Load() {
		attrs = append(attrs, slog.String("code", req.Code))
	}
	level := slog.LevelInfo
	if res.Status == sandbox.StatusInternalError {
		level = slog.LevelWarn
	}
	g.log.LogAttrs(ctx, level, "job done", attrs...)
	return res, nil
}
