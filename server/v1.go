package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/sandboxd/sandboxd/gpu"
	"github.com/sandboxd/sandboxd/sandbox"
)

// executeRequest is POST /v1/execute's body.
type executeRequest struct {
	Language string         `json:"language"`
	Code     *string        `json:"code"`
	Stdin    string         `json:"stdin"`
	Limits   *limitsRequest `json:"limits"`
}

// limitsRequest keeps each limit raw so its parser can accept a number or a string
// and name the field when it cannot.
type limitsRequest struct {
	CPUs        json.RawMessage `json:"cpus"`
	CPUTime     json.RawMessage `json:"cpu_time"`
	Memory      json.RawMessage `json:"memory"`
	Storage     json.RawMessage `json:"storage"`
	Pids        json.RawMessage `json:"pids"`
	Timeout     json.RawMessage `json:"timeout"`
	OpenFiles   json.RawMessage `json:"open_files"`
	FileSize    json.RawMessage `json:"file_size"`
	Stack       json.RawMessage `json:"stack"`
	IOReadBPS   json.RawMessage `json:"io_read_bps"`
	IOWriteBPS  json.RawMessage `json:"io_write_bps"`
	IOReadIOPS  json.RawMessage `json:"io_read_iops"`
	IOWriteIOPS json.RawMessage `json:"io_write_iops"`
	IOWeight    json.RawMessage `json:"io_weight"`
	GPUs        json.RawMessage `json:"gpus"`
	GPUWait     json.RawMessage `json:"gpu_wait"`
}

// gpuRequest reads limits.gpus: a count (2), "all", or a list of UUIDs ("GPU-…",
// "MIG-…") or indices; and limits.gpu_wait, how long to wait for busy GPUs.
func (l *limitsRequest) gpuRequest() (gpu.Request, error) {
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

func (l *limitsRequest) toLimits() (sandbox.Limits, error) {
	var out sandbox.Limits
	if l == nil {
		return out, nil
	}
	sizes := []struct {
		name string
		raw  json.RawMessage
		dst  *int64
	}{
		{"memory", l.Memory, &out.Memory}, {"storage", l.Storage, &out.Storage},
		{"file_size", l.FileSize, &out.FileSize}, {"stack", l.Stack, &out.Stack},
		{"io_read_bps", l.IOReadBPS, &out.IOReadBPS}, {"io_write_bps", l.IOWriteBPS, &out.IOWriteBPS},
	}
	counts := []struct {
		name string
		raw  json.RawMessage
		dst  *int64
	}{
		{"pids", l.Pids, &out.Pids}, {"open_files", l.OpenFiles, &out.OpenFiles},
		{"io_read_iops", l.IOReadIOPS, &out.IOReadIOPS}, {"io_write_iops", l.IOWriteIOPS, &out.IOWriteIOPS},
		{"io_weight", l.IOWeight, &out.IOWeight},
	}
	durations := []struct {
		name string
		raw  json.RawMessage
		dst  *time.Duration
	}{{"timeout", l.Timeout, &out.Timeout}, {"cpu_time", l.CPUTime, &out.CPUTime}}
	var err error
	for _, f := range sizes {
		if present(f.raw) {
			if *f.dst, err = parseBytes("limits."+f.name, f.raw); err != nil {
				return out, err
			}
		}
	}
	for _, f := range counts {
		if present(f.raw) {
			if *f.dst, err = parseCount("limits."+f.name, f.raw); err != nil {
				return out, err
			}
		}
	}
	for _, f := range durations {
		if present(f.raw) {
			if *f.dst, err = parseSeconds("limits."+f.name, f.raw); err != nil {
				return out, err
			}
		}
	}
	if present(l.CPUs) {
		if out.CPUs, err = parseCPUs("limits.cpus", l.CPUs); err != nil {
			return out, err
		}
	}
	return out, nil
}

func present(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

func (s *Server) execute(w http.ResponseWriter, r *http.Request) {
	var req executeRequest
	if err := s.decode(r, w, &req, true); err != nil {
		s.fail(w, err)
		return
	}
	if req.Code == nil {
		s.fail(w, fieldError("code", "is required"))
		return
	}
	lim, err := req.Limits.toLimits()
	if err != nil {
		s.fail(w, err)
		return
	}
	gpus, err := req.Limits.gpuRequest()
	if err != nil {
		s.fail(w, err)
		return
	}
	res, err := s.runJob(r, sandbox.Request{Language: req.Language, Code: *req.Code, Stdin: []byte(req.Stdin), Limits: lim, GPUs: gpus}, "limits.gpus")
	if err != nil {
		s.fail(w, err)
		return
	}
	status := http.StatusOK
	if res.Status == sandbox.StatusInternalError {
		status = http.StatusInternalServerError
	}
	writeJSON(w, status, res)
}
