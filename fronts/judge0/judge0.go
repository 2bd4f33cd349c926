// Package judge0 is a drop-in front for Judge0 CE's API (judge0/judge0, docs/api/):
// submissions (single, batch, wait or token), languages, statuses and configuration,
// translated onto the one job core through server.Runner, so that Judge0 clients work
// against sandboxd unchanged.
package judge0

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sandboxd/sandboxd/sandbox"
	"github.com/sandboxd/sandboxd/server"
)

// Version is the Judge0 CE API version this front follows (/version, /about).
const Version = "1.13.1"

// Options wire the front to the daemon.
type Options struct {
	Run      server.Runner                // the gate: every job goes through it
	Runtimes func() []sandbox.RuntimeInfo // installed runtimes with their limits in force
	Policy   func() sandbox.Policy        // the daemon's defaults and maximums (config_info)
	// Store holds token submissions; nil builds a MemoryStore over Run.
	Store Store
	// AuthToken, if it returns a non-empty token, makes every request carry it in
	// X-Auth-Token (Judge0's AUTHN_TOKEN); else 401.
	AuthToken func() string
	MaxBody   int64         // request body cap (default 2 MiB)
	MaxWait   time.Duration // longest a wait=true request waits (default 6 minutes)
	Logger    *slog.Logger
}

// Front serves Judge0's API.
type Front struct{ opts Options }

// New builds the front.
func New(opts Options) *Front {
	if opts.MaxBody == 0 {
		opts.MaxBody = 2 << 20
	}
	if opts.MaxWait == 0 {
		opts.MaxWait = 6 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Policy == nil {
		opts.Policy = sandbox.DefaultPolicy
	}
	if opts.Store == nil {
		opts.Store = NewMemoryStore(opts.Run, MemoryStoreOptions{Logger: opts.Logger})
	}
	return &Front{opts: opts}
}

// Mux is where the front mounts its routes (*server.Server, *http.ServeMux).
type Mux interface {
	Handle(pattern string, h http.Handler)
}

// Register mounts Judge0's routes at the root, as Judge0 serves them.
func (f *Front) Register(m Mux) {
	h := func(pattern string, fn http.HandlerFunc) { m.Handle(pattern, f.auth(fn)) }
	h("POST /submissions", f.create)
	h("GET /submissions/batch", f.batchShow)
	h("POST /submissions/batch", f.batchCreate)
	h("GET /submissions/{token}", f.show)
	// Listing and deleting need Judge0's authorization token (AUTHZ), which sandboxd
	// does not configure: Judge0 answers 403 then, and so does this front.
	h("GET /submissions", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) })
	h("DELETE /submissions/{token}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) })
	h("GET /languages", f.listLanguages)
	h("GET /languages/all", f.allLanguages)
	h("GET /languages/{id}", f.showLanguage)
	h("GET /statuses", f.statuses)
	h("GET /config_info", f.configInfo)
	h("GET /about", f.about)
	h("GET /version", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, Version)
	})
	for _, p := range []string{"/system_info", "/isolate", "/license", "/statistics", "/workers"} {
		h("GET "+p, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusNotFound, errorBody("not supported by sandboxd's Judge0 front: "+r.URL.Path))
		})
	}
	h("POST /authenticate", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	h("POST /authorize", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) })
}

// auth is SessionsController#authenticate_request: with a token configured, the
// X-Auth-Token header (or parameter) must carry it, else 401 with no body.
func (f *Front) auth(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.opts.AuthToken != nil {
			if want := f.opts.AuthToken(); want != "" {
				got := r.Header.Get("X-Auth-Token")
				if got == "" {
					got = r.URL.Query().Get("X-Auth-Token")
				}
				if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
			}
		}
		next(w, r)
	})
}

func (f *Front) policy() sandbox.Policy { return f.opts.Policy() }

func errorBody(msg string) map[string]string { return map[string]string{"error": msg} }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// query reads the flags every submission endpoint takes. base64_encoded defaults to
// false, as the docs say (Judge0 with DISABLE_IMPLICIT_BASE64_ENCODING=true).
func query(r *http.Request) (b64, wait bool, fields []string, err error) {
	q := r.URL.Query()
	b64 = q.Get("base64_encoded") == "true"
	wait = q.Get("wait") == "true"
	fields, err = parseFields(q.Get("fields"))
	return
}

func (f *Front) readBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, f.opts.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, errorBody(fmt.Sprintf("request body exceeds %d bytes", f.opts.MaxBody)))
		} else {
			writeJSON(w, http.StatusBadRequest, errorBody("could not read the request body"))
		}
		return false
	}
	// Rails reads JSON bodies whatever else they say; so does this front.
	if err := json.Unmarshal(body, v); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody("request body is not a JSON object: "+err.Error()))
		return false
	}
	return true
}

// meta is what a record keeps for the front: the checked submission.
func meta(s *submission) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// callbackBody is what Judge0 PUTs to callback_url: the submission, base64 encoded,
// with the default fields.
func (s *submission) callbackBody(rec Record) ([]byte, error) {
	out, err := s.render(rec.ID, rec, defaultFields, true)
	if err != nil {
		return nil, err
	}
	return json.Marshal(out)
}

func fromMeta(rec Record) (*submission, error) {
	var s submission
	if err := json.Unmarshal(rec.Meta, &s); err != nil {
		return nil, fmt.Errorf("submission %s: %w", rec.ID, err)
	}
	return &s, nil
}

// submit checks one submission and hands it to the store; a non-nil errs is its 422.
func (f *Front) submit(ctx context.Context, b *submissionBody, b64 bool) (Record, *submission, errs, error) {
	s, req, e := f.parse(b, b64)
	if e != nil {
		return Record{}, nil, e, nil
	}
	opts := SubmitOptions{Meta: meta(s)}
	if s.CallbackURL != nil {
		opts.CallbackURL, opts.CallbackMethod = *s.CallbackURL, http.MethodPut
		// Judge0 PUTs the submission, base64 encoded, with the default fields.
		opts.CallbackBody = s.callbackBody
	}
	rec, err := f.opts.Store.Submit(ctx, *req, opts)
	return rec, s, nil, err
}

// storeError answers a refusal from the store in Judge0's shape.
func storeError(w http.ResponseWriter, err error) {
	status, body := submitError(err)
	writeJSON(w, status, body)
}

// submitError is a refusal as Judge0 says it: 503 "queue is full", 422 naming the
// attribute at fault, or the runner's status with {"error": ...}.
func submitError(err error) (int, any) {
	switch {
	case errors.Is(err, ErrQueueFull):
		return http.StatusServiceUnavailable, errorBody("queue is full")
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, errorBody("submission not found")
	case errors.Is(err, ErrBadCallback):
		return http.StatusUnprocessableEntity, errs{"callback_url": {err.Error()}}
	}
	status, field, msg := server.RunError(err)
	if status == http.StatusBadRequest && field != "" {
		return http.StatusUnprocessableEntity, errs{judge0Field(field): {msg}}
	}
	return status, errorBody(msg)
}

// judge0Field names an engine field ("limits.memory", "files[0].name") as the
// submission's attribute that set it.
func judge0Field(f string) string {
	switch {
	case f == "code":
		return "source_code"
	case f == "args" || strings.HasPrefix(f, "args["), strings.HasPrefix(f, "tests["):
		return "command_line_arguments"
	case f == "files" || strings.HasPrefix(f, "files["):
		return "additional_files"
	}
	if n, ok := map[string]string{"limits.memory": "memory_limit", "limits.cpu_time": "cpu_time_limit",
		"limits.timeout": "wall_time_limit", "limits.stack": "stack_limit", "limits.pids": "max_processes_and_or_threads",
		"limits.file_size": "max_file_size"}[f]; ok {
		return n
	}
	return f
}

func (f *Front) create(w http.ResponseWriter, r *http.Request) {
	b64, wait, fields, err := query(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody(err.Error()))
		return
	}
	var b submissionBody
	if !f.readBody(w, r, &b) {
		return
	}
	rec, s, e, err := f.submit(r.Context(), &b, b64)
	switch {
	case e != nil:
		writeJSON(w, http.StatusUnprocessableEntity, e)
		return
	case err != nil:
		storeError(w, err)
		return
	}
	if !wait {
		writeJSON(w, http.StatusCreated, map[string]string{"token": rec.ID})
		return
	}
	rec, err = f.opts.Store.Wait(r.Context(), rec.ID, f.opts.MaxWait)
	if err != nil {
		storeError(w, err)
		return
	}
	out, err := s.render(rec.ID, rec, fields, b64)
	if err != nil {
		writeJSON(w, http.StatusCreated, map[string]string{"token": rec.ID, "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusCreated, out)
}

func (f *Front) show(w http.ResponseWriter, r *http.Request) {
	b64, _, fields, err := query(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody(err.Error()))
		return
	}
	token := r.PathValue("token")
	rec, err := f.opts.Store.Get(token)
	if err != nil {
		writeJSON(w, http.StatusNotFound, errorBody("submission "+strconv.Quote(token)+" not found"))
		return
	}
	s, err := fromMeta(rec)
	if err != nil {
		f.opts.Logger.Error("judge0 submission", "err", err)
		writeJSON(w, http.StatusInternalServerError, errorBody("internal error"))
		return
	}
	out, err := s.render(token, rec, fields, b64)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody(err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (f *Front) batchCreate(w http.ResponseWriter, r *http.Request) {
	b64, _, _, err := query(r) // fields are ignored here, as Judge0 does
	if err != nil && !strings.HasPrefix(err.Error(), "invalid fields") {
		writeJSON(w, http.StatusBadRequest, errorBody(err.Error()))
		return
	}
	var body struct {
		Submissions []json.RawMessage `json:"submissions"`
	}
	if !f.readBody(w, r, &body) {
		return
	}
	switch n := len(body.Submissions); {
	case n > maxBatch:
		writeJSON(w, http.StatusBadRequest, errorBody(fmt.Sprintf("number of submissions in a batch should be less than or equal to %d", maxBatch)))
		return
	case n == 0:
		writeJSON(w, http.StatusBadRequest, errorBody("there should be at least one submission in a batch"))
		return
	}
	out := make([]any, 0, len(body.Submissions))
	anyValid := false
	for _, raw := range body.Submissions {
		var b submissionBody
		if err := json.Unmarshal(raw, &b); err != nil {
			out = append(out, errs{"submission": {"is not a JSON object"}})
			continue
		}
		rec, _, e, err := f.submit(r.Context(), &b, b64)
		switch {
		case e != nil:
			out = append(out, e)
		case err != nil:
			_, body := submitError(err)
			out = append(out, body)
		default:
			out = append(out, map[string]string{"token": rec.ID})
			anyValid = true
		}
	}
	status := http.StatusCreated
	if !anyValid {
		status = http.StatusUnprocessableEntity
	}
	writeJSON(w, status, out)
}

func (f *Front) batchShow(w http.ResponseWriter, r *http.Request) {
	b64, _, fields, err := query(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody(err.Error()))
		return
	}
	raw := r.Header.Get("tokens")
	if raw == "" {
		raw = r.URL.Query().Get("tokens")
	}
	var tokens []string
	if t := strings.TrimSpace(raw); t != "" {
		tokens = strings.Split(t, ",")
	}
	switch n := len(tokens); {
	case n > maxBatch:
		writeJSON(w, http.StatusBadRequest, errorBody(fmt.Sprintf("number of submissions in a batch should be less than or equal to %d", maxBatch)))
		return
	case n == 0:
		writeJSON(w, http.StatusBadRequest, errorBody("there should be at least one submission in a batch"))
		return
	}
	subs := make([]any, 0, len(tokens))
	for _, tok := range tokens {
		rec, err := f.opts.Store.Get(tok)
		if err != nil {
			subs = append(subs, nil)
			continue
		}
		s, err := fromMeta(rec)
		if err != nil {
			subs = append(subs, nil)
			continue
		}
		out, err := s.render(tok, rec, fields, b64)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody("some attributes for one or more submissions cannot be converted to UTF-8, use base64_encoded=true query parameter"))
			return
		}
		subs = append(subs, out)
	}
	writeJSON(w, http.StatusOK, map[string]any{"submissions": subs})
}

type languageView struct {
	ID         int     `json:"id"`
	Name       string  `json:"name"`
	IsArchived *bool   `json:"is_archived,omitempty"`
	SourceFile *string `json:"source_file,omitempty"`
}

func (f *Front) sortedLanguages() []installed {
	ls := f.languages()
	slices.SortFunc(ls, func(a, b installed) int { return strings.Compare(a.name(), b.name()) })
	return ls
}

func (f *Front) listLanguages(w http.ResponseWriter, _ *http.Request) {
	out := []languageView{}
	for _, l := range f.sortedLanguages() {
		out = append(out, languageView{ID: l.ID, Name: l.name()})
	}
	writeJSON(w, http.StatusOK, out)
}

func (f *Front) allLanguages(w http.ResponseWriter, _ *http.Request) {
	out := []languageView{}
	for _, l := range f.sortedLanguages() {
		out = append(out, languageView{ID: l.ID, Name: l.name(), IsArchived: ptr(false)})
	}
	writeJSON(w, http.StatusOK, out)
}

func (f *Front) showLanguage(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	l, ok := f.language(id)
	if err != nil || !ok {
		writeJSON(w, http.StatusNotFound, errorBody("language "+strconv.Quote(r.PathValue("id"))+" not found"))
		return
	}
	// compile_cmd and run_cmd are Judge0's host command lines; sandboxd's runtimes are
	// argv templates inside the container, so they are null rather than invented.
	writeJSON(w, http.StatusOK, map[string]any{"id": l.ID, "name": l.name(), "is_archived": false,
		"source_file": l.SourceFile, "compile_cmd": nil, "run_cmd": nil})
}

func (f *Front) statuses(w http.ResponseWriter, _ *http.Request) {
	out := make([]map[string]any, 0, len(statusNames))
	for id := 1; id <= len(statusNames); id++ {
		out = append(out, map[string]any{"id": id, "description": statusNames[id]})
	}
	writeJSON(w, http.StatusOK, out)
}

func (f *Front) about(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"version": Version, "homepage": nil,
		"source_code": nil, "maintainer": "sandboxd (Judge0 CE compatible front)"})
}

// configInfo is Config.config_info with this daemon's values: defaults and maximums
// from its policy in Judge0's units, and false for what the front refuses.
func (f *Front) configInfo(w http.ResponseWriter, _ *http.Request) {
	p := f.policy()
	d, m := p.Default, p.Max
	kb := func(v int64) int64 { return v / 1024 }
	cpu, extra := cpuDefaults(d.CPUTime)
	writeJSON(w, http.StatusOK, map[string]any{
		"maintenance_mode":                                 false,
		"enable_wait_result":                               true,
		"enable_compiler_options":                          false,
		"allowed_languages_for_compile_options":            []string{},
		"enable_command_line_arguments":                    true,
		"enable_submission_delete":                         false,
		"enable_callbacks":                                 true,
		"callbacks_max_tries":                              3,
		"callbacks_timeout":                                5.0,
		"enable_additional_files":                          true,
		"max_queue_size":                                   100,
		"cpu_time_limit":                                   cpu,
		"max_cpu_time_limit":                               m.CPUTime.Seconds(),
		"cpu_extra_time":                                   extra,
		"max_cpu_extra_time":                               m.CPUTime.Seconds() - cpu,
		"wall_time_limit":                                  d.Timeout.Seconds(),
		"max_wall_time_limit":                              m.Timeout.Seconds(),
		"memory_limit":                                     kb(d.Memory),
		"max_memory_limit":                                 kb(m.Memory),
		"stack_limit":                                      kb(d.Stack),
		"max_stack_limit":                                  kb(m.Stack),
		"max_processes_and_or_threads":                     d.Pids,
		"max_max_processes_and_or_threads":                 m.Pids,
		"enable_per_process_and_thread_time_limit":         false,
		"allow_enable_per_process_and_thread_time_limit":   false,
		"enable_per_process_and_thread_memory_limit":       false,
		"allow_enable_per_process_and_thread_memory_limit": false,
		"max_file_size":                                    kb(d.FileSize),
		"max_max_file_size":                                kb(m.FileSize),
		"number_of_runs":                                   1,
		"max_number_of_runs":                               maxNumberOfRuns,
		"redirect_stderr_to_stdout":                        false,
		"max_extract_size":                                 maxExtractKB,
		"enable_batched_submissions":                       true,
		"max_submission_batch_size":                        maxBatch,
		"submission_cache_duration":                        0,
		"use_docs_as_homepage":                             false,
		"allow_enable_network":                             false,
		"enable_network":                                   false,
		"disable_implicit_base64_encoding":                 true,
	})
}
