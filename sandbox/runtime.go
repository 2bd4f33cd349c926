package sandbox

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
)

// Runtime is one language the engine runs: data, not code (the runtimes package loads
// them from TOML). Argv templates take whole-element placeholders: {main} (the main
// file, relative to /work), {stem} (its base name without extension), {sources} (every
// file with the main file's extension), {args} (the job's argv), {outdir} and {out}
// (where a compile step puts its artifact, which the run step and test cases see).
type Runtime struct {
	Name    string
	Version string
	Aliases []string
	// Image names the root filesystem the runtime's jobs run on ("" is the engine's
	// default image, Options.Rootfs).
	Image string
	// Main is the main file's name when a request sends only code.
	Main    string
	Compile []string // empty: interpreted
	Run     []string
	// Env is added to every job's fixed environment (compile and run steps).
	Env []string
	// EnvAllow lists client environment names (globs) this runtime allows although the
	// default rule refuses them (PYTHON*, NODE_OPTIONS, ...).
	EnvAllow []string
	// Bootstrap names the warm bootstrap ("python", "node") that lets the pool start this
	// runtime's interpreter ahead of time; "" runs every job cold.
	Bootstrap string
	// Limits are this runtime's run-step defaults where they differ from the daemon's
	// (zero fields: the daemon's); MaxLimits its maximums where lower than the daemon's.
	Limits    Limits
	MaxLimits Limits
	// CompileLimits are the compile step's defaults where they differ from the daemon's
	// compile defaults (DefaultCompileLimits).
	CompileLimits Limits
}

// Compiled says whether the runtime has a compile step.
func (r *Runtime) Compiled() bool { return len(r.Compile) > 0 }

// Where a compile step leaves its artifact, inside the job.
const (
	OutDir  = WorkDir + "/.out"
	OutFile = OutDir + "/main"
	outName = ".out" // OutDir relative to WorkDir: no request file may use it
)

// DefaultCompileLimits are a compile step's defaults when neither the runtime nor the
// request says otherwise: generous, since compilers are hungrier than the programs
// they build. The daemon's maximums still bound them.
var DefaultCompileLimits = Limits{Timeout: 30 * time.Second, CPUTime: 30 * time.Second, Memory: 1 << 30, Pids: 256}

// DefaultRuntime is what an engine runs when it is given no runtimes: Python on the
// default image, as sandboxd always did.
func DefaultRuntime() Runtime {
	return Runtime{
		Name: "python", Version: "3", Aliases: []string{"py", "python3"}, Main: "main.py",
		Run:       []string{"python3", "{main}", "{args}"},
		Env:       []string{"PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"},
		Bootstrap: "python",
	}
}

// validate checks a runtime's definition.
func (r *Runtime) validate() error {
	switch {
	case r.Name == "" || strings.ToLower(r.Name) != r.Name:
		return fmt.Errorf("runtime %q: name must be non-empty and lowercase", r.Name)
	case r.Main == "":
		return fmt.Errorf("runtime %s: main is required", r.Name)
	case len(r.Run) == 0:
		return fmt.Errorf("runtime %s: run is required", r.Name)
	case r.Bootstrap != "" && bootstraps[r.Bootstrap] == nil:
		return fmt.Errorf("runtime %s: unknown bootstrap %q", r.Name, r.Bootstrap)
	}
	if err := checkFileName(r.Main); err != nil {
		return fmt.Errorf("runtime %s: main: %w", r.Name, err)
	}
	for _, kv := range r.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("runtime %s: env %q is not NAME=value", r.Name, kv)
		}
	}
	for _, argv := range [][]string{r.Compile, r.Run} {
		for _, a := range argv {
			if strings.HasPrefix(a, "{") && strings.HasSuffix(a, "}") && !slices.Contains(placeholders, a) {
				return fmt.Errorf("runtime %s: unknown placeholder %s", r.Name, a)
			}
		}
	}
	return nil
}

var placeholders = []string{"{main}", "{stem}", "{sources}", "{args}", "{outdir}", "{out}"}

// ExpandArgv expands an argv template (Runtime.Compile or Run) as the engine does for
// a job whose main file is main, with files (all its file names, main first) and args.
func ExpandArgv(tmpl []string, main string, files, args []string) []string {
	return expand(tmpl, main, files, args)
}

// expand expands an argv template for a job whose main file is main, with files (all the
// request's file names) and args.
func expand(tmpl []string, main string, files, args []string) []string {
	out := make([]string, 0, len(tmpl)+len(args))
	ext := path.Ext(main)
	for _, a := range tmpl {
		switch a {
		case "{main}":
			out = append(out, main)
		case "{stem}":
			out = append(out, strings.TrimSuffix(path.Base(main), ext))
		case "{sources}":
			for _, f := range files {
				if path.Ext(f) == ext {
					out = append(out, f)
				}
			}
		case "{args}":
			out = append(out, args...)
		case "{outdir}":
			out = append(out, OutDir)
		case "{out}":
			out = append(out, OutFile)
		default:
			out = append(out, a)
		}
	}
	return out
}

// RuntimeInfo is what GET /v1/runtimes shows of a runtime.
type RuntimeInfo struct {
	Name          string
	Version       string
	Aliases       []string
	Compiled      bool
	Warm          bool // its jobs can start on a pooled container
	Limits        Limits
	MaxLimits     Limits
	CompileLimits Limits // zero unless Compiled
}

// runtimeSet finds runtimes by name or alias.
type runtimeSet struct {
	list   []*Runtime
	byName map[string]*Runtime
}

func newRuntimeSet(rts []Runtime) (runtimeSet, error) {
	s := runtimeSet{byName: map[string]*Runtime{}}
	for i := range rts {
		r := &rts[i]
		if err := r.validate(); err != nil {
			return s, err
		}
		for _, n := range append([]string{r.Name}, r.Aliases...) {
			if other, dup := s.byName[n]; dup {
				return s, fmt.Errorf("runtime %s: name or alias %q is also %s's", r.Name, n, other.Name)
			}
			s.byName[n] = r
		}
		s.list = append(s.list, r)
	}
	slices.SortFunc(s.list, func(a, b *Runtime) int { return strings.Compare(a.Name, b.Name) })
	return s, nil
}

// lookup finds a runtime by name or alias (case-insensitive) whose version matches
// version: "" or "*" for any, else the version itself or a prefix of it that ends at a
// dot ("3" and "3.11" match "3.11.2").
func (s runtimeSet) lookup(name, version string) (*Runtime, error) {
	r := s.byName[strings.ToLower(name)]
	if r == nil {
		return nil, fieldErr("language", "%q is not a runtime here (%s)", name, strings.Join(s.names(), ", "))
	}
	if version != "" && version != "*" && version != r.Version && !strings.HasPrefix(r.Version, version+".") {
		return nil, fieldErr("version", "%s is at version %s, not %q", r.Name, r.Version, version)
	}
	return r, nil
}

func (s runtimeSet) names() []string {
	out := make([]string, len(s.list))
	for i, r := range s.list {
		out[i] = r.Name
	}
	return out
}
