package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/sandboxd/sandboxd/sandbox"
)

// The Jupyter front: the Kernel Gateway / Jupyter Server REST subset that kernel
// clients (@jupyterlab/services, Jupyter's --gateway-url) use, and the kernel's channels
// over a WebSocket in the messaging protocol's JSON form. Each kernel is a session
// (/v1/sessions lists it too). A restart is a new session under the same kernel id.

// JupyterEngine is what the Jupyter front needs of the engine.
type JupyterEngine interface {
	SessionEngine
	RestartSession(id string) (*sandbox.Session, error)
}

// jupyterKernels maps kernel ids to the session that is the kernel now.
type jupyterKernels struct {
	mu   sync.Mutex
	byID map[string]string // kernel id -> session id
	conn map[string]int    // kernel id -> open channels
}

const jupyterKernelName = "python3"

// bind makes sess kernel kid, until it ends (expiry, a delete from any front): then the
// kernel id goes too, unless a restart has bound it to a fresh session meanwhile.
func (k *jupyterKernels) bind(kid string, sess *sandbox.Session) {
	k.mu.Lock()
	k.byID[kid] = sess.ID()
	k.mu.Unlock()
	go func() {
		<-sess.Ended()
		k.mu.Lock()
		if k.byID[kid] == sess.ID() {
			delete(k.byID, kid)
		}
		k.mu.Unlock()
	}()
}

func (s *Server) registerJupyter() {
	s.kernels = &jupyterKernels{byID: map[string]string{}, conn: map[string]int{}}
	s.mux.HandleFunc("GET /api", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"version": "2.14.0"})
	})
	s.mux.HandleFunc("GET /api/kernelspecs", s.kernelSpecs)
	s.mux.HandleFunc("POST /api/kernels", s.startKernel)
	s.mux.HandleFunc("GET /api/kernels", s.listKernels)
	s.mux.HandleFunc("GET /api/kernels/{id}", s.getKernel)
	s.mux.HandleFunc("DELETE /api/kernels/{id}", s.deleteKernel)
	s.mux.HandleFunc("POST /api/kernels/{id}/interrupt", s.interruptKernel)
	s.mux.HandleFunc("POST /api/kernels/{id}/restart", s.restartKernel)
	s.mux.HandleFunc("GET /api/kernels/{id}/channels", s.kernelChannels)
}

func (s *Server) kernelSpecs(w http.ResponseWriter, _ *http.Request) {
	spec := map[string]any{
		"argv":           []string{"python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"},
		"display_name":   "Python 3 (sandboxd)",
		"language":       "python",
		"interrupt_mode": "signal",
		"env":            map[string]string{},
		"metadata":       map[string]any{},
	}
	writeJSON(w, http.StatusOK, map[string]any{"default": jupyterKernelName,
		"kernelspecs": map[string]any{jupyterKernelName: map[string]any{"name": jupyterKernelName, "spec": spec, "resources": map[string]string{}}}})
}

// kernelModel is a kernel as Jupyter Server describes it.
func (s *Server) kernelModel(kid string, sess *sandbox.Session) map[string]any {
	info := sess.Info()
	state := "idle"
	switch info.Status {
	case sandbox.SessionBusy:
		state = "busy"
	case sandbox.SessionStarting:
		state = "starting"
	case sandbox.SessionIdle:
	default:
		state = "dead"
	}
	s.kernels.mu.Lock()
	n := s.kernels.conn[kid]
	s.kernels.mu.Unlock()
	return map[string]any{"id": kid, "name": jupyterKernelName, "last_activity": info.LastUsed.UTC().Format(time.RFC3339Nano),
		"execution_state": state, "connections": n}
}

// kernelSession finds the session that is kernel kid now.
func (s *Server) kernelSession(w http.ResponseWriter, kid string) *sandbox.Session {
	s.kernels.mu.Lock()
	sid, ok := s.kernels.byID[kid]
	s.kernels.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "", "no such kernel")
		return nil
	}
	sess, err := s.opts.Jupyter.Session(sid)
	if err != nil {
		s.kernels.mu.Lock()
		delete(s.kernels.byID, kid)
		s.kernels.mu.Unlock()
		writeError(w, http.StatusNotFound, "", "no such kernel (it has ended)")
		return nil
	}
	return sess
}

func (s *Server) startKernel(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
		Path string `json:"path"`
	}
	if r.ContentLength != 0 {
		if err := s.decode(r, w, &req, false); err != nil {
			s.fail(w, err)
			return
		}
	}
	if req.Name != "" && req.Name != jupyterKernelName {
		s.fail(w, fieldError("name", "no such kernel spec (there is "+jupyterKernelName+")"))
		return
	}
	sess, err := s.opts.Jupyter.CreateSession(r.Context(), sandbox.SessionRequest{})
	if err != nil {
		s.sessionFail(w, err)
		return
	}
	kid := uuid.NewString()
	s.kernels.bind(kid, sess)
	w.Header().Set("Location", "/api/kernels/"+kid)
	w.Header().Set(SessionHeader, kid)
	writeJSON(w, http.StatusCreated, s.kernelModel(kid, sess))
}

func (s *Server) listKernels(w http.ResponseWriter, _ *http.Request) {
	s.kernels.mu.Lock()
	ids := make(map[string]string, len(s.kernels.byID))
	for k, v := range s.kernels.byID {
		ids[k] = v
	}
	s.kernels.mu.Unlock()
	out := []map[string]any{}
	for kid, sid := range ids {
		if sess, err := s.opts.Jupyter.Session(sid); err == nil {
			out = append(out, s.kernelModel(kid, sess))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getKernel(w http.ResponseWriter, r *http.Request) {
	kid := r.PathValue("id")
	if sess := s.kernelSession(w, kid); sess != nil {
		writeJSON(w, http.StatusOK, s.kernelModel(kid, sess))
	}
}

func (s *Server) deleteKernel(w http.ResponseWriter, r *http.Request) {
	kid := r.PathValue("id")
	sess := s.kernelSession(w, kid)
	if sess == nil {
		return
	}
	if _, err := s.opts.Jupyter.DeleteSession(sess.ID()); err != nil && !errors.Is(err, sandbox.ErrSessionNotFound) {
		s.sessionFail(w, err)
		return
	}
	s.kernels.mu.Lock()
	delete(s.kernels.byID, kid)
	s.kernels.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) interruptKernel(w http.ResponseWriter, r *http.Request) {
	sess := s.kernelSession(w, r.PathValue("id"))
	if sess == nil {
		return
	}
	if err := sess.Interrupt(); err != nil {
		s.sessionFail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) restartKernel(w http.ResponseWriter, r *http.Request) {
	kid := r.PathValue("id")
	sess := s.kernelSession(w, kid)
	if sess == nil {
		return
	}
	fresh, err := s.opts.Jupyter.RestartSession(sess.ID())
	if err != nil {
		s.kernels.mu.Lock()
		delete(s.kernels.byID, kid)
		s.kernels.mu.Unlock()
		s.sessionFail(w, err)
		return
	}
	s.kernels.bind(kid, fresh)
	writeJSON(w, http.StatusOK, s.kernelModel(kid, fresh))
}

// kernelChannels relays one client's WebSocket to the kernel: the kernel's messages of
// every channel out, the client's shell and control messages in. It ends with the
// session (a restart: the client reconnects to the new kernel) or the client.
func (s *Server) kernelChannels(w http.ResponseWriter, r *http.Request) {
	kid := r.PathValue("id")
	sess := s.kernelSession(w, kid)
	if sess == nil {
		return
	}
	// Browsers from another origin are refused (the library's default); clients that
	// send no Origin (Node, Python) are not browsers.
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(s.opts.MaxBodyBytes)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	s.kernels.mu.Lock()
	s.kernels.conn[kid]++
	s.kernels.mu.Unlock()
	defer func() {
		s.kernels.mu.Lock()
		s.kernels.conn[kid]--
		if s.kernels.conn[kid] <= 0 {
			delete(s.kernels.conn, kid)
		}
		s.kernels.mu.Unlock()
	}()

	// What waits for a slow client is bounded in bytes as well as messages; a client
	// that cannot keep up is dropped, not waited for.
	const maxQueued = 32 << 20
	var queued atomic.Int64
	out := make(chan []byte, 1024)
	send, stop := sess.Relay(func(m sandbox.JupyterMsg) {
		b, err := json.Marshal(m)
		if err != nil {
			return
		}
		if queued.Add(int64(len(b))) > maxQueued {
			cancel()
			return
		}
		select {
		case out <- b:
		default:
			cancel()
		}
	})
	defer stop()
	go func() {
		defer cancel()
		for {
			select {
			case b := <-out:
				queued.Add(-int64(len(b)))
				if err := c.Write(ctx, websocket.MessageText, b); err != nil {
					return
				}
			case <-sess.Ended():
				_ = c.Close(websocket.StatusGoingAway, "the kernel has ended")
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		typ, b, err := c.Read(ctx)
		if err != nil {
			return
		}
		if typ != websocket.MessageText {
			continue // the binary framing (v1.kernel.websocket.jupyter.org) is not offered
		}
		var m sandbox.JupyterMsg
		if err := json.Unmarshal(b, &m); err != nil {
			continue
		}
		if err := send(m); err != nil && errors.Is(err, sandbox.ErrSessionEnded) {
			return
		}
	}
}
