package sandbox

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/sandboxd/sandboxd/gpu"
)

// execute runs one job's steps and fills res: the compile step for a compiled runtime,
// then the run, or one run per test case. Each step is a container of its own over the
// job's storage (a test case: over a fresh copy of the files, with the compiled
// artifact read-only). Every step that leaves something behind pushes its undo onto
// undo first; steps before the last are torn down before the next starts.
func (e *Engine) execute(ctx context.Context, p *prepared, lease *gpu.Lease, res *Result, undo *cleanup) error {
	rt := p.rt
	if !rt.Compiled() && len(p.req.Tests) == 0 {
		if z := e.takeFork(p, lease); z != nil {
			res.Warm = true
			healthy := false
			undo.push(func() error { z.pool.put(z, healthy); return nil })
			status, storage, err := e.runForked(ctx, p, z, p.req.Args, p.req.Stdin, p.req.StdinStream, p.sink(StageRun, 0), &res.Outcome, undo)
			if err != nil {
				return err
			}
			healthy = true
			res.Status = status
			res.Files, err = collect(storage, p.collect, e.opts.Caps)
			return err
		}
		if w := e.takeWarm(p, lease); w != nil {
			res.Warm = true
			status, err := e.runWarm(ctx, p, w, p.req.Args, p.req.Stdin, p.req.StdinStream, p.sink(StageRun, 0), &res.Outcome, undo)
			if err != nil {
				return err
			}
			res.Status = status
			res.Files, err = collect(w.storage, p.collect, e.opts.Caps)
			return err
		}
	}
	// A compile step may need more room than the program (a compiler's caches): the
	// job's storage is the larger of the two steps' storage limits.
	slim := p.lim
	if rt.Compiled() {
		slim.Storage = max(slim.Storage, p.clim.Storage)
	}
	storage, err := e.newStorage(p.id, slim, undo)
	if err != nil {
		return err
	}
	if err := e.writeFiles(storage, p.files); err != nil {
		return err
	}
	if rt.Compiled() {
		if err := e.makeOutDir(storage); err != nil {
			return err
		}
		var step cleanup
		st := &StageResult{}
		res.Compile = st
		st.Status, err = e.runCold(ctx, p, procSpec{id: p.id + "-compile", storage: storage,
			argv: expand(rt.Compile, p.names[0], p.names, p.req.Args), lim: p.clim}, nil, nil, p.sink(StageCompile, 0), &st.Outcome, &step)
		if cerr := step.run(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		switch st.Status {
		case StatusOK:
		case StatusTimeout, StatusCPULimit:
			res.Status = StatusCompileTimeout
			return nil
		case StatusCancelled:
			res.Status = StatusCancelled
			return nil
		default:
			res.Status = StatusCompileError
			return nil
		}
	}
	if e.stopped(ctx, p.id) {
		res.Status = StatusCancelled
		return nil
	}
	runArgv := func(args []string) []string { return expand(rt.Run, p.names[0], p.names, args) }
	if len(p.req.Tests) == 0 {
		res.Status, err = e.runCold(ctx, p, procSpec{id: p.id, storage: storage, argv: runArgv(p.req.Args), lim: p.lim, lease: lease},
			p.req.Stdin, p.req.StdinStream, p.sink(StageRun, 0), &res.Outcome, undo)
		if err != nil {
			return err
		}
		res.Files, err = collect(storage, p.collect, e.opts.Caps)
		return err
	}
	return e.runTests(ctx, p, lease, storage, runArgv, res, undo)
}

// runTests runs the program once per test case, each in a fresh container over a fresh
// copy of the files (a warm one where the runtime has a pool), with the compiled
// artifact of storage read-only. The job's status is ok when every test passed, else
// the first failing test's verdict.
func (e *Engine) runTests(ctx context.Context, p *prepared, lease *gpu.Lease, storage string, runArgv func([]string) []string, res *Result, undo *cleanup) error {
	res.Status = StatusOK
	// A fork server, where the runtime has them, serves every test of the job in turn:
	// each a fork of its own, with its own namespaces, cgroup and tmpfs.
	var z *zygote
	healthy := true
	if !p.rt.Compiled() {
		if z = e.takeFork(p, lease); z != nil {
			undo.push(func() error { z.pool.put(z, healthy); return nil })
		}
	}
	for i, t := range p.req.Tests {
		if e.stopped(ctx, p.id) {
			res.Status = StatusCancelled
			return nil
		}
		tr := TestResult{}
		var step cleanup
		var err error
		sink := p.sink(StageTest, i)
		if z != nil {
			tr.Warm = true
			healthy = false
			tr.Status, _, err = e.runForked(ctx, p, z, t.Args, t.Stdin, nil, sink, &tr.Outcome, &step)
			healthy = err == nil
		} else if w := e.takeWarm(p, lease); w != nil {
			tr.Warm = true
			tr.Status, err = e.runWarm(ctx, p, w, t.Args, t.Stdin, nil, sink, &tr.Outcome, &step)
		} else {
			id := p.id + "-t" + strconv.Itoa(i)
			var dir string
			if dir, err = e.newStorage(id, p.lim, &step); err == nil {
				if err = e.writeFiles(dir, p.files); err == nil {
					spec := procSpec{id: id, storage: dir, argv: runArgv(t.Args), lim: p.lim, lease: lease}
					if p.rt.Compiled() {
						spec.outBind = filepath.Join(storage, outName)
						err = e.makeOutDir(dir)
					}
					if err == nil {
						tr.Status, err = e.runCold(ctx, p, spec, t.Stdin, nil, sink, &tr.Outcome, &step)
					}
				}
			}
		}
		if cerr := step.run(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("test %d: %w", i, err)
		}
		tr.Verdict = tr.Status
		if tr.Status == StatusOK && t.Expected != nil {
			tr.Verdict = StatusPassed
			if !sameOutput(tr.Stdout, *t.Expected, p.req.Compare) {
				tr.Verdict = StatusWrongAnswer
			}
		} else if tr.Status == StatusOK {
			tr.Verdict = StatusPassed
		}
		if tr.Verdict == StatusPassed {
			res.TestsPassed++
		} else if res.Status == StatusOK {
			res.Status = tr.Verdict
		}
		res.Tests = append(res.Tests, tr)
	}
	return nil
}

// sameOutput compares a test's stdout with what it expected.
func sameOutput(got, want string, mode Compare) bool {
	if mode == CompareExact {
		return got == want
	}
	return trimTrailing(got) == trimTrailing(want)
}

// trimTrailing drops trailing whitespace of every line and trailing blank lines.
func trimTrailing(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t\r\v\f")
	}
	return strings.TrimRight(strings.Join(lines, "\n"), "\n")
}

// stopped says whether the job should not go on to its next step: cancelled, or
// killed by an admin.
func (e *Engine) stopped(ctx context.Context, id string) bool {
	return ctx.Err() != nil || e.reg.wasKilled(id)
}

// runCold starts a container for one step and runs it.
func (e *Engine) runCold(ctx context.Context, p *prepared, s procSpec, stdin []byte, stream io.Reader, sink func(EventType, []byte, bool), out *Outcome, undo *cleanup) (Status, error) {
	s.root = p.root
	s.env = p.env()
	out.ExitCode = -1
	jp, err := e.startProc(s, undo)
	if err != nil {
		return "", err
	}
	return e.runProc(ctx, p.id, jp, s.lim, stdin, stream, sink, out)
}

// runWarm runs a job on a pooled container: its files are written into the
// container's storage, its limits applied, and the bootstrap told what to run.
func (e *Engine) runWarm(ctx context.Context, p *prepared, w *warmProc, args []string, stdin []byte, stream io.Reader, sink func(EventType, []byte, bool), out *Outcome, undo *cleanup) (Status, error) {
	// Last, once the container is gone: start its replacement.
	undo.push(func() error { w.pool.kick(); return nil })
	*undo = append(*undo, w.undo...)
	out.ExitCode = -1
	if err := e.writeFiles(w.storage, p.files); err != nil {
		return "", err
	}
	if err := e.dispatch(w, p.lim); err != nil {
		return "", err
	}
	return e.runProc(ctx, p.id, w.proc, p.lim, bootstrapInput(p.names[0], args, stdin), stream, sink, out)
}

// env is the job's whole environment: the fixed one, the runtime's, the request's.
func (p *prepared) env() []string {
	env := slices.Concat(jobEnv, p.rt.Env)
	keys := make([]string, 0, len(p.req.Env))
	for k := range p.req.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		env = append(env, k+"="+p.req.Env[k])
	}
	return env
}

// sink turns output of a step into the request's events, after a stage event.
func (p *prepared) sink(stage Stage, test int) func(EventType, []byte, bool) {
	if p.req.Events == nil {
		return nil
	}
	p.req.Events(Event{Type: EventStage, Stage: stage, Test: test})
	return func(t EventType, b []byte, trunc bool) {
		p.req.Events(Event{Type: t, Stage: stage, Test: test, Data: b, Truncated: trunc})
	}
}

// makeOutDir makes the directory a compile step leaves its artifact in (OutDir).
func (e *Engine) makeOutDir(storage string) error {
	root, err := os.OpenRoot(storage)
	if err != nil {
		return err
	}
	defer root.Close()
	return mkdirOwned(root, outName, e.jobUID())
}
