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
	"reflect"
	"strings"
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
	// No catch-all "/": it would match every method, and ServeMux answers 405 with Allow
	// for a known path with the wrong method only when nothing else matches. ServeHTTP
	// gives the mux's own 404 and 405 the API's JSON shape.
	return s
}

// Handle adds a handler to the API (admin and metrics endpoints live elsewhere).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := s.mux.Handler(r); pattern == "" {
		// No endpoint: the mux answers 404, 405 (with Allow) or a redirect to the
		// canonical path; the first two are rewritten as JSON errors.
		w = &muxError{ResponseWriter: w, r: r}
	}
	s.mux.ServeHTTP(w, r)
}

// muxError turns ServeMux's plain-text 404 and 405 into the API's JSON errors, keeping
// the status and the Allow header the mux set; anything else passes through.
type muxError struct {
	http.ResponseWriter
	r               *http.Request
	wrote, replaced bool
}

func (m *muxError) WriteHeader(code int) {
	if m.wrote {
		return
	}
	m.wrote = true
	msg := "no such endpoint: " + m.r.Method + " " + m.r.URL.Path
	switch code {
	case http.StatusMethodNotAllowed:
		msg = fmt.Sprintf("%s is not allowed on %s; it takes %s", m.r.Method, m.r.URL.Path, m.Header().Get("Allow"))
	case http.StatusNotFound:
	default:
		m.ResponseWriter.WriteHeader(code)
		return
	}
	m.replaced = true
	m.Header().Del("X-Content-Type-Options")
	writeError(m.ResponseWriter, code, "", msg)
}

func (m *muxError) Write(b []byte) (int, error) {
	if !m.wrote {
		m.WriteHeader(http.StatusOK)
	}
	if m.replaced {
		return len(b), nil // the mux's plain-text body; the JSON one is written
	}
	return m.ResponseWriter.Write(b)
}

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

// decode reads a bounded JSON body into v. strict refuses unknown fields. Before v sees
// the body, a walk over its tokens refuses what encoding/json lets through: a body that is
// not one JSON object, data after it, and a key given twice (encoding/json keeps the last,
// so a client and a proxy in front of the daemon could read different limits).
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
	if err := checkShape(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	return nil
}

// checkShape refuses a body that is not exactly one JSON object, or that names a key
// twice in any object; the error names the key's path ("limits.pids"). checkDepth has
// bounded the nesting, so the recursion is bounded too.
func checkShape(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // numbers are the parsers' to judge (1e400 gets "not a valid number")
	tok, err := dec.Token()
	if err != nil {
		return jsonError(err)
	}
	if tok != json.Delim('{') {
		return &apiError{status: http.StatusBadRequest, message: "the request body must be a JSON object"}
	}
	if err := walkObject(dec, ""); err != nil {
		return err
	}
	if rest := bytes.TrimLeft(body[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		return &apiError{status: http.StatusBadRequest, message: fmt.Sprintf("unexpected data after the JSON object at byte %d", len(body)-len(rest))}
	}
	return nil
}

// walkObject reads the rest of an object whose '{' was just read.
func walkObject(dec *json.Decoder, path string) error {
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return jsonError(err)
		}
		key, _ := tok.(string) // an object's keys are strings, or Token fails
		at := key
		if path != "" {
			at = path + "." + key
		}
		if seen[key] {
			return fieldError(at, "appears more than once; give each field once")
		}
		seen[key] = true
		if err := walkValue(dec, at); err != nil {
			return err
		}
	}
	_, err := dec.Token() // '}'
	return jsonErrorOrNil(err)
}

func walkValue(dec *json.Decoder, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return jsonError(err)
	}
	switch tok {
	case json.Delim('{'):
		return walkObject(dec, path)
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if err := walkValue(dec, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ']'
		return jsonErrorOrNil(err)
	}
	return nil
}

func jsonErrorOrNil(err error) error {
	if err == nil {
		return nil
	}
	return jsonError(err)
}

// jsonError turns a decoding error into a message that names the field where it can.
func jsonError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		want := jsonKind(typeErr.Type)
		if typeErr.Field == "" {
			return &apiError{status: http.StatusBadRequest, message: "the request body must be a JSON object"}
		}
		return fieldError(typeErr.Field, "must be "+want+", not "+valueKind(typeErr.Value))
	case errors.As(err, &syntaxErr):
		return &apiError{status: http.StatusBadRequest, message: fmt.Sprintf("malformed JSON at byte %d: %s", syntaxErr.Offset, strings.TrimPrefix(syntaxErr.Error(), "json: "))}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &apiError{status: http.StatusBadRequest, message: "request body is empty or truncated JSON"}
	}
	var fe *apiError
	if errors.As(err, &fe) {
		return fe
	}
	// Unknown fields: encoding/json says `json: unknown field "x"`.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return &apiError{status: http.StatusBadRequest, message: "unknown field " + name + " (see the API's fields in README)"}
	}
	return &apiError{status: http.StatusBadRequest, message: strings.TrimPrefix(err.Error(), "json: ")}
}

// jsonKind says in a client's words which JSON value a Go type takes.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "another kind of value"
}

// valueKind words encoding/json's description of the value it got ("number 2.5", "bool").
func valueKind(v string) string {
	kind, _, _ := strings.Cut(v, " ")
	switch kind {
	case "string":
		return "a string"
	case "number":
		return "a number"
	case "bool":
		return "a boolean"
	case "array":
		return "an array"
	case "object":
		return "an object"
	}
	return v
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
	return s.runJobAs(r, req, gpuField, nil)
}

// runJobAs is runJob for a front whose fields are not /v1's: wire maps the engine's
// field names ("limits.memory") to the ones its client sent ("resources.ram").
func (s *Server) runJobAs(r *http.Request, req sandbox.Request, gpuField string, wire map[string]string) (*sandbox.Result, error) {
	if int64(len(req.Code)) > s.opts.MaxCodeBytes {
		return nil, &apiError{status: http.StatusRequestEntityTooLarge, field: "code", message: fmt.Sprintf("code: exceeds %d bytes", s.opts.MaxCodeBytes)}
	}
	res, err := s.run.Run(r.Context(), req)
	if err == nil {
		return res, nil
	}
	return nil, s.runErrorAs(err, gpuField, wire)
}

// runError maps the engine's refusal of a job to an HTTP error.
func (s *Server) runError(err error, gpuField string) error { return s.runErrorAs(err, gpuField, nil) }

// runErrorAs is runError for a front whose field names wire maps (see runJobAs).
func (s *Server) runErrorAs(err error, gpuField string, wire map[string]string) error {
	var fe *sandbox.FieldError
	switch {
	case errors.As(err, &fe):
		field := fe.Field
		if name, ok := wire[field]; ok {
			field = name
		}
		return &apiError{status: http.StatusBadRequest, field: field, message: field + ": " + fe.Message}
	case errors.Is(err, sandbox.ErrUnsupportedLanguage):
		return &apiError{status: http.StatusBadRequest, field: "language", message: "language: " + err.Error()}
	case errors.Is(err, gpu.ErrInvalidRequest), errors.Is(err, gpu.ErrUnknownDevice), errors.Is(err, gpu.ErrNoGPUs):
		return &apiError{status: http.StatusBadRequest, field: gpuField, message: gpuField + ": " + err.Error()}
	case errors.Is(err, gpu.ErrUnavailable):
		return &apiError{status: http.StatusConflict, field: gpuField, message: gpuField + ": " + err.Error()}
	case errors.Is(err, sandbox.ErrBusy):
		return &apiError{status: http.StatusTooManyRequests, message: "all job slots and queue places are taken; retry shortly"}
	case errors.Is(err, sandbox.ErrClosed):
		return &apiError{status: http.StatusServiceUnavailable, message: "the daemon is not taking new jobs (draining or shutting down); retry shortly"}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: http.StatusServiceUnavailable, message: "request ended while waiting for a job slot"}
	}
	s.log.Error("run job", "err", err)
	return &apiError{status: http.StatusInternalServerError, message: "internal error"}
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
