package server

import (
	"encoding/json"
	"net/http"

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
	CPUs    json.RawMessage `json:"cpus"`
	Memory  json.RawMessage `json:"memory"`
	Storage json.RawMessage `json:"storage"`
	Pids    json.RawMessage `json:"pids"`
	Timeout json.RawMessage `json:"timeout"`
}

func (l *limitsRequest) toLimits() (sandbox.Limits, error) {
	var out sandbox.Limits
	if l == nil {
		return out, nil
	}
	var err error
	if present(l.CPUs) {
		if out.CPUs, err = parseCPUs("limits.cpus", l.CPUs); err != nil {
			return out, err
		}
	}
	if present(l.Memory) {
		if out.Memory, err = parseBytes("limits.memory", l.Memory); err != nil {
			return out, err
		}
	}
	if present(l.Storage) {
		if out.Storage, err = parseBytes("limits.storage", l.Storage); err != nil {
			return out, err
		}
	}
	if present(l.Pids) {
		if out.Pids, err = parseCount("limits.pids", l.Pids); err != nil {
			return out, err
		}
	}
	if present(l.Timeout) {
		if out.Timeout, err = parseSeconds("limits.timeout", l.Timeout); err != nil {
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
	res, err := s.runJob(r, sandbox.Request{Language: req.Language, Code: *req.Code, Stdin: []byte(req.Stdin), Limits: lim})
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
