package server

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sandboxd/sandboxd/api"
	"github.com/sandboxd/sandboxd/gpu"
	"github.com/sandboxd/sandboxd/sandbox"
)

// gpuRequest reads limits.gpus: a count (2), "all", or a list of UUIDs ("GPU-…",
// "MIG-…") or indices; and limits.gpu_wait, how long to wait for busy GPUs.
func gpuRequest(l *api.Limits) (gpu.Request, error) {
	var req gpu.Request
	if l == nil || !present(l.GPUs) {
		return req, nil
	}
	const field = "limits.gpus"
	var all string
	var list []json.RawMessage
	switch {
	case json.Unmarshal(l.GPUs, &all) == nil && all == "all":
		req.All = true
	case json.Unmarshal(l.GPUs, &list) == nil:
		for i, item := range list {
			var uuid string
			if err := json.Unmarshal(item, &uuid); err == nil {
				req.UUIDs = append(req.UUIDs, uuid)
				continue
			}
			idx, err := parseWhole(fmt.Sprintf("%s[%d]", field, i), item)
			if err != nil {
				return req, fieldError(fmt.Sprintf("%s[%d]", field, i), "must be a GPU UUID or index")
			}
			req.Indices = append(req.Indices, int(idx))
		}
		if len(req.UUIDs) > 0 && len(req.Indices) > 0 {
			return req, fieldError(field, "mixes UUIDs and indices")
		}
		if len(list) == 0 {
			return req, fieldError(field, "is an empty list")
		}
	default:
		n, err := parseWhole(field, l.GPUs) // 0 is a valid count: no GPUs
		if err != nil {
			return req, fieldError(field, `must be a count, "all", or a list of UUIDs or indices`)
		}
		req.Count = int(n)
	}
	if present(l.GPUWait) {
		d, err := parseWait("limits.gpu_wait", l.GPUWait)
		if err != nil {
			return req, err
		}
		req.Wait = d
	}
	return req, nil
}

// toLimits parses the run step's limits and the compile step's.
func toLimits(l *api.Limits) (run, compile sandbox.Limits, err error) {
	if l == nil {
		return run, compile, nil
	}
	sizes := []struct {
		name string
		raw  json.RawMessage
		dst  *int64
	}{
		{"memory", l.Memory, &run.Memory}, {"storage", l.Storage, &run.Storage},
		{"file_size", l.FileSize, &run.FileSize}, {"stack", l.Stack, &run.Stack},
		{"io_read_bps", l.IOReadBPS, &run.IOReadBPS}, {"io_write_bps", l.IOWriteBPS, &run.IOWriteBPS},
		{"compile_memory", l.CompileMemory, &compile.Memory},
	}
	counts := []struct {
		name string
		raw  json.RawMessage
		dst  *int64
	}{
		{"pids", l.Pids, &run.Pids}, {"open_files", l.OpenFiles, &run.OpenFiles},
		{"io_read_iops", l.IOReadIOPS, &run.IOReadIOPS}, {"io_write_iops", l.IOWriteIOPS, &run.IOWriteIOPS},
		{"io_weight", l.IOWeight, &run.IOWeight},
	}
	durations := []struct {
		name string
		raw  json.RawMessage
		dst  *time.Duration
	}{{"timeout", l.Timeout, &run.Timeout}, {"cpu_time", l.CPUTime, &run.CPUTime},
		{"compile_timeout", l.CompileTimeout, &compile.Timeout}, {"compile_cpu_time", l.CompileCPUTime, &compile.CPUTime}}
	for _, f := range sizes {
		if present(f.raw) {
			if *f.dst, err = parseBytes("limits."+f.name, f.raw); err != nil {
				return run, compile, err
			}
		}
	}
	for _, f := range counts {
		if present(f.raw) {
			if *f.dst, err = parseCount("limits."+f.name, f.raw); err != nil {
				return run, compile, err
			}
		}
	}
	for _, f := range durations {
		if present(f.raw) {
			if *f.dst, err = parseSeconds("limits."+f.name, f.raw); err != nil {
				return run, compile, err
			}
		}
	}
	if present(l.CPUs) {
		if run.CPUs, err = parseCPUs("limits.cpus", l.CPUs); err != nil {
			return run, compile, err
		}
	}
	return run, compile, nil
}

func present(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

// decodeContent decodes a file's content in its encoding.
func decodeContent(field, content, encoding string) ([]byte, error) {
	switch encoding {
	case "", "utf8", "utf-8":
		return []byte(content), nil
	case "base64":
		b, err := base64.StdEncoding.DecodeString(content)
		if err != nil {
			return nil, fieldError(field+".content", "is not valid base64: "+err.Error())
		}
		return b, nil
	}
	return nil, fieldError(field+".encoding", fmt.Sprintf("%q is not an encoding (utf8, base64)", encoding))
}

// parseExecute turns a /v1 execute body into the engine's request, and says whether
// the answer's output is to be base64.
func parseExecute(req *api.ExecuteRequest) (sandbox.Request, bool, error) {
	var out sandbox.Request
	if req.Code == nil && len(req.Files) == 0 {
		return out, false, fieldError("code", "is required (or files)")
	}
	if req.Code != nil && *req.Code == "" && len(req.Files) > 0 {
		return out, false, fieldError("code", "is empty; leave it out when files are given")
	}
	b64 := false
	switch req.OutputEncoding {
	case "", "utf8", "utf-8":
	case "base64":
		b64 = true
	default:
		return out, false, fieldError("output_encoding", fmt.Sprintf("%q is not an encoding (utf8, base64)", req.OutputEncoding))
	}
	run, compile, err := toLimits(req.Limits)
	if err != nil {
		return out, false, err
	}
	gpus, err := gpuRequest(req.Limits)
	if err != nil {
		return out, false, err
	}
	out = sandbox.Request{Language: req.Language, Version: req.Version, Stdin: []byte(req.Stdin), Args: req.Args,
		Env: req.Env, Collect: req.Collect, Compare: sandbox.Compare(req.Compare), Limits: run, CompileLimits: compile, GPUs: gpus}
	if req.Code != nil {
		out.Code = *req.Code
	}
	for i, f := range req.Files {
		field := fmt.Sprintf("files[%d]", i)
		content, err := decodeContent(field, f.Content, f.Encoding)
		if err != nil {
			return out, false, err
		}
		out.Files = append(out.Files, sandbox.File{Name: f.Name, Content: content})
	}
	for _, t := range req.Tests {
		out.Tests = append(out.Tests, sandbox.Test{Stdin: []byte(t.Stdin), Args: t.Args, Expected: t.ExpectedOutput})
	}
	return out, b64, nil
}

func (s *Server) execute(w http.ResponseWriter, r *http.Request) {
	var body api.ExecuteRequest
	if err := s.decode(r, w, &body, true); err != nil {
		s.fail(w, err)
		return
	}
	req, b64, err := parseExecute(&body)
	if err != nil {
		s.fail(w, err)
		return
	}
	if wantsNDJSON(r) {
		s.executeStream(w, r, req, b64)
		return
	}
	res, err := s.runJob(r, req, "limits.gpus")
	if err != nil {
		s.fail(w, err)
		return
	}
	status := http.StatusOK
	if res.Status == sandbox.StatusInternalError {
		status = http.StatusInternalServerError
	}
	writeJSON(w, status, ToAPI(res, b64))
}

// ToAPI is the wire form of a result; b64 encodes every stdout and stderr in base64.
func ToAPI(res *sandbox.Result, b64 bool) *api.Result {
	out := &api.Result{ID: res.ID, Status: string(res.Status), Runtime: res.Runtime, Version: res.Version, Warm: res.Warm,
		Outcome: outcome(res.Outcome, b64), Limits: api.LimitsView(res.Limits), GPUs: res.GPUs, Error: res.Error}
	if b64 {
		out.OutputEncoding = "base64"
	}
	if res.Compile != nil {
		out.Compile = &api.Stage{Status: string(res.Compile.Status), Outcome: outcome(res.Compile.Outcome, b64)}
	}
	if res.CompileLimits != nil {
		v := api.LimitsView(*res.CompileLimits)
		out.CompileLimits = &v
	}
	if len(res.Tests) > 0 {
		passed := res.TestsPassed
		out.TestsPassed = &passed
	}
	for _, t := range res.Tests {
		out.Tests = append(out.Tests, api.TestResult{Verdict: string(t.Verdict), Status: string(t.Status), Warm: t.Warm, Outcome: outcome(t.Outcome, b64)})
	}
	for _, f := range res.Files {
		cf := api.CollectedFile{Name: f.Name, Size: f.Size, Truncated: f.Truncated, Skipped: f.SkipReason}
		if f.SkipReason == "" {
			cf.Content, cf.Encoding = base64.StdEncoding.EncodeToString(f.Content), "base64"
		}
		out.Files = append(out.Files, cf)
	}
	return out
}

func outcome(o sandbox.Outcome, b64 bool) api.Outcome {
	out := api.Outcome{ExitCode: o.ExitCode, Signal: o.Signal, StdoutTruncated: o.StdoutTruncated, StderrTruncated: o.StderrTruncated,
		WallMS: o.WallMS, CPUMS: o.CPUMS, CPUUserMS: o.CPUUserMS, CPUSystemMS: o.CPUSystemMS, MemoryPeak: o.MemoryPeak,
		OOMKilled: o.OOMKilled, PidsPeak: o.PidsPeak, PidsLimitHit: o.PidsLimitHit, IOReadBytes: o.IOReadBytes, IOWriteBytes: o.IOWriteBytes}
	out.Stdout, out.StdoutLossy = text(o.Stdout, b64)
	out.Stderr, out.StderrLossy = text(o.Stderr, b64)
	return out
}

// text is output as the answer carries it: base64, or as text with invalid UTF-8
// replaced by U+FFFD (lossy says so), never altered silently.
func text(s string, b64 bool) (string, bool) {
	if b64 {
		return base64.StdEncoding.EncodeToString([]byte(s)), false
	}
	if utf8.ValidString(s) {
		return s, false
	}
	return strings.ToValidUTF8(s, "\uFFFD"), true
}

// runtimes serves GET /v1/runtimes.
func (s *Server) runtimes(w http.ResponseWriter, _ *http.Request) {
	out := api.Runtimes{Runtimes: []api.Runtime{}}
	if s.opts.Runtimes != nil {
		for _, rt := range s.opts.Runtimes() {
			a := api.Runtime{Name: rt.Name, Version: rt.Version, Aliases: rt.Aliases, Compiled: rt.Compiled, Warm: rt.Warm,
				Limits: api.LimitsView(rt.Limits.View()), MaxLimits: api.LimitsView(rt.MaxLimits.View())}
			if a.Aliases == nil {
				a.Aliases = []string{}
			}
			if rt.Compiled {
				v := api.LimitsView(rt.CompileLimits.View())
				a.CompileLimits = &v
			}
			out.Runtimes = append(out.Runtimes, a)
		}
	}
	writeJSON(w, http.StatusOK, out)
}
