package daemon

import (
	"sync/atomic"

	"github.com/sandboxd/sandboxd/fronts/judge0"
	"github.com/sandboxd/sandboxd/fronts/piston"
	"github.com/sandboxd/sandboxd/jobs"
	"github.com/sandboxd/sandboxd/sandbox"
	"github.com/sandboxd/sandboxd/server"
)

// mountFronts adds the Piston and Judge0 fronts: both call the gate, as /v1 does.
// Judge0's tokens and callbacks are the async job manager's.
func (d *Daemon) mountFronts(srv *server.Server, cfg Config, gate *server.Gate, engine *sandbox.Engine, mgr *jobs.Manager) error {
	tok, err := cfg.Judge0Token()
	if err != nil {
		return err
	}
	d.judge0.set(tok)
	piston.New(piston.Options{Run: gate, Runtimes: engine.Runtimes, Signal: engine.Signal,
		MaxBody: int64(cfg.MaxBody), Logger: d.log}).Register(srv)
	judge0.New(judge0.Options{Run: gate, Runtimes: engine.Runtimes, Policy: engine.Policy,
		Store: judge0.JobsStore{Manager: mgr}, AuthToken: d.judge0.get, MaxBody: int64(cfg.MaxBody), Logger: d.log}).Register(srv)
	return nil
}

// judge0Token holds judge0_auth_token_file's token, read at start and on reload.
type judge0Token struct{ tok atomic.Pointer[string] }

func (j *judge0Token) set(tok string) { j.tok.Store(&tok) }

func (j *judge0Token) get() string {
	if t := j.tok.Load(); t != nil {
		return *t
	}
	return ""
}
