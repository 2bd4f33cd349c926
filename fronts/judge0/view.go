package judge0

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/sandbox"
	"github.com/sandboxd/sandboxd/server"
)

// fieldNames are the attributes a submission can be asked for (?fields=), as Judge0's
// serializer has them: the submissions table's columns, then status and language.
var fieldNames = []string{
	"source_code", "language_id", "stdin", "expected_output", "stdout", "status_id", "created_at",
	"finished_at", "time", "memory", "stderr", "token", "number_of_runs", "cpu_time_limit",
	"cpu_extra_time", "wall_time_limit", "memory_limit", "stack_limit", "max_processes_and_or_threads",
	"enable_per_process_and_thread_time_limit", "enable_per_process_and_thread_memory_limit",
	"max_file_size", "compile_output", "exit_code", "exit_signal", "message", "wall_time",
	"compiler_options", "command_line_arguments", "redirect_stderr_to_stdout", "callback_url",
	"additional_files", "enable_network", "started_at", "queued_at", "updated_at", "queue_host",
	"execution_host", "status", "language",
}

var defaultFields = []string{"token", "time", "memory", "stdout", "stderr", "compile_output", "message", "status"}

// parseFields is Fields::Submission: names split on commas, "*" for all, unknown
// ones an error, none the defaults.
func parseFields(q string) ([]string, error) {
	if q == "" {
		return defaultFields, nil
	}
	var out, bad []string
	all := false
	for _, f := range strings.Split(q, ",") {
		switch {
		case f == "*":
			all = true
		case !contains(fieldNames, f):
			bad = append(bad, f)
		default:
			out = append(out, f)
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("invalid fields: [%s]", strings.Join(bad, ", "))
	}
	if all {
		return fieldNames, nil
	}
	if len(out) == 0 {
		return defaultFields, nil
	}
	return out, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// verdict is what a finished (or pending) submission reports of its run.
type verdict struct {
	status        int
	stdout        *string
	stderr        *string
	compileOutput *string
	message       *string
	time          *float64 // s
	wallTime      *float64 // s
	memory        *int64   // KB
	exitCode      *int
	exitSignal    *int
}

func ptr[T any](v T) *T { return &v }

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// judge turns a record into Judge0's verdict: IsolateJob's determine_status over each
// run, stopping at the first that is not Accepted, with time and memory averaged over
// the runs made.
func (s *submission) judge(rec Record) verdict {
	switch rec.State {
	case StateQueued:
		return verdict{status: statusQueue}
	case StateRunning:
		return verdict{status: statusProcessing}
	case StateFailed:
		_, _, msg := server.RunError(rec.Err)
		return verdict{status: statusBoxErr, message: ptr(msg)}
	}
	res := rec.Result
	var v verdict
	if res.Compile != nil {
		v.compileOutput = nonEmpty(res.Compile.Stdout + res.Compile.Stderr)
	}
	switch res.Status {
	case sandbox.StatusCompileError:
		v.status = statusCE
		return v
	case sandbox.StatusCompileTimeout:
		v.status, v.compileOutput = statusCE, ptr("Compilation time limit exceeded.")
		return v
	case sandbox.StatusInternalError:
		v.status, v.message = statusBoxErr, ptr(orDefault(res.Error, "the sandbox failed to run the job"))
		return v
	case sandbox.StatusCancelled:
		v.status, v.message = statusBoxErr, ptr("the job was cancelled")
		return v
	}
	type run struct {
		st sandbox.Status
		oc sandbox.Outcome
	}
	runs := []run{{res.Status, res.Outcome}}
	if len(res.Tests) > 0 {
		runs = runs[:0]
		for _, t := range res.Tests {
			runs = append(runs, run{t.Status, t.Outcome})
		}
	}
	var sumTime, sumWall float64
	var sumMem int64
	n := 0
	for _, r := range runs {
		v.fromRun(s, r.st, r.oc)
		sumTime += r.oc.CPUMS / 1000
		sumWall += r.oc.WallMS / 1000
		sumMem += r.oc.MemoryPeak / 1024
		n++
		if v.status != statusAccepted {
			break
		}
	}
	if n > 0 {
		v.time, v.wallTime, v.memory = ptr(round3(sumTime/float64(n))), ptr(round3(sumWall/float64(n))), ptr(sumMem/int64(n))
	}
	return v
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// fromRun sets the verdict of one run as isolate's meta file and determine_status
// would: TO past the CPU limit or the wall clock, SG by signal, RE for a non-zero exit,
// then Accepted or Wrong Answer by the trimmed comparison.
func (v *verdict) fromRun(s *submission, st sandbox.Status, oc sandbox.Outcome) {
	v.stdout, v.stderr = nonEmpty(oc.Stdout), nonEmpty(oc.Stderr)
	v.exitCode, v.exitSignal, v.message = ptr(oc.ExitCode), nil, nil
	sig := 0
	if oc.Signal != "" {
		sig = int(unix.SignalNum(oc.Signal))
		v.exitCode = ptr(0) // isolate gives no exit code for a signalled run
	}
	if st == sandbox.StatusMemoryLimit && sig == 0 {
		sig = int(unix.SIGKILL)
	}
	switch {
	case st == sandbox.StatusTimeout:
		v.status, v.message = statusTLE, ptr("Time limit exceeded (wall clock)")
	case st == sandbox.StatusCPULimit || oc.CPUMS/1000 > s.CPUTimeLimit:
		v.status, v.message = statusTLE, ptr("Time limit exceeded")
	case sig != 0:
		v.status, v.message, v.exitSignal = runtimeErrorBySignal(sig), ptr(fmt.Sprintf("Caught fatal signal %d", sig)), ptr(sig)
	case st == sandbox.StatusError || oc.ExitCode != 0:
		v.status, v.message = statusNZEC, ptr(fmt.Sprintf("Exited with error status %d", oc.ExitCode))
	case st != sandbox.StatusOK && st != sandbox.StatusPassed:
		v.status, v.message = statusBoxErr, ptr("the sandbox failed to run the job")
	case s.ExpectedOutput == nil || (v.stdout != nil && trimOutput(*s.ExpectedOutput) == trimOutput(*v.stdout)):
		v.status = statusAccepted
	default:
		v.status = statusWrong
	}
}

// trimOutput is IsolateJob#strip: each line right-trimmed, then the whole.
func trimOutput(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t\r\v\f\x00")
	}
	return strings.TrimRight(strings.Join(lines, "\n"), " \t\r\n\v\f\x00")
}

// decimal is how Rails renders a decimal column: "0.001", "5.0".
func decimal(v float64) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

func timestamp(rec Record, which string) any {
	t := map[string]time.Time{"created_at": rec.Created, "queued_at": rec.Created, "started_at": rec.Started,
		"finished_at": rec.Finished}[which]
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// errNotUTF8 is Judge0's answer when text cannot go into JSON without base64.
var errNotUTF8 = errors.New("some attributes for this submission cannot be converted to UTF-8, use base64_encoded=true query parameter")

// render is the submission's JSON object with the requested fields: text attributes
// base64 (Ruby's encode64) when b64, else refused if they are not UTF-8.
func (s *submission) render(token string, rec Record, fields []string, b64 bool) (map[string]any, error) {
	v := s.judge(rec)
	txt := func(p *string) (any, error) {
		if p == nil {
			return nil, nil
		}
		if b64 {
			return encode64([]byte(*p)), nil
		}
		if !utf8.ValidString(*p) {
			return nil, errNotUTF8
		}
		return *p, nil
	}
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		var val any
		var err error
		switch f {
		case "source_code":
			val, err = txt(s.SourceCode)
		case "stdin":
			val, err = txt(s.Stdin)
		case "expected_output":
			val, err = txt(s.ExpectedOutput)
		case "stdout":
			val, err = txt(v.stdout)
		case "stderr":
			val, err = txt(v.stderr)
		case "compile_output":
			val, err = txt(v.compileOutput)
		case "message":
			val, err = txt(v.message)
		case "language_id":
			val = s.LanguageID
		case "status_id":
			val = v.status
		case "status":
			val = map[string]any{"id": v.status, "description": statusNames[v.status]}
		case "language":
			val = map[string]any{"id": s.LanguageID, "name": s.LanguageName}
		case "token":
			val = token
		case "time":
			if v.time != nil {
				val = decimal(*v.time)
			}
		case "wall_time":
			if v.wallTime != nil {
				val = decimal(*v.wallTime)
			}
		case "memory":
			if v.memory != nil {
				val = *v.memory
			}
		case "exit_code":
			if v.exitCode != nil {
				val = *v.exitCode
			}
		case "exit_signal":
			if v.exitSignal != nil {
				val = *v.exitSignal
			}
		case "number_of_runs":
			val = s.NumberOfRuns
		case "cpu_time_limit":
			val = decimal(s.CPUTimeLimit)
		case "cpu_extra_time":
			val = decimal(s.CPUExtraTime)
		case "wall_time_limit":
			val = decimal(s.WallTimeLimit)
		case "memory_limit":
			val = s.MemoryLimit
		case "stack_limit":
			val = s.StackLimit
		case "max_processes_and_or_threads":
			val = s.MaxProcesses
		case "max_file_size":
			val = s.MaxFileSize
		case "enable_per_process_and_thread_time_limit", "enable_per_process_and_thread_memory_limit",
			"redirect_stderr_to_stdout", "enable_network":
			val = false
		case "compiler_options", "queue_host", "execution_host":
			val = nil
		case "command_line_arguments":
			if s.CommandLineArguments != nil {
				val = *s.CommandLineArguments
			}
		case "callback_url":
			if s.CallbackURL != nil {
				val = *s.CallbackURL
			}
		case "additional_files":
			if s.AdditionalFiles != nil {
				val = encode64(s.AdditionalFiles)
			}
		case "created_at", "queued_at", "started_at", "finished_at":
			val = timestamp(rec, f)
		case "updated_at":
			val = timestamp(rec, "created_at")
			if !rec.Finished.IsZero() {
				val = timestamp(rec, "finished_at")
			} else if !rec.Started.IsZero() {
				val = timestamp(rec, "started_at")
			}
		}
		if err != nil {
			return nil, err
		}
		out[f] = val
	}
	return out, nil
}
