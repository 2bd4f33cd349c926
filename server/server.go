// Package server is sandboxd's HTTP API: its own versioned API and the fronts that keep
// the seed projects' endpoints working. Every front turns its request into one
// sandbox.Request and calls the same Runner; only this package maps errors to statuses.
package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/sandboxd/sandboxd/gpu"
	"github.com/sandboxd/sandboxd/sandbox"
)

// Runner runs one job; *sandbox.Engine is the real one.
type Runner interface {
	Run(ctx context.Context, req sandbox.Request) (*sandbox.Result, error)
}

// Options bound what a client may send.
type Options struct {
	MaxBodyBytes int64     // whole request body; larger gets 413 (default 2 MiB)
	MaxCodeBytes int64     // the code field; larger gets 413 (default 512 KiB)
	MaxJSONDepth int       // nesting of arrays and objects; deeper gets 400 (default 32)
	GPUs         GPUSource // GET /v1/gpus; nil lists none
	// Runtimes lists what the engine runs (GET /v1/runtimes); nil lists none.
	Runtimes func() []sandbox.RuntimeInfo
	// Sessions serves /v1/sessions (sessions.go); nil serves none.
	Sessions SessionEngine
	// Jupyter serves the Jupyter kernel REST subset and channels (jupyter.go); nil
	// serves none.
	Jupyter JupyterEngine
	// E2B serves the E2B code-interpreter SDK's endpoints under /e2b (e2b.go); nil
	// serves none.
	E2B    JupyterEngine
	Logger *slog.Logger
}

// Server serves the API. Create it with New.
type Server struct {
	run     Runner
	opts    Options
	kernels *jupyterKernels
	e2b     *e2bState
	log     *slog.Logger
	mux     *http.ServeMux
}

// New builds the API's handler around a Runner.
func New(run Runner, opts Options) *Server {
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = 2 << 20
	}
	if opts.MaxCodeBytes == 0 {
		opts.MaxCodeBytes = 512 << 10
	}
	if opts.MaxJSONDepth == 0 {
		opts.MaxJSONDepth = 32
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{run: run, opts: opts, log: opts.Logger, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("POST /v1/execute", s.execute)
	s.mux.HandleFunc("GET /v1/gpus", s.gpus)
	s.mux.HandleFunc("GET /v1/runtimes", s.runtimes)
	s.mux.HandleFunc("POST /execute", s.seedExecute)
	s.mux.HandleFunc("POST /submit_code", s.seedSubmitCode)
	if opts.Sessions != nil {
		s.registerSessions()
	}
	if opts.Jupyter != nil {
		s.registerJupyter()
	}
	if opts.E2B != nil {
		s.registerE2B()
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "", "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return s
}

// Handle adds a handler to the API (admin and metrics endpoints live elsewhere).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// HTTPServer wraps the handler with timeouts that keep slow clients from holding
// connections: headers and body must arrive promptly; responses may take as long as a
// job's timeout allows, which the engine bounds.
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ConnContext:       ConnContext, // who is asking: auth and the job log need it
	}
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// apiError is an error that knows its HTTP status and which field is at fault.
type apiError struct {
	status  int
	field   string
	message string
}

func (e *apiError) Error() string { return e.message }

func fieldError(field, msg string) error {
	return &apiError{status: http.StatusBadRequest, field: field, message: field + ": " + msg}
}

// decode reads a bounded JSON body into v. strict refuses unknown fields.
func (s *Server) decode(r *http.Request, w http.ResponseWriter, v any, strict bool) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &apiError{status: http.StatusRequestEntityTooLarge, message: fmt.Sprintf("request body exceeds %d bytes", s.opts.MaxBodyBytes)}
		}
		return &apiError{status: http.StatusBadRequest, message: "could not read request body"}
	}
	if err := checkDepth(body, s.opts.MaxJSONDepth); err != nil {
		return &apiError{status: http.StatusBadRequest, message: err.Error()}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return &apiError{status: http.StatusBadRequest, message: "request body holds more than one JSON value"}
	}
	return nil
}

// jsonError turns a decoding error into a message that names the field where it can.
func jsonError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		return fieldError(typeErr.Field, "must be a JSON "+typeErr.Type.Kind().String()+", not "+typeErr.Value)
	case errors.As(err, &syntaxErr):
		return &apiError{status: http.StatusBadRequest, message: fmt.Sprintf("malformed JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &apiError{status: http.StatusBadRequest, message: "request body is empty or truncated JSON"}
	}
	var fe *apiError
	if errors.As(err, &fe) {
		return fe
	}
	// Unknown fields: encoding/json says `json: unknown field "x"`.
	return &apiError{status: http.StatusBadRequest, message: err.Error()}
}

// checkDepth refuses JSON nested deeper than max before it is decoded.
func checkDepth(b []byte, max int) error {
	depth, inStr, esc := 0, false, false
	for _, c := range b {
		switch {
		case inStr:
			if esc {
				esc = false
			} else if c == '\\' {
				esc = true
			} else if c == '"' {
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			if depth++; depth > max {
				return fmt.Errorf("JSON is nested deeper than %d levels", max)
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

// runJob calls the runner and maps its refusals to HTTP errors.
// gpuField names the request field that asked for GPUs, for error messages.
func (s *Server) runJob(r *http.Request, req sandbox.Request, gpuField string) (*sandbox.Result, error) {
	if int64(len(req.Code)) > s.opts.MaxCodeBytes {
		return nil, &apiError{status: http.StatusRequestEntityTooLarge, field: "code", message: fmt.Sprintf("code: exceeds %d bytes", s.opts.MaxCodeBytes)}
	}
	res, err := s.run.Run(r.Context(), req)
	if err == nil {
		return res, nil
	}
	var fe *sandbox.FieldError
	switch {
	case errors.As(err, &fe):
		return nil, &apiError{status: http.StatusBadRequest, field: fe.Field, message: fe.Error()}
	case errors.Is(err, sandbox.ErrUnsupportedLanguage):
		return nil, &apiError{status: http.StatusBadRequest, field: "language", message: "language: " + err.Error()}
	case errors.Is(err, gpu.ErrInvalidRequest), errors.Is(err, gpu.ErrUnknownDevice), errors.Is(err, gpu.ErrNoGPUs):
		return nil, &apiError{status: http.StatusBadRequest, field: gpuField, message: gpuField + ": " + err.Error()}
	case errors.Is(err, gpu.ErrUnavailable):
		return nil, &apiError{status: http.StatusConflict, field: gpuField, message: gpuField + ": " + err.Error()}
	case errors.Is(err, sandbox.ErrBusy):
		return nil, &apiError{status: http.StatusTooManyRequests, message: "all job slots and queue places are taken; retry shortly"}
	case errors.Is(err, sandbox.ErrClosed):
		return nil, &apiError{status: http.StatusServiceUnavailable, message: "the daemon is not taking new jobs (draining or shutting down); retry shortly"}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return nil, &apiError{status: http.StatusServiceUnavailable, message: "request ended while waiting for a job slot"}
	}
	s.log.Error("run job", "err", err)
	return nil, &apiError{status: http.StatusInternalServerError, message: "internal error"}
}

func (s *Server) fail(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{status: http.StatusInternalServerError, message: "internal error"}
	}
	if ae.status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	writeError(w, ae.status, ae.field, ae.message)
}

func writeError(w http.ResponseWriter, status int, field, msg string) {
	body := map[string]string{"error": msg}
	if field != "" {
		body["field"] = field
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
