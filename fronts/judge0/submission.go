package judge0

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/shlex"

	"github.com/sandboxd/sandboxd/sandbox"
)

// submissionBody is what a client sends: Judge0's permitted parameters, raw, since
// Rails casts "4" and 4 alike.
type submissionBody struct {
	SourceCode           json.RawMessage `json:"source_code"`
	LanguageID           json.RawMessage `json:"language_id"`
	CompilerOptions      json.RawMessage `json:"compiler_options"`
	CommandLineArguments json.RawMessage `json:"command_line_arguments"`
	NumberOfRuns         json.RawMessage `json:"number_of_runs"`
	Stdin                json.RawMessage `json:"stdin"`
	ExpectedOutput       json.RawMessage `json:"expected_output"`
	CPUTimeLimit         json.RawMessage `json:"cpu_time_limit"`
	CPUExtraTime         json.RawMessage `json:"cpu_extra_time"`
	WallTimeLimit        json.RawMessage `json:"wall_time_limit"`
	MemoryLimit          json.RawMessage `json:"memory_limit"`
	StackLimit           json.RawMessage `json:"stack_limit"`
	MaxProcesses         json.RawMessage `json:"max_processes_and_or_threads"`
	PerProcessTime       json.RawMessage `json:"enable_per_process_and_thread_time_limit"`
	PerProcessMemory     json.RawMessage `json:"enable_per_process_and_thread_memory_limit"`
	MaxFileSize          json.RawMessage `json:"max_file_size"`
	RedirectStderr       json.RawMessage `json:"redirect_stderr_to_stdout"`
	CallbackURL          json.RawMessage `json:"callback_url"`
	AdditionalFiles      json.RawMessage `json:"additional_files"`
	EnableNetwork        json.RawMessage `json:"enable_network"`
}

// submission is a checked submission as it is kept with its job (Record.Meta): the
// request's attributes (text as given, decoded) and the limits it runs under.
type submission struct {
	SourceCode           *string  `json:"source_code"`
	LanguageID           int      `json:"language_id"`
	LanguageName         string   `json:"language_name"`
	Stdin                *string  `json:"stdin"`
	ExpectedOutput       *string  `json:"expected_output"`
	CommandLineArguments *string  `json:"command_line_arguments"`
	NumberOfRuns         int      `json:"number_of_runs"`
	CPUTimeLimit         float64  `json:"cpu_time_limit"`
	CPUExtraTime         float64  `json:"cpu_extra_time"`
	WallTimeLimit        float64  `json:"wall_time_limit"`
	MemoryLimit          int64    `json:"memory_limit"`
	StackLimit           int64    `json:"stack_limit"`
	MaxProcesses         int64    `json:"max_processes_and_or_threads"`
	MaxFileSize          int64    `json:"max_file_size"`
	CallbackURL          *string  `json:"callback_url"`
	AdditionalFiles      []byte   `json:"additional_files"`
	Args                 []string `json:"-"`
}

// errs is Judge0's 422 body: each field's messages.
type errs map[string][]string

func (e errs) add(field, format string, args ...any) {
	e[field] = append(e[field], fmt.Sprintf(format, args...))
}

// Caps from Judge0's configuration that sandboxd keeps (config_info reports them).
const (
	maxNumberOfRuns = 20
	maxExtractKB    = 10240 // additional_files, unzipped
	maxBatch        = 20
	maxArgChars     = 512
	defaultExtra    = 1.0 // s: Judge0's CPU_EXTRA_TIME
)

// Floors below which a job cannot start (sandbox's minimums), in Judge0's units.
const (
	minMemoryKB = 16 << 10
	minStackKB  = 256
	minFileKB   = 1
	minPids     = 4
)

func present(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

// number reads a Rails-cast number: a JSON number or a numeric string.
func number(raw json.RawMessage) (float64, bool) {
	var n float64
	if json.Unmarshal(raw, &n) == nil {
		return n, !math.IsNaN(n) && !math.IsInf(n, 0)
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return 0, false
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return n, err == nil && !math.IsNaN(n) && !math.IsInf(n, 0)
}

// boolean reads a Rails-cast boolean: true/false, "true"/"false", 1/0.
func boolean(raw json.RawMessage) (bool, bool) {
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return b, true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		switch strings.ToLower(s) {
		case "true", "1", "t":
			return true, true
		case "false", "0", "f", "":
			return false, true
		}
	}
	if n, ok := number(raw); ok && (n == 0 || n == 1) {
		return n == 1, true
	}
	return false, false
}

// text reads a text attribute; base64 decodes it as Ruby's Base64.decode64 does (line
// breaks allowed), refusing what is not base64 rather than guessing.
func text(e errs, field string, raw json.RawMessage, b64 bool) *string {
	if !present(raw) {
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		var n json.Number
		if json.Unmarshal(raw, &n) != nil {
			e.add(field, "must be a string")
			return nil
		}
		s = n.String()
	}
	if b64 {
		d, err := decodeBase64(s)
		if err != nil {
			e.add(field, "is not valid Base64 (base64_encoded=true)")
			return nil
		}
		s = string(d)
	}
	return &s
}

func decodeBase64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, s)
	if d, err := base64.StdEncoding.DecodeString(s); err == nil {
		return d, nil
	}
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

// encode64 is Ruby's Base64.encode64: lines of 60 characters, each ending in "\n",
// which is what Judge0 answers with under base64_encoded=true.
func encode64(b []byte) string {
	s := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	for len(s) > 60 {
		out.WriteString(s[:60])
		out.WriteByte('\n')
		s = s[60:]
	}
	if s != "" {
		out.WriteString(s)
		out.WriteByte('\n')
	}
	return out.String()
}

// parse checks a submission as Judge0's model does (every failing validation is
// reported) and builds the job. A nil request with a non-empty errs is a 422.
func (f *Front) parse(b *submissionBody, b64 bool) (*submission, *sandbox.Request, errs) {
	e := errs{}
	s := &submission{}
	s.SourceCode = text(e, "source_code", b.SourceCode, b64)
	if s.SourceCode == nil || strings.TrimSpace(*s.SourceCode) == "" {
		if _, bad := e["source_code"]; !bad {
			e.add("source_code", "can't be blank")
		}
	}
	s.Stdin = text(e, "stdin", b.Stdin, b64)
	s.ExpectedOutput = text(e, "expected_output", b.ExpectedOutput, b64)

	var lang installed
	var haveLang bool
	if !present(b.LanguageID) {
		e.add("language_id", "can't be blank")
	} else if n, ok := number(b.LanguageID); !ok || n != math.Trunc(n) {
		e.add("language_id", "language with id %s doesn't exist", strings.Trim(string(b.LanguageID), `"`))
	} else if lang, haveLang = f.language(int(n)); !haveLang {
		e.add("language_id", "language with id %d doesn't exist", int(n))
	} else {
		s.LanguageID, s.LanguageName = lang.ID, lang.name()
	}

	if present(b.CompilerOptions) {
		if co, _ := stringOf(b.CompilerOptions); strings.TrimSpace(co) != "" {
			e.add("compiler_options", "setting compiler options is not allowed")
		}
	}
	if present(b.CommandLineArguments) {
		a, ok := stringOf(b.CommandLineArguments)
		switch {
		case !ok:
			e.add("command_line_arguments", "must be a string")
		case len([]rune(a)) > maxArgChars:
			e.add("command_line_arguments", "is too long (maximum is %d characters)", maxArgChars)
		default:
			s.CommandLineArguments = &a
			// Judge0 strips shell metacharacters, then the shell splits the words.
			clean := strings.Map(func(r rune) rune {
				if strings.ContainsRune("$&;<>|`", r) {
					return -1
				}
				return r
			}, strings.TrimSpace(a))
			args, err := shlex.Split(clean)
			if err != nil {
				e.add("command_line_arguments", "cannot be split into words: %v", err)
			}
			s.Args = args
		}
	}
	for _, flag := range []struct {
		name string
		raw  json.RawMessage
		msg  string
	}{
		{"enable_per_process_and_thread_time_limit", b.PerProcessTime, "this option cannot be enabled"},
		{"enable_per_process_and_thread_memory_limit", b.PerProcessMemory, "this option cannot be enabled"},
		{"enable_network", b.EnableNetwork, "enabling network is not allowed"},
	} {
		if present(flag.raw) {
			v, ok := boolean(flag.raw)
			if !ok {
				e.add(flag.name, "is not a boolean")
			} else if v {
				e.add(flag.name, "%s", flag.msg)
			}
		}
	}
	if present(b.RedirectStderr) {
		// isolate joins the two descriptors; sandboxd keeps the streams apart and
		// would have to guess their interleaving, so true is refused, not imitated.
		if v, ok := boolean(b.RedirectStderr); !ok {
			e.add("redirect_stderr_to_stdout", "is not a boolean")
		} else if v {
			e.add("redirect_stderr_to_stdout", "is not supported: stdout and stderr are kept apart")
		}
	}
	if present(b.CallbackURL) {
		u, ok := stringOf(b.CallbackURL)
		if !ok || !(strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")) {
			e.add("callback_url", "must be an http or https URL")
		} else {
			s.CallbackURL = &u
		}
	}
	var files []sandbox.File
	if present(b.AdditionalFiles) {
		var err error
		if s.AdditionalFiles, files, err = unzipFiles(b.AdditionalFiles); err != nil {
			e.add("additional_files", "%v", err)
		}
	}

	rt := lang.rt
	if !haveLang { // check the limits against the daemon's policy all the same
		p := f.policy()
		rt = sandbox.RuntimeInfo{Limits: p.Default, MaxLimits: p.Max}
	}
	lim := f.limits(e, b, s, rt)
	if len(e) > 0 {
		return nil, nil, e
	}
	req := &sandbox.Request{Language: lang.rt.Name, Version: lang.rt.Version, Code: *s.SourceCode, Files: files, Limits: lim, Args: s.Args}
	if s.Stdin != nil {
		req.Stdin = []byte(*s.Stdin)
	}
	if s.NumberOfRuns > 1 {
		// Judge0 runs the program number_of_runs times: test cases run it that many
		// times after one compile, each in a fresh container.
		for range s.NumberOfRuns {
			req.Tests = append(req.Tests, sandbox.Test{Stdin: req.Stdin, Args: req.Args})
		}
		req.Stdin, req.Args = nil, nil
	}
	return s, req, nil
}

func stringOf(raw json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// limits reads Judge0's configuration variables in its units (s, KB) with the
// runtime's defaults, within the daemon's maximums and sandbox's floors, with Rails'
// numericality messages.
func (f *Front) limits(e errs, b *submissionBody, s *submission, rt sandbox.RuntimeInfo) sandbox.Limits {
	def, max := rt.Limits, rt.MaxLimits
	secs := func(d time.Duration) float64 { return d.Seconds() }
	kb := func(v int64) int64 { return v / 1024 }
	read := func(field string, raw json.RawMessage, whole bool, lo float64, loStrict bool, hi float64, def float64) float64 {
		if !present(raw) {
			return def
		}
		n, ok := number(raw)
		switch {
		case !ok:
			e.add(field, "is not a number")
		case whole && n != math.Trunc(n):
			e.add(field, "must be an integer")
		case loStrict && n <= lo:
			e.add(field, "must be greater than %s", num(lo))
		case !loStrict && n < lo:
			e.add(field, "must be greater than or equal to %s", num(lo))
		case n > hi:
			e.add(field, "must be less than or equal to %s", num(hi))
		default:
			return n
		}
		return def
	}
	s.NumberOfRuns = int(read("number_of_runs", b.NumberOfRuns, true, 0, true, maxNumberOfRuns, 1))
	maxCPU := secs(max.CPUTime)
	defCPU, defExtra := cpuDefaults(def.CPUTime)
	s.CPUTimeLimit = read("cpu_time_limit", b.CPUTimeLimit, false, 0, false, maxCPU, defCPU)
	if s.CPUTimeLimit == 0 {
		s.CPUTimeLimit = maxCPU // isolate's 0: no limit; here the daemon's maximum
	}
	if present(b.CPUTimeLimit) || s.CPUTimeLimit+defExtra > maxCPU {
		defExtra = math.Min(defaultExtra, maxCPU-s.CPUTimeLimit)
	}
	s.CPUExtraTime = read("cpu_extra_time", b.CPUExtraTime, false, 0, false, maxCPU-s.CPUTimeLimit, defExtra)
	s.WallTimeLimit = read("wall_time_limit", b.WallTimeLimit, false, math.Min(1, secs(max.Timeout)), false, secs(max.Timeout), secs(def.Timeout))
	s.MemoryLimit = int64(read("memory_limit", b.MemoryLimit, true, minMemoryKB, false, float64(kb(max.Memory)), float64(kb(def.Memory))))
	s.StackLimit = int64(read("stack_limit", b.StackLimit, true, 0, false, float64(kb(max.Stack)), float64(kb(def.Stack))))
	if s.StackLimit == 0 {
		s.StackLimit = kb(max.Stack)
	} else if s.StackLimit < minStackKB {
		e.add("stack_limit", "must be greater than or equal to %d", minStackKB)
	}
	s.MaxProcesses = int64(read("max_processes_and_or_threads", b.MaxProcesses, true, minPids, false, float64(max.Pids), float64(def.Pids)))
	s.MaxFileSize = int64(read("max_file_size", b.MaxFileSize, true, minFileKB, false, float64(kb(max.FileSize)), float64(kb(def.FileSize))))
	// isolate kills at cpu_time_limit + cpu_extra_time; the verdict is TLE past the limit.
	return sandbox.Limits{
		CPUTime:  time.Duration((s.CPUTimeLimit + s.CPUExtraTime) * float64(time.Second)),
		Timeout:  time.Duration(s.WallTimeLimit * float64(time.Second)),
		Memory:   s.MemoryLimit * 1024,
		Stack:    s.StackLimit * 1024,
		Pids:     s.MaxProcesses,
		FileSize: s.MaxFileSize * 1024,
	}
}

// cpuDefaults splits the daemon's default CPU time into Judge0's cpu_time_limit and
// cpu_extra_time, so that a submission that sets neither runs under exactly the
// daemon's default (and so on a warm container, whose rlimits cannot be raised).
func cpuDefaults(def time.Duration) (limit, extra float64) {
	extra = math.Min(defaultExtra, def.Seconds()/2)
	return def.Seconds() - extra, extra
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// unzipFiles reads additional_files: a base64 zip whose regular files are written
// beside the source code. Names are confined to the work dir; links and other special
// entries are refused; the unzipped total is capped (Judge0's max_extract_size).
func unzipFiles(raw json.RawMessage) ([]byte, []sandbox.File, error) {
	s, ok := stringOf(raw)
	if !ok {
		return nil, nil, fmt.Errorf("must be a Base64 encoded string")
	}
	data, err := decodeBase64(s)
	if err != nil {
		return nil, nil, fmt.Errorf("is not valid Base64")
	}
	if len(data) == 0 {
		return nil, nil, nil
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, nil, fmt.Errorf("is not a valid .zip archive")
	}
	var files []sandbox.File
	var total int64
	for _, zf := range zr.File {
		name := strings.TrimPrefix(zf.Name, "./")
		if zf.FileInfo().IsDir() || strings.HasSuffix(name, "/") {
			continue
		}
		if !zf.Mode().IsRegular() {
			return nil, nil, fmt.Errorf("holds %q, which is not a regular file", zf.Name)
		}
		clean := path.Clean(name)
		if name == "" || path.IsAbs(name) || clean != name || clean == ".." || strings.HasPrefix(clean, "../") || strings.Contains(name, "\\") {
			return nil, nil, fmt.Errorf("holds %q, a name outside the working directory", zf.Name)
		}
		if name == "compile" || name == "run" {
			// Judge0 reads these only for its multi-file language (89), which sandboxd
			// does not offer; written beside a single-file program they would mislead.
			return nil, nil, fmt.Errorf("holds %q: compile and run scripts (language 89, multi-file programs) are not supported", name)
		}
		rc, err := zf.Open()
		if err != nil {
			return nil, nil, fmt.Errorf("holds %q, which cannot be read: %v", zf.Name, err)
		}
		b, err := io.ReadAll(io.LimitReader(rc, maxExtractKB*1024-total+1))
		rc.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("holds %q, which cannot be read: %v", zf.Name, err)
		}
		if total += int64(len(b)); total > maxExtractKB*1024 {
			return nil, nil, fmt.Errorf("unzips to more than %d KB", maxExtractKB)
		}
		files = append(files, sandbox.File{Name: name, Content: b})
	}
	sort.SliceStable(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	return data, files, nil
}
