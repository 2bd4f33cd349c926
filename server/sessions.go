package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"

	"github.com/sandboxd/sandboxd/api"
	"github.com/sandboxd/sandboxd/sandbox"
)

// SessionEngine runs code-interpreter sessions; *sandbox.Engine is the real one.
type SessionEngine interface {
	CreateSession(ctx context.Context, req sandbox.SessionRequest) (*sandbox.Session, error)
	Session(id string) (*sandbox.Session, error)
	Sessions() []*sandbox.Session
	DeleteSession(id string) (sandbox.SessionInfo, error)
}

// maxUploadBytes bounds one uploaded file's body; the engine's caps are checked after.
const maxUploadBytes = 64 << 20

func (s *Server) registerSessions() {
	s.mux.HandleFunc("POST /v1/sessions", s.createSession)
	s.mux.HandleFunc("GET /v1/sessions", s.listSessions)
	s.mux.HandleFunc("GET /v1/sessions/{id}", s.getSession)
	s.mux.HandleFunc("DELETE /v1/sessions/{id}", s.deleteSession)
	s.mux.HandleFunc("POST /v1/sessions/{id}/execute", s.executeCell)
	s.mux.HandleFunc("POST /v1/sessions/{id}/interrupt", s.interruptSession)
	s.mux.HandleFunc("GET /v1/sessions/{id}/files", s.listSessionFiles)
	s.mux.HandleFunc("GET /v1/sessions/{id}/files/{path...}", s.getSessionFile)
	s.mux.HandleFunc("PUT /v1/sessions/{id}/files/{path...}", s.putSessionFile)
}

// sessionError maps the engine's session errors to statuses and safe messages.
func sessionError(err error) error {
	var fe *sandbox.FieldError
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &fe):
		return &apiError{status: http.StatusBadRequest, field: fe.Field, message: fe.Error()}
	case errors.Is(err, sandbox.ErrSessionNotFound):
		return &apiError{status: http.StatusNotFound, message: "no such session"}
	case errors.Is(err, sandbox.ErrSessionEnded):
		return &apiError{status: http.StatusGone, message: "the session has ended"}
	case errors.Is(err, sandbox.ErrSessionLimit):
		return &apiError{status: http.StatusTooManyRequests, message: "the daemon's session cap is reached; delete a session or retry later"}
	case errors.Is(err, sandbox.ErrNoKernel):
		return &apiError{status: http.StatusNotImplemented, message: "sessions are unavailable: the python image has no ipykernel"}
	case errors.Is(err, sandbox.ErrClosed):
		return &apiError{status: http.StatusServiceUnavailable, message: "the daemon is shutting down"}
	case errors.Is(err, sandbox.ErrStorageFull):
		return &apiError{status: http.StatusInsufficientStorage, field: "body", message: "the file does not fit in the session's storage"}
	case errors.Is(err, sandbox.ErrFileTooLarge):
		return &apiError{status: http.StatusRequestEntityTooLarge, field: "path", message: "path: " + err.Error()}
	case errors.Is(err, sandbox.ErrNotRegularFile):
		return &apiError{status: http.StatusBadRequest, field: "path", message: "path: " + err.Error()}
	case errors.Is(err, fs.ErrNotExist):
		return &apiError{status: http.StatusNotFound, field: "path", message: "path: no such file"}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: http.StatusServiceUnavailable, message: "the request ended first"}
	}
	return err
}

func (s *Server) sessionFail(w http.ResponseWriter, err error) {
	err = sessionError(err)
	var ae *apiError
	if !errors.As(err, &ae) {
		s.log.Error("session", "err", err)
	}
	s.fail(w, err)
}

func toSession(i sandbox.SessionInfo) api.Session {
	return api.Session{ID: i.ID, Status: string(i.Status), Detail: i.Detail, Created: i.Created, LastUsed: i.LastUsed,
		Expires: i.Expires, ExecutionCount: i.ExecutionCount, TTL: i.IdleTTL.Seconds(), Lifetime: i.Lifetime.Seconds(),
		CellTimeout: i.Limits.Timeout.Seconds(), Memory: i.Limits.Memory, CPUMS: i.CPUMS, MemoryBytes: i.MemoryBytes,
		MemoryPeak: i.MemoryPeak, Warm: i.Warm}
}

func (s *Server) createSession(w http.ResponseWriter, r *http.Request) {
	var req api.SessionRequest
	if r.ContentLength != 0 {
		if err := s.decode(r, w, &req, true); err != nil {
			s.fail(w, err)
			return
		}
	}
	lim, _, err := toLimits(req.Limits)
	if err != nil {
		s.fail(w, err)
		return
	}
	sr := sandbox.SessionRequest{Limits: lim}
	if present(req.TTL) {
		if sr.IdleTTL, err = parseSeconds("ttl", req.TTL); err != nil {
			s.fail(w, err)
			return
		}
	}
	if present(req.Lifetime) {
		if sr.Lifetime, err = parseSeconds("lifetime", req.Lifetime); err != nil {
			s.fail(w, err)
			return
		}
	}
	sess, err := s.opts.Sessions.CreateSession(r.Context(), sr)
	if err != nil {
		s.sessionFail(w, err)
		return
	}
	w.Header().Set(SessionHeader, sess.ID())
	writeJSON(w, http.StatusCreated, toSession(sess.Info()))
}

func (s *Server) listSessions(w http.ResponseWriter, _ *http.Request) {
	out := api.SessionList{Sessions: []api.Session{}}
	for _, sess := range s.opts.Sessions.Sessions() {
		out.Sessions = append(out.Sessions, toSession(sess.Info()))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) session(w http.ResponseWriter, r *http.Request) *sandbox.Session {
	sess, err := s.opts.Sessions.Session(r.PathValue("id"))
	if err != nil {
		s.sessionFail(w, err)
		return nil
	}
	return sess
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	if sess := s.session(w, r); sess != nil {
		writeJSON(w, http.StatusOK, toSession(sess.Info()))
	}
}

func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request) {
	info, err := s.opts.Sessions.DeleteSession(r.PathValue("id"))
	if err != nil {
		s.sessionFail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, toSession(info))
}

func (s *Server) interruptSession(w http.ResponseWriter, r *http.Request) {
	sess := s.session(w, r)
	if sess == nil {
		return
	}
	if err := sess.Interrupt(); err != nil {
		s.sessionFail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func toRich(r *sandbox.RichResult) *api.RichResult {
	return &api.RichResult{Data: r.Data, Metadata: r.Metadata, IsMain: r.IsMain}
}

func toCellError(e *sandbox.CellErr) *api.CellError {
	if e == nil {
		return nil
	}
	tb := e.Traceback
	if tb == nil {
		tb = []string{}
	}
	return &api.CellError{Name: e.Name, Value: e.Value, Traceback: tb}
}

func toCell(o *sandbox.CellOutcome) *api.CellResult {
	out := &api.CellResult{ExecutionCount: o.ExecutionCount, Status: o.Status, Stdout: o.Stdout, Stderr: o.Stderr,
		StdoutTruncated: o.StdoutTruncated, StderrTruncated: o.StderrTruncated, Results: []api.RichResult{},
		ResultsDropped: o.ResultsDropped, Error: toCellError(o.Error), TimedOut: o.TimedOut, WallMS: o.WallMS,
		CPUMS: o.CPUMS, MemoryPeak: o.MemoryPeak, SessionCPUMS: o.SessionCPUMS,
		SessionEnded: string(o.SessionEnded), SessionEndDetail: o.SessionEndDetail}
	for i := range o.Results {
		out.Results = append(out.Results, *toRich(&o.Results[i]))
	}
	return out
}

func (s *Server) executeCell(w http.ResponseWriter, r *http.Request) {
	sess := s.session(w, r)
	if sess == nil {
		return
	}
	var req api.CellRequest
	if err := s.decode(r, w, &req, true); err != nil {
		s.fail(w, err)
		return
	}
	if err := s.checkCell(req.Code); err != nil {
		s.fail(w, err)
		return
	}
	if !strings.Contains(r.Header.Get("Accept"), "application/x-ndjson") {
		out, err := sess.Execute(r.Context(), *req.Code, nil)
		if err != nil {
			s.sessionFail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, toCell(out))
		return
	}
	// Streamed: one JSON object a line as the cell produces output, then "done".
	w.Header().Set("Content-Type", "application/x-ndjson")
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	started := false
	emit := func(ev api.CellEvent) {
		if !started {
			w.WriteHeader(http.StatusOK)
			started = true
		}
		_ = enc.Encode(ev)
		_ = rc.Flush()
	}
	out, err := sess.Execute(r.Context(), *req.Code, func(ev sandbox.CellEvent) {
		e := api.CellEvent{Type: string(ev.Type), Text: ev.Text, Error: toCellError(ev.Error)}
		if ev.Result != nil {
			e.Result = toRich(ev.Result)
		}
		emit(e)
	})
	if err != nil {
		if !started {
			s.sessionFail(w, err)
			return
		}
		emit(api.CellEvent{Type: "error", Error: &api.CellError{Name: "SessionError", Value: sessionError(err).Error(), Traceback: []string{}}})
		return
	}
	emit(api.CellEvent{Type: "done", Done: toCell(out)})
}

func (s *Server) listSessionFiles(w http.ResponseWriter, r *http.Request) {
	sess := s.session(w, r)
	if sess == nil {
		return
	}
	files, truncated, err := sess.ListFiles()
	if err != nil {
		s.sessionFail(w, err)
		return
	}
	out := api.SessionFiles{Files: []api.SessionFile{}, Truncated: truncated}
	for _, f := range files {
		out.Files = append(out.Files, api.SessionFile{Name: f.Name, Type: f.Type, Size: f.Size})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getSessionFile(w http.ResponseWriter, r *http.Request) {
	sess := s.session(w, r)
	if sess == nil {
		return
	}
	b, err := sess.GetFile(r.PathValue("path"))
	if err != nil {
		s.sessionFail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(b)
}

func (s *Server) putSessionFile(w http.ResponseWriter, r *http.Request) {
	sess := s.session(w, r)
	if sess == nil {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxUploadBytes))
	if err != nil {
		s.fail(w, &apiError{status: http.StatusRequestEntityTooLarge, field: "body", message: fmt.Sprintf("body: exceeds %d bytes", maxUploadBytes)})
		return
	}
	if err := sess.PutFile(r.PathValue("path"), body); err != nil {
		s.sessionFail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// checkCell refuses a cell's code that is missing or over max_code, for every session front.
func (s *Server) checkCell(code *string) error {
	switch {
	case code == nil:
		return fieldError("code", "is required")
	case int64(len(*code)) > s.opts.MaxCodeBytes:
		return &apiError{status: http.StatusRequestEntityTooLarge, field: "code", message: fmt.Sprintf("code: exceeds %d bytes", s.opts.MaxCodeBytes)}
	}
	return nil
}
