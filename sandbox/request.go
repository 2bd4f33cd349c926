package sandbox

import (
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/sandboxd/sandboxd/gpu"
)

// Request is one job to run.
type Request struct {
	// ID, if set, is the job's id (a front that hands out ids before the job runs, such
	// as the async API, sets it); else the engine makes one. It must be unique.
	ID string
	// Language names a runtime by name or alias ("" is "python"); Version selects its
	// version ("", "*", or a prefix such as "3.11").
	Language string
	Version  string
	// Code, if set, is the main file (named as the runtime's Main); Files follow it.
	// Without Code, the first of Files is the main file.
	Code  string
	Files []File
	Stdin []byte
	// StdinStream, if set, is read after Stdin and fed to the run step's stdin until it
	// ends (an interactive client); the job's stdin closes then. Not for test cases.
	StdinStream io.Reader
	Args        []string
	// Env is added to the job's environment; names must pass the allowlist (see CheckEnv).
	Env map[string]string
	// Collect are globs (path.Match, relative to /work) of files to return after the run.
	Collect []string
	// Tests, if any, run the program once per test, each in a fresh container; the
	// program is compiled once.
	Tests   []Test
	Compare Compare
	Limits  Limits // zero fields take the runtime's, then the policy's defaults
	// CompileLimits bound the compile step: Timeout, CPUTime and Memory (zero: defaults).
	CompileLimits Limits
	// GPUs selects GPUs for the job (zero value: none). Leases are exclusive; a request
	// that cannot be met fails at once, or after GPUs.Wait if it sets one.
	GPUs gpu.Request
	// Events, if set, is told about the job as it runs: each stage starting, and output
	// chunks as they are read, in order within each stream, until the stream's cap (a
	// last event with Truncated set says the cap was reached). It is called from the
	// engine's goroutines and must not block for long.
	Events func(Event)
}

// File is one file written into /work before the job starts.
type File struct {
	Name    string // relative to /work; may have directories ("src/util.py")
	Content []byte
}

// Test is one test case: the program's stdin and argv, and the expected stdout.
type Test struct {
	Stdin    []byte
	Args     []string
	Expected *string // nil: no comparison, the verdict is the run's status
}

// Compare says how a test's stdout is compared with what it expected.
type Compare string

const (
	// CompareTrim ignores trailing whitespace at the end of each line and at the end of
	// the output (Judge0's rule); the default.
	CompareTrim  Compare = "trim"
	CompareExact Compare = "exact"
)

// Event is something that happened in a running job (Request.Events).
type Event struct {
	Type EventType
	// Stage is "compile" or "run" (a test case's run has Test set, counting from 0).
	Stage Stage
	Test  int
	Data  []byte // output; nil for a stage event
	// Truncated marks the last event of a stream whose cap was reached: Data holds what
	// fitted, and nothing more is sent for the stream.
	Truncated bool
}

type EventType string

const (
	EventStage  EventType = "stage"
	EventStdout EventType = "stdout"
	EventStderr EventType = "stderr"
)

// Stage names a step of a job.
type Stage string

const (
	StageCompile Stage = "compile"
	StageRun     Stage = "run"
	StageTest    Stage = "test"
)

// Caps on what a request may carry besides its limits.
type RequestCaps struct {
	MaxFiles      int   // files in one request
	MaxFilesBytes int64 // their contents together (code included)
	MaxArgs       int   // args of the job or of one test
	MaxArgBytes   int64 // all args of the job together
	MaxEnv        int
	MaxTests      int
	MaxCollect    int   // globs
	CollectFile   int64 // bytes returned of one collected file; larger is listed, not returned
	CollectTotal  int64 // bytes returned of all collected files together
}

// DefaultRequestCaps are what an engine enforces unless Options say otherwise.
var DefaultRequestCaps = RequestCaps{
	MaxFiles: 100, MaxFilesBytes: 8 << 20, MaxArgs: 256, MaxArgBytes: 64 << 10, MaxEnv: 64,
	MaxTests: 256, MaxCollect: 32, CollectFile: 1 << 20, CollectTotal: 8 << 20,
}

// envName is the shape every client environment name must have.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// deniedEnv are names a client may not set, since they change how the runtime itself
// starts or where it looks for code; a runtime may allow some (EnvAllow).
var deniedEnv = []string{
	"PATH", "HOME", "TMPDIR", "PWD", "SHELL", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "BASHOPTS", "PS4",
	"LD_*", "GCONV_PATH", "GLIBC_TUNABLES", "MALLOC_*", "LOCPATH", "NLSPATH", "HOSTALIASES", "RES_OPTIONS",
	"PYTHON*", "NODE_*", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH",
	"GO*", "CGO_*", "RUST*", "CARGO*", "RUBY*", "GEM_*", "BUNDLE_*", "PERL5*", "CC", "CXX", "CFLAGS", "LDFLAGS",
	"SBX_*",
}

func globMatch(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// checkEnv refuses environment names outside the allowlist: the name pattern, and not
// one of deniedEnv unless the runtime allows it.
func checkEnv(rt *Runtime, env map[string]string, caps RequestCaps) error {
	if len(env) > caps.MaxEnv {
		return fieldErr("env", "has %d variables, more than %d", len(env), caps.MaxEnv)
	}
	for k, v := range env {
		f := "env." + k
		switch {
		case !envName.MatchString(k):
			return fieldErr("env", "%q is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)", k)
		case globMatch(deniedEnv, k) && !globMatch(rt.EnvAllow, k):
			return fieldErr(f, "may not be set: it changes how the runtime starts")
		case strings.IndexByte(v, 0) >= 0:
			return fieldErr(f, "holds a NUL byte")
		}
	}
	return nil
}

// checkFileName confines a file name to the work dir.
func checkFileName(name string) error {
	switch {
	case name == "":
		return errors.New("is empty")
	case strings.IndexByte(name, 0) >= 0:
		return errors.New("holds a NUL byte")
	case !utf8.ValidString(name):
		return errors.New("is not valid UTF-8")
	case strings.HasPrefix(name, "/"):
		return errors.New("must be relative to the work dir, not absolute")
	case len(name) > 1024:
		return errors.New("is longer than 1024 bytes")
	}
	for _, part := range strings.Split(name, "/") {
		switch {
		case part == "" || part == ".":
			return errors.New("has an empty or '.' path element")
		case part == "..":
			return errors.New("may not contain '..'")
		case len(part) > 255:
			return errors.New("has a path element longer than 255 bytes")
		}
	}
	if name == outName || strings.HasPrefix(name, outName+"/") {
		return fmt.Errorf("%s is reserved for compiled artifacts", outName)
	}
	return nil
}

// jobFiles is the request's files with the main one first, checked: names confined
// to the work dir, no duplicates (nor a file that is another's directory), within caps.
func jobFiles(rt *Runtime, req Request, caps RequestCaps) ([]File, error) {
	files := req.Files
	if req.Code != "" || len(req.Files) == 0 {
		files = append([]File{{Name: rt.Main, Content: []byte(req.Code)}}, req.Files...)
	}
	// Field indices are the request's: with code, files[0] is files[0] of the request.
	field := func(i int, what string) string {
		if len(files) != len(req.Files) {
			i--
		}
		if i < 0 {
			return "code"
		}
		return fmt.Sprintf("files[%d].%s", i, what)
	}
	if len(req.Files) > caps.MaxFiles {
		return nil, fieldErr("files", "has %d files, more than %d", len(req.Files), caps.MaxFiles)
	}
	seen := map[string]bool{}
	var total int64
	for i, f := range files {
		if err := checkFileName(f.Name); err != nil {
			return nil, fieldErr(field(i, "name"), "%q %v", f.Name, err)
		}
		if seen[f.Name] {
			return nil, fieldErr(field(i, "name"), "%q is given twice", f.Name)
		}
		seen[f.Name] = true
		if total += int64(len(f.Content)); total > caps.MaxFilesBytes {
			return nil, fieldErr(field(i, "content"), "the files together exceed %d bytes", caps.MaxFilesBytes)
		}
	}
	// "a" and "a/b" cannot both be files.
	for name := range seen {
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			if seen[d] {
				for i, f := range files {
					if f.Name == name {
						return nil, fieldErr(field(i, "name"), "%q is inside %q, which is a file", name, d)
					}
				}
			}
		}
	}
	return files, nil
}

func checkArgs(field string, args []string, caps RequestCaps) error {
	if len(args) > caps.MaxArgs {
		return fieldErr(field, "has %d arguments, more than %d", len(args), caps.MaxArgs)
	}
	var n int64
	for i, a := range args {
		if strings.IndexByte(a, 0) >= 0 {
			return fieldErr(fmt.Sprintf("%s[%d]", field, i), "holds a NUL byte")
		}
		if n += int64(len(a)); n > caps.MaxArgBytes {
			return fieldErr(field, "the arguments together exceed %d bytes", caps.MaxArgBytes)
		}
	}
	return nil
}

func checkCollect(globs []string, caps RequestCaps) error {
	if len(globs) > caps.MaxCollect {
		return fieldErr("collect", "has %d globs, more than %d", len(globs), caps.MaxCollect)
	}
	for i, g := range globs {
		f := fmt.Sprintf("collect[%d]", i)
		if strings.HasPrefix(g, "/") {
			g = strings.TrimPrefix(g, WorkDir+"/")
			if strings.HasPrefix(g, "/") {
				return fieldErr(f, "%q must be relative to %s", globs[i], WorkDir)
			}
		}
		if _, err := path.Match(g, ""); err != nil {
			return fieldErr(f, "%q is not a valid glob: %v", globs[i], err)
		}
		for _, part := range strings.Split(g, "/") {
			if part == ".." || part == "" {
				return fieldErr(f, "%q may not contain '..' or empty path elements", globs[i])
			}
		}
	}
	return nil
}
