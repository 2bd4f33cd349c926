// Package piston is a drop-in front for Piston's API v2 (engineer-man/piston,
// docs/api-v2.md and api/src/api/v2.js): GET /api/v2/runtimes, POST /api/v2/execute and
// WS /api/v2/connect, translated onto the one job core through server.Runner, so that
// Piston clients (the npm piston-client among them) work against sandboxd unchanged.
package piston

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/sandbox"
	"github.com/sandboxd/sandboxd/server"
)

// Options wire the front to the daemon.
type Options struct {
	Run      server.Runner                // the gate: every job goes through it
	Runtimes func() []sandbox.RuntimeInfo // the registry, with each runtime's limits in force
	// Signal delivers a /connect client's signal message to its running job
	// (Engine.Signal); nil refuses signal messages as invalid.
	Signal  func(id string, sig unix.Signal) error
	MaxBody int64 // request body cap (default 2 MiB)
	Logger  *slog.Logger
}

// Front serves Piston's API v2.
type Front struct{ opts Options }

// New builds the front.
func New(opts Options) *Front {
	if opts.MaxBody == 0 {
		opts.MaxBody = 2 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Front{opts: opts}
}

// Mux is where the front mounts its routes (*server.Server, *http.ServeMux).
type Mux interface {
	Handle(pattern string, h http.Handler)
}

// Register mounts the front's routes under /api/v2/.
func (f *Front) Register(m Mux) {
	m.Handle("GET /api/v2/runtimes", http.HandlerFunc(f.runtimes))
	m.Handle("POST /api/v2/execute", http.HandlerFunc(f.execute))
	m.Handle("GET /api/v2/connect", http.HandlerFunc(f.connect))
	// Package management installs runtimes into a Piston host; sandboxd ships its
	// runtimes as images, so these are refused plainly rather than faked.
	m.Handle("/api/v2/packages", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, message("package management is not supported: sandboxd's runtimes ship as images (see GET /api/v2/runtimes)"))
	}))
	m.Handle("/api/v2/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, message("no such endpoint: "+r.Method+" "+r.URL.Path))
	}))
}

type errorBody struct {
	Message string `json:"message"`
}

func message(s string) errorBody { return errorBody{Message: s} }

// runtimeView is one entry of GET /api/v2/runtimes. runtime is only given by Piston
// where several runtimes serve one language; sandboxd has one per language.
type runtimeView struct {
	Language string   `json:"language"`
	Version  string   `json:"version"`
	Aliases  []string `json:"aliases"`
	Runtime  string   `json:"runtime,omitempty"`
}

func (f *Front) list() []sandbox.RuntimeInfo {
	if f.opts.Runtimes == nil {
		return nil
	}
	return f.opts.Runtimes()
}

func (f *Front) runtimes(w http.ResponseWriter, _ *http.Request) {
	out := []runtimeView{}
	for _, rt := range f.list() {
		a := rt.Aliases
		if a == nil {
			a = []string{}
		}
		out = append(out, runtimeView{Language: rt.Name, Version: rt.Version, Aliases: a})
	}
	writeJSON(w, http.StatusOK, out)
}

// requestError is a refusal in Piston's shape, 400 {"message": ...} unless status says
// otherwise (429 and 503 for a busy or draining daemon).
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &requestError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// jobBody is an execute request (and a /connect init message): Piston's fields, kept
// raw where Piston checks their type itself.
type jobBody struct {
	Language json.RawMessage `json:"language"`
	Version  json.RawMessage `json:"version"`
	Files    json.RawMessage `json:"files"`
	Stdin    json.RawMessage `json:"stdin"`
	Args     json.RawMessage `json:"args"`

	CompileTimeout     json.RawMessage `json:"compile_timeout"`
	RunTimeout         json.RawMessage `json:"run_timeout"`
	CompileCPUTime     json.RawMessage `json:"compile_cpu_time"`
	RunCPUTime         json.RawMessage `json:"run_cpu_time"`
	CompileMemoryLimit json.RawMessage `json:"compile_memory_limit"`
	RunMemoryLimit     json.RawMessage `json:"run_memory_limit"`
}

type fileBody struct {
	Name     json.RawMessage `json:"name"`
	Content  json.RawMessage `json:"content"`
	Encoding json.RawMessage `json:"encoding"`
}

func present(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

func asString(raw json.RawMessage) (string, bool) {
	var s string
	if !present(raw) || json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// job is a parsed request: the engine's request and what the answer names.
type job struct {
	req      sandbox.Request
	rt       sandbox.RuntimeInfo
	fileIdx  []int // the client's index of each of req.Files
	mainIdx  int   // the client's index of the main file
	mainCode bool  // the main file went in as Code (it had no name)
}

// parse checks a request in the order Piston's get_job does, with its messages.
func (f *Front) parse(b *jobBody) (*job, error) {
	lang, ok := asString(b.Language)
	if !ok || lang == "" {
		return nil, badRequest("language is required as a string")
	}
	ver, ok := asString(b.Version)
	if !ok || ver == "" {
		return nil, badRequest("version is required as a string")
	}
	var files []fileBody
	if !present(b.Files) || json.Unmarshal(b.Files, &files) != nil {
		return nil, badRequest("files is required as an array")
	}
	for i, fb := range files {
		if _, ok := asString(fb.Content); !ok {
			return nil, badRequest("files[%d].content is required as a string", i)
		}
	}
	rt, ok := f.match(lang, ver)
	if !ok {
		return nil, badRequest("%s-%s runtime is unknown", lang, ver)
	}
	j := &job{rt: rt, mainIdx: -1}
	j.req.Language, j.req.Version = rt.Name, rt.Version
	for i, fb := range files {
		content, _ := asString(fb.Content)
		enc := "utf8"
		if present(fb.Encoding) {
			if enc, ok = asString(fb.Encoding); !ok {
				return nil, badRequest("files[%d].encoding must be a string", i)
			}
		}
		var data []byte
		switch enc {
		case "utf8":
			data = []byte(content)
		case "base64":
			d, err := base64.StdEncoding.DecodeString(content)
			if err != nil {
				return nil, badRequest("files[%d].content is not valid base64", i)
			}
			data = d
		case "hex":
			d, err := hex.DecodeString(content)
			if err != nil {
				return nil, badRequest("files[%d].content is not valid hex", i)
			}
			data = d
		default:
			return nil, badRequest("files[%d].encoding must be one of utf8, base64, hex", i)
		}
		name := ""
		if present(fb.Name) {
			if name, ok = asString(fb.Name); !ok {
				return nil, badRequest("files[%d].name must be a string", i)
			}
		}
		// Piston runs the first utf8 file; a file without a name gets one.
		if j.mainIdx < 0 && enc == "utf8" {
			j.mainIdx = i
			if name == "" {
				// The runtime names it (main.py, Main.java, ...): it goes in as Code.
				j.req.Code, j.mainCode = string(data), true
				continue
			}
			j.req.Files = append([]sandbox.File{{Name: name, Content: data}}, j.req.Files...)
			j.fileIdx = append([]int{i}, j.fileIdx...)
			continue
		}
		if name == "" {
			name = fmt.Sprintf("file%d", i)
		}
		j.req.Files = append(j.req.Files, sandbox.File{Name: name, Content: data})
		j.fileIdx = append(j.fileIdx, i)
	}
	if j.mainIdx < 0 {
		return nil, badRequest("files must include at least one utf8 encoded file")
	}
	if j.mainCode && j.req.Code == "" && len(j.req.Files) > 0 {
		// An empty Code would make the next file the main one.
		return nil, badRequest("files[%d].content is empty", j.mainIdx)
	}
	if present(b.Stdin) {
		s, ok := asString(b.Stdin)
		if !ok {
			return nil, badRequest("stdin must be a string")
		}
		j.req.Stdin = []byte(s)
	}
	if present(b.Args) {
		var args []json.RawMessage
		if json.Unmarshal(b.Args, &args) != nil {
			return nil, badRequest("args must be an array")
		}
		for i, a := range args {
			s, ok := asString(a)
			if !ok {
				// Piston passes numbers through as their text; so do we.
				var n json.Number
				if json.Unmarshal(a, &n) != nil {
					return nil, badRequest("args[%d] must be a string", i)
				}
				s = n.String()
			}
			j.req.Args = append(j.req.Args, s)
		}
	}
	if err := f.limits(b, j); err != nil {
		return nil, err
	}
	return j, nil
}

// limits maps Piston's six constraints (ms and bytes) onto the run and compile limits.
// Absent, null or 0 take the default; -1 takes the daemon's maximum (Piston's "no
// limit"); above the maximum is refused naming the field.
func (f *Front) limits(b *jobBody, j *job) error {
	max := j.rt.MaxLimits
	type constraint struct {
		name    string
		raw     json.RawMessage
		compile bool
		max     int64 // in the field's unit
		set     func(l *sandbox.Limits, v int64)
	}
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	cs := []constraint{
		{"compile_memory_limit", b.CompileMemoryLimit, true, max.Memory, func(l *sandbox.Limits, v int64) { l.Memory = v }},
		{"run_memory_limit", b.RunMemoryLimit, false, max.Memory, func(l *sandbox.Limits, v int64) { l.Memory = v }},
		{"compile_timeout", b.CompileTimeout, true, ms(max.Timeout), func(l *sandbox.Limits, v int64) { l.Timeout = time.Duration(v) * time.Millisecond }},
		{"run_timeout", b.RunTimeout, false, ms(max.Timeout), func(l *sandbox.Limits, v int64) { l.Timeout = time.Duration(v) * time.Millisecond }},
		{"compile_cpu_time", b.CompileCPUTime, true, ms(max.CPUTime), func(l *sandbox.Limits, v int64) { l.CPUTime = time.Duration(v) * time.Millisecond }},
		{"run_cpu_time", b.RunCPUTime, false, ms(max.CPUTime), func(l *sandbox.Limits, v int64) { l.CPUTime = time.Duration(v) * time.Millisecond }},
	}
	for _, c := range cs {
		if !present(c.raw) {
			continue
		}
		var n float64
		if err := json.Unmarshal(c.raw, &n); err != nil {
			return badRequest("If specified, %s must be a number", c.name)
		}
		if n == 0 {
			continue
		}
		v := int64(n)
		switch {
		case n == -1:
			v = c.max
		case n > float64(c.max):
			return badRequest("%s cannot exceed the configured limit of %d", c.name, c.max)
		case n < 0:
			return badRequest("%s must be non-negative", c.name)
		case n != float64(v):
			return badRequest("%s must be a whole number", c.name)
		}
		if c.compile {
			// Piston's clients send compile limits for every language; an interpreted
			// runtime has no compile step to apply them to.
			if j.rt.Compiled {
				c.set(&j.req.CompileLimits, v)
			}
			continue
		}
		c.set(&j.req.Limits, v)
	}
	return nil
}

// Fields of the engine's errors, as Piston names them.
var limitFields = map[string]string{
	"limits.timeout": "run_timeout", "limits.cpu_time": "run_cpu_time", "limits.memory": "run_memory_limit",
	"limits.compile_timeout": "compile_timeout", "limits.compile_cpu_time": "compile_cpu_time",
	"limits.compile_memory": "compile_memory_limit",
}

var fileField = regexp.MustCompile(`^files\[(\d+)\]`)

// field renames an engine field ("files[0].name", "code", "limits.memory") to the
// client's request.
func (j *job) field(f string) string {
	if n, ok := limitFields[f]; ok {
		return n
	}
	if f == "code" {
		return fmt.Sprintf("files[%d].content", j.mainIdx)
	}
	if m := fileField.FindStringSubmatch(f); m != nil {
		if i, err := strconv.Atoi(m[1]); err == nil && i < len(j.fileIdx) {
			return fmt.Sprintf("files[%d]", j.fileIdx[i]) + f[len(m[0]):]
		}
	}
	return f
}

// runError turns the runner's refusal into Piston's shape.
func (j *job) runError(err error) *requestError {
	status, field, msg := server.RunError(err)
	if field != "" {
		msg = j.field(field) + ": " + msg
	}
	return &requestError{status: status, msg: msg}
}

// stageView is a stage of the answer: run or compile.
type stageView struct {
	Stdout   string  `json:"stdout"`
	Stderr   string  `json:"stderr"`
	Output   string  `json:"output"`
	Code     *int    `json:"code"`
	Signal   *string `json:"signal"`
	Message  *string `json:"message"`
	Status   *string `json:"status"`
	CPUTime  float64 `json:"cpu_time"`  // ms
	WallTime float64 `json:"wall_time"` // ms
	Memory   int64   `json:"memory"`    // bytes
}

type executeView struct {
	Language string     `json:"language"`
	Version  string     `json:"version"`
	Run      stageView  `json:"run"`
	Compile  *stageView `json:"compile,omitempty"`
}

// output gathers each stage's stdout and stderr in the order they were read, as
// Piston's output field has them.
type output struct {
	mu     sync.Mutex
	stages map[sandbox.Stage]*bytes.Buffer
}

func (o *output) event(ev sandbox.Event) {
	if ev.Type == sandbox.EventStage {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stages == nil {
		o.stages = map[sandbox.Stage]*bytes.Buffer{}
	}
	b := o.stages[ev.Stage]
	if b == nil {
		b = &bytes.Buffer{}
		o.stages[ev.Stage] = b
	}
	b.Write(ev.Data)
}

func (o *output) combined(st sandbox.Stage, oc sandbox.Outcome) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var got string
	if b := o.stages[st]; b != nil {
		got = b.String()
	}
	if len(got) != len(oc.Stdout)+len(oc.Stderr) {
		got = oc.Stdout + oc.Stderr // events and result disagree: never report a partial mix
	}
	return got
}

func ptr[T any](v T) *T { return &v }

// stage maps an outcome onto Piston's fields: code or signal (never both), and the
// status and message isolate would have given.
func stage(st sandbox.Status, oc sandbox.Outcome, combined string) stageView {
	v := stageView{Stdout: text(oc.Stdout), Stderr: text(oc.Stderr), Output: text(combined),
		CPUTime: oc.CPUMS, WallTime: oc.WallMS, Memory: oc.MemoryPeak}
	if oc.Signal != "" {
		v.Signal = ptr(oc.Signal)
	} else {
		v.Code = ptr(oc.ExitCode)
	}
	set := func(status, msg string) { v.Status, v.Message = ptr(status), ptr(msg) }
	switch st {
	case sandbox.StatusOK:
	case sandbox.StatusError, sandbox.StatusCompileError, sandbox.StatusWrongAnswer:
		if oc.Signal != "" {
			set("SG", fmt.Sprintf("Caught fatal signal %d", unix.SignalNum(oc.Signal)))
		} else if oc.ExitCode != 0 {
			set("RE", fmt.Sprintf("Exited with error status %d", oc.ExitCode))
		}
	case sandbox.StatusSignaled:
		set("SG", fmt.Sprintf("Caught fatal signal %d", unix.SignalNum(oc.Signal)))
	case sandbox.StatusMemoryLimit:
		set("SG", fmt.Sprintf("Caught fatal signal %d (out of memory)", unix.SignalNum(orKill(oc.Signal))))
	case sandbox.StatusTimeout:
		set("TO", "Time limit exceeded (wall clock)")
	case sandbox.StatusCPULimit, sandbox.StatusCompileTimeout:
		set("TO", "Time limit exceeded")
	default: // internal_error, cancelled
		set("XX", "the sandbox failed to run the job")
	}
	switch st {
	case sandbox.StatusTimeout, sandbox.StatusCPULimit, sandbox.StatusCompileTimeout:
		// Piston reports a killed run's signal as SIGKILL, with no code.
		v.Signal, v.Code = ptr(orKill(oc.Signal)), nil
	}
	if v.Status == nil || *v.Status == "RE" {
		if oc.StdoutTruncated {
			set("OL", "stdout length exceeded")
		} else if oc.StderrTruncated {
			set("EL", "stderr length exceeded")
		}
	}
	return v
}

func orKill(sig string) string {
	if sig == "" {
		return "SIGKILL"
	}
	return sig
}

// text is output as Piston sends it: Node's Buffer.toString, which replaces invalid
// UTF-8 with U+FFFD.
func text(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// view is the execute answer. A job whose compile step failed has no run: Piston then
// repeats the compile stage as run, for older clients.
func view(res *sandbox.Result, out *output) executeView {
	v := executeView{Language: res.Runtime, Version: res.Version}
	runStatus := res.Status
	if res.Compile != nil {
		c := stage(res.Compile.Status, res.Compile.Outcome, out.combined(sandbox.StageCompile, res.Compile.Outcome))
		v.Compile = &c
		if res.Status == sandbox.StatusCompileError || res.Status == sandbox.StatusCompileTimeout {
			v.Run = c
			return v
		}
	}
	if res.Status == sandbox.StatusInternalError && res.Error != "" {
		runStatus = sandbox.StatusInternalError
	}
	v.Run = stage(runStatus, res.Outcome, out.combined(sandbox.StageRun, res.Outcome))
	return v
}

func (f *Front) readBody(w http.ResponseWriter, r *http.Request, v any) error {
	// Piston refuses anything but application/json with 415; its npm client sends no
	// Content-Type (node-fetch labels a string body text/plain), so the body is read as
	// JSON whatever the header says.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, f.opts.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &requestError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body exceeds %d bytes", f.opts.MaxBody)}
		}
		return badRequest("could not read the request body")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return badRequest("request body is not a JSON object: %v", err)
	}
	return nil
}

func (f *Front) execute(w http.ResponseWriter, r *http.Request) {
	var b jobBody
	if err := f.readBody(w, r, &b); err != nil {
		fail(w, err)
		return
	}
	j, err := f.parse(&b)
	if err != nil {
		fail(w, err)
		return
	}
	var out output
	j.req.Events = out.event
	res, err := f.opts.Run.Run(r.Context(), j.req)
	if err != nil {
		fail(w, j.runError(err))
		return
	}
	writeJSON(w, http.StatusOK, view(res, &out))
}

func fail(w http.ResponseWriter, err error) {
	var re *requestError
	if !errors.As(err, &re) {
		re = &requestError{status: http.StatusInternalServerError, msg: "internal error"}
	}
	if re.status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, re.status, message(re.msg))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
