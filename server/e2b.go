package server

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sandboxd/sandboxd/sandbox"
)

// The E2B front: what the @e2b/code-interpreter SDK calls, so that it runs unchanged
// against sandboxd when pointed at it with E2B_API_URL=<sandboxd>/e2b/api and
// E2B_SANDBOX_URL=<sandboxd>/e2b/sandbox (and any E2B_API_KEY). The control plane
// creates, describes and kills a sandbox; the data plane (E2B's code-interpreter server,
// found by the E2b-Sandbox-Id header, guarded by the sandbox's traffic token) runs code
// as NDJSON and manages contexts. A sandbox is a session; each further context is a
// session of its own (a container of its own: unlike E2B's, contexts share no files).

// e2bSandbox is one E2B sandbox: its default session and its contexts' sessions.
type e2bSandbox struct {
	id       string
	template string
	token    string // E2B-Traffic-Access-Token (and X-Access-Token) it must be sent
	started  time.Time
	lifetime time.Duration
	mu       sync.Mutex
	def      string            // the default context's session id
	contexts map[string]string // context id -> session id
}

type e2bState struct {
	mu        sync.Mutex
	sandboxes map[string]*e2bSandbox
}

const (
	e2bEnvdVersion   = "0.2.0"
	e2bAPIPrefix     = "/e2b/api/"
	e2bSandboxPrefix = "/e2b/sandbox/"
)

func (s *Server) registerE2B() {
	s.e2b = &e2bState{sandboxes: map[string]*e2bSandbox{}}
	s.mux.HandleFunc("POST /e2b/api/v2/sandboxes", s.e2bCreate)
	s.mux.HandleFunc("POST /e2b/api/sandboxes", s.e2bCreate)
	s.mux.HandleFunc("GET /e2b/api/sandboxes/{id}", s.e2bInfo)
	s.mux.HandleFunc("DELETE /e2b/api/sandboxes/{id}", s.e2bKill)
	s.mux.HandleFunc("GET /e2b/sandbox/health", s.e2bHealth)
	s.mux.HandleFunc("POST /e2b/sandbox/execute", s.e2bExecute)
	s.mux.HandleFunc("POST /e2b/sandbox/contexts", s.e2bCreateContext)
	s.mux.HandleFunc("GET /e2b/sandbox/contexts", s.e2bListContexts)
	s.mux.HandleFunc("DELETE /e2b/sandbox/contexts/{ctx}", s.e2bDeleteContext)
	s.mux.HandleFunc("POST /e2b/sandbox/contexts/{ctx}/restart", s.e2bRestartContext)
}

// e2bError answers in the shape E2B's API uses: {"code", "message"}.
func e2bError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"code": status, "message": msg})
}

func (s *Server) e2bFail(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(sessionError(err), &ae) {
		s.log.Error("e2b", "err", err)
		ae = &apiError{status: http.StatusInternalServerError, message: "internal error"}
	}
	e2bError(w, ae.status, ae.message)
}

func (s *Server) e2bCreate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		TemplateID string            `json:"templateID"`
		Timeout    *float64          `json:"timeout"` // seconds
		EnvVars    map[string]string `json:"envVars"`
	}
	if err := s.decode(r, w, &req, false); err != nil {
		s.fail(w, err)
		return
	}
	if len(req.EnvVars) > 0 {
		s.fail(w, fieldError("envVars", "not supported: a session's environment is fixed"))
		return
	}
	sr := sandbox.SessionRequest{}
	if req.Timeout != nil {
		if *req.Timeout <= 0 || *req.Timeout > 1e6 {
			s.fail(w, fieldError("timeout", "must be a positive number of seconds"))
			return
		}
		// E2B's timeout is the sandbox's life; it ends then, idle or not.
		sr.Lifetime = time.Duration(*req.Timeout * float64(time.Second))
		sr.IdleTTL = sr.Lifetime
	}
	sess, err := s.opts.E2B.CreateSession(r.Context(), sr)
	if err != nil {
		s.e2bFail(w, err)
		return
	}
	info := sess.Info()
	sb := &e2bSandbox{id: sess.ID(), template: req.TemplateID, token: randToken(), started: info.Created,
		lifetime: info.Lifetime, def: sess.ID(), contexts: map[string]string{}}
	s.e2b.mu.Lock()
	s.e2b.sandboxes[sb.id] = sb
	s.e2b.mu.Unlock()
	s.e2bWatch(sb, sess)
	w.Header().Set(SessionHeader, sb.id)
	writeJSON(w, http.StatusCreated, map[string]any{"sandboxID": sb.id, "templateID": sb.template, "clientID": "sandboxd",
		"envdVersion": e2bEnvdVersion, "envdAccessToken": sb.token, "trafficAccessToken": sb.token})
}

func randToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// e2bSandboxOf finds a live sandbox by id (its default session must be alive).
func (s *Server) e2bSandboxOf(id string) *e2bSandbox {
	s.e2b.mu.Lock()
	sb := s.e2b.sandboxes[id]
	s.e2b.mu.Unlock()
	if sb == nil {
		return nil
	}
	sb.mu.Lock()
	def := sb.def
	sb.mu.Unlock()
	if _, err := s.opts.E2B.Session(def); err != nil {
		s.e2bForget(sb)
		return nil
	}
	return sb
}

// e2bForget ends a sandbox's sessions and forgets it.
func (s *Server) e2bForget(sb *e2bSandbox) {
	s.e2b.mu.Lock()
	delete(s.e2b.sandboxes, sb.id)
	s.e2b.mu.Unlock()
	sb.mu.Lock()
	ids := []string{sb.def}
	for _, sid := range sb.contexts {
		ids = append(ids, sid)
	}
	sb.mu.Unlock()
	for _, sid := range ids {
		_, _ = s.opts.E2B.DeleteSession(sid)
	}
}

func (s *Server) e2bInfo(w http.ResponseWriter, r *http.Request) {
	sb := s.e2bSandboxOf(r.PathValue("id"))
	if sb == nil {
		e2bError(w, http.StatusNotFound, "sandbox not found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"sandboxID": sb.id, "templateID": sb.template, "clientID": "sandboxd",
		"startedAt": sb.started.UTC().Format(time.RFC3339Nano), "endAt": sb.started.Add(sb.lifetime).UTC().Format(time.RFC3339Nano),
		"state": "running", "envdVersion": e2bEnvdVersion, "cpuCount": 1, "memoryMB": 512, "diskSizeMB": 64, "metadata": map[string]string{}})
}

func (s *Server) e2bKill(w http.ResponseWriter, r *http.Request) {
	sb := s.e2bSandboxOf(r.PathValue("id"))
	if sb == nil {
		e2bError(w, http.StatusNotFound, "sandbox not found")
		return
	}
	s.e2bForget(sb)
	w.WriteHeader(http.StatusNoContent)
}

// e2bData finds the sandbox a data-plane request is for, checking its token.
func (s *Server) e2bData(w http.ResponseWriter, r *http.Request) *e2bSandbox {
	sb := s.e2bSandboxOf(r.Header.Get("E2b-Sandbox-Id"))
	if sb == nil {
		e2bError(w, http.StatusNotFound, "sandbox not found (the E2b-Sandbox-Id header names none)")
		return nil
	}
	tok := r.Header.Get("E2B-Traffic-Access-Token")
	if tok == "" {
		tok = r.Header.Get("X-Access-Token")
	}
	if subtle.ConstantTimeCompare([]byte(tok), []byte(sb.token)) != 1 {
		e2bError(w, http.StatusUnauthorized, "wrong or missing access token for this sandbox")
		return nil
	}
	return sb
}

// e2bResult is a mime bundle in E2B's keys (text, html, png, ...), the rest as they are.
func e2bResult(rr *sandbox.RichResult) map[string]any {
	keys := map[string]string{"text/plain": "text", "text/html": "html", "text/markdown": "markdown", "image/svg+xml": "svg",
		"image/png": "png", "image/jpeg": "jpeg", "application/pdf": "pdf", "text/latex": "latex", "application/json": "json",
		"application/javascript": "javascript"}
	out := map[string]any{"type": "result", "is_main_result": rr.IsMain}
	for mime, raw := range rr.Data {
		k, ok := keys[mime]
		if !ok {
			k = mime
		}
		out[k] = raw
	}
	return out
}

func (s *Server) e2bExecute(w http.ResponseWriter, r *http.Request) {
	sb := s.e2bData(w, r)
	if sb == nil {
		return
	}
	var req struct {
		Code      *string           `json:"code"`
		ContextID string            `json:"context_id"`
		Language  string            `json:"language"`
		EnvVars   map[string]string `json:"env_vars"`
	}
	if err := s.decode(r, w, &req, false); err != nil {
		s.fail(w, err)
		return
	}
	if err := s.checkCell(req.Code); err != nil {
		s.fail(w, err)
		return
	}
	switch {
	case req.Language != "" && req.Language != "python":
		s.fail(w, fieldError("language", "only python is supported"))
		return
	case len(req.EnvVars) > 0:
		s.fail(w, fieldError("env_vars", "not supported: a session's environment is fixed"))
		return
	}
	sb.mu.Lock()
	sid := sb.def
	if req.ContextID != "" {
		var ok bool
		if sid, ok = sb.contexts[req.ContextID]; !ok && req.ContextID != sb.def {
			sb.mu.Unlock()
			s.fail(w, &apiError{status: http.StatusNotFound, field: "context_id", message: "context_id: no such context"})
			return
		}
		if !ok {
			sid = sb.def
		}
	}
	sb.mu.Unlock()
	sess, err := s.opts.E2B.Session(sid)
	if err != nil {
		s.e2bFail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	started := false
	emit := func(v any) {
		if !started {
			w.WriteHeader(http.StatusOK)
			started = true
		}
		_ = enc.Encode(v)
		_ = rc.Flush()
	}
	now := func() int64 { return time.Now().UnixMicro() }
	out, err := sess.Execute(r.Context(), *req.Code, func(ev sandbox.CellEvent) {
		switch ev.Type {
		case sandbox.CellStdout, sandbox.CellStderr:
			emit(map[string]any{"type": string(ev.Type), "text": ev.Text, "timestamp": now()})
		case sandbox.CellResult:
			emit(e2bResult(ev.Result))
		case sandbox.CellError:
			emit(map[string]any{"type": "error", "name": ev.Error.Name, "value": ev.Error.Value,
				"traceback": strings.Join(ev.Error.Traceback, "\n")})
		}
	})
	if err != nil {
		if !started {
			s.e2bFail(w, err)
			return
		}
		emit(map[string]any{"type": "error", "name": "SandboxError", "value": sessionError(err).Error(), "traceback": ""})
		return
	}
	if out.SessionEnded != "" && out.Error == nil {
		emit(map[string]any{"type": "error", "name": "SandboxError", "value": "the sandbox ended: " + out.SessionEndDetail, "traceback": ""})
	}
	emit(map[string]any{"type": "number_of_executions", "execution_count": out.ExecutionCount})
	emit(map[string]any{"type": "end_of_execution"})
}

func e2bContext(id string) map[string]string {
	return map[string]string{"id": id, "language": "python", "cwd": sandbox.WorkDir}
}

func (s *Server) e2bCreateContext(w http.ResponseWriter, r *http.Request) {
	sb := s.e2bData(w, r)
	if sb == nil {
		return
	}
	var req struct {
		Language string `json:"language"`
		Cwd      string `json:"cwd"`
	}
	if err := s.decode(r, w, &req, false); err != nil {
		s.fail(w, err)
		return
	}
	if req.Language != "" && req.Language != "python" {
		s.fail(w, fieldError("language", "only python is supported"))
		return
	}
	if req.Cwd != "" && req.Cwd != sandbox.WorkDir {
		s.fail(w, fieldError("cwd", "only "+sandbox.WorkDir+" is supported"))
		return
	}
	sess, err := s.opts.E2B.CreateSession(r.Context(), sandbox.SessionRequest{Lifetime: time.Until(sb.started.Add(sb.lifetime)).Round(time.Second)})
	if err != nil {
		s.e2bFail(w, err)
		return
	}
	sb.mu.Lock()
	sb.contexts[sess.ID()] = sess.ID()
	sb.mu.Unlock()
	writeJSON(w, http.StatusOK, e2bContext(sess.ID()))
}

func (s *Server) e2bListContexts(w http.ResponseWriter, r *http.Request) {
	sb := s.e2bData(w, r)
	if sb == nil {
		return
	}
	out := []map[string]string{e2bContext(sb.def)}
	sb.mu.Lock()
	for id := range sb.contexts {
		out = append(out, e2bContext(id))
	}
	sb.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) e2bDeleteContext(w http.ResponseWriter, r *http.Request) {
	sb := s.e2bData(w, r)
	if sb == nil {
		return
	}
	id := r.PathValue("ctx")
	sb.mu.Lock()
	sid, ok := sb.contexts[id]
	delete(sb.contexts, id)
	sb.mu.Unlock()
	if !ok {
		e2bError(w, http.StatusNotFound, "no such context")
		return
	}
	_, _ = s.opts.E2B.DeleteSession(sid)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) e2bRestartContext(w http.ResponseWriter, r *http.Request) {
	sb := s.e2bData(w, r)
	if sb == nil {
		return
	}
	id := r.PathValue("ctx")
	sb.mu.Lock()
	sid, ok := sb.contexts[id]
	if id == sb.def {
		sid, ok = sb.def, true
	}
	sb.mu.Unlock()
	if !ok {
		e2bError(w, http.StatusNotFound, "no such context")
		return
	}
	fresh, err := s.opts.E2B.RestartSession(sid)
	if err != nil {
		s.e2bFail(w, err)
		return
	}
	sb.mu.Lock()
	restartedDefault := id == sb.def
	if restartedDefault {
		// The sandbox keeps its id; its default context is now the fresh session.
		sb.def = fresh.ID()
	} else {
		sb.contexts[id] = fresh.ID()
	}
	sb.mu.Unlock()
	if restartedDefault {
		s.e2bWatch(sb, fresh)
	}
	w.WriteHeader(http.StatusNoContent)
}

// e2bHealth is envd's health check, answered as E2B's proxy does: 204 while the sandbox
// named by E2b-Sandbox-Id runs, 502 once it does not (the SDK's isRunning reads that).
func (s *Server) e2bHealth(w http.ResponseWriter, r *http.Request) {
	if s.e2bSandboxOf(r.Header.Get("E2b-Sandbox-Id")) == nil {
		e2bError(w, http.StatusBadGateway, "sandbox not running")
		return
	}
	if s.e2bData(w, r) != nil { // its token too
		w.WriteHeader(http.StatusNoContent)
	}
}

// e2bWatch forgets the sandbox, and ends its contexts, once sess (its default context)
// ends on its own (its timeout, a delete through /v1): unless a restart replaced it.
func (s *Server) e2bWatch(sb *e2bSandbox, sess *sandbox.Session) {
	go func() {
		<-sess.Ended()
		sb.mu.Lock()
		current := sb.def == sess.ID()
		sb.mu.Unlock()
		if current {
			s.e2bForget(sb)
		}
	}()
}
