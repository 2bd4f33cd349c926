package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/sandboxd/sandboxd/api"
	"github.com/sandboxd/sandboxd/jobs"
	"github.com/sandboxd/sandboxd/sandbox"
)

// NDJSON is the media type of the streams: one JSON object per line.
const NDJSON = "application/x-ndjson"

// wantsNDJSON says whether the client asked for a stream (Accept: application/x-ndjson).
func wantsNDJSON(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == NDJSON {
			return true
		}
	}
	return false
}

// eventEncoder turns the engine's events into wire events. In text mode it never
// splits a UTF-8 character across two chunks: an incomplete one at a chunk's end waits
// for the next chunk of its stream. What is still not valid UTF-8 is replaced by
// U+FFFD and the chunk flagged lossy; base64 mode sends the bytes exactly.
type eventEncoder struct {
	b64   bool
	carry map[sandbox.EventType][]byte
}

func newEventEncoder(b64 bool) *eventEncoder {
	return &eventEncoder{b64: b64, carry: map[sandbox.EventType][]byte{}}
}

func (e *eventEncoder) chunk(t sandbox.EventType, data []byte, truncated bool) api.Event {
	ev := api.Event{Type: string(t), Truncated: truncated}
	if e.b64 {
		ev.Data, ev.Encoding = base64.StdEncoding.EncodeToString(data), "base64"
	} else {
		ev.Data, ev.Lossy = text(string(data), false)
	}
	return ev
}

// encode returns the wire events for ev (none, when a text chunk is all an incomplete character).
func (e *eventEncoder) encode(ev sandbox.Event) []api.Event {
	if ev.Type == sandbox.EventStage {
		out := e.flush()
		we := api.Event{Type: "stage", Stage: string(ev.Stage)}
		if ev.Stage == sandbox.StageTest {
			i := ev.Test
			we.Test = &i
		}
		return append(out, we)
	}
	if e.b64 {
		return []api.Event{e.chunk(ev.Type, ev.Data, ev.Truncated)}
	}
	data := append(e.carry[ev.Type], ev.Data...)
	e.carry[ev.Type] = nil
	cut := len(data)
	if !ev.Truncated { // a truncated chunk is the stream's last: send it all
		for i := len(data) - 1; i >= 0 && i >= len(data)-utf8.UTFMax+1; i-- {
			if utf8.RuneStart(data[i]) {
				if !utf8.FullRune(data[i:]) {
					cut = i
				}
				break
			}
		}
	}
	if cut < len(data) {
		e.carry[ev.Type] = bytes.Clone(data[cut:])
	}
	if cut == 0 && !ev.Truncated {
		return nil
	}
	return []api.Event{e.chunk(ev.Type, data[:cut], ev.Truncated)}
}

// flush sends what is carried (a stream ended inside a character).
func (e *eventEncoder) flush() []api.Event {
	var out []api.Event
	for _, t := range []sandbox.EventType{sandbox.EventStdout, sandbox.EventStderr} {
		if b := e.carry[t]; len(b) > 0 {
			out = append(out, e.chunk(t, b, false))
			e.carry[t] = nil
		}
	}
	return out
}

// follow sends the events of log through emit as they come, until the log is closed
// (then it flushes) or ctx ends.
func follow(ctx context.Context, log *jobs.EventLog, enc *eventEncoder, emit func(api.Event) error) error {
	for i := 0; ; {
		evs, closed, more := log.Next(i)
		for _, ev := range evs {
			for _, we := range enc.encode(ev) {
				if err := emit(we); err != nil {
					return err
				}
			}
		}
		i += len(evs)
		if closed {
			if n, _, _ := log.Next(i); len(n) > 0 {
				continue
			}
			for _, we := range enc.flush() {
				if err := emit(we); err != nil {
					return err
				}
			}
			return nil
		}
		select {
		case <-more:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// lineWriter writes NDJSON lines, each flushed at once.
type lineWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func newLineWriter(w http.ResponseWriter) *lineWriter {
	w.Header().Set("Content-Type", NDJSON)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	return &lineWriter{w: w, rc: http.NewResponseController(w)}
}

func (l *lineWriter) write(v any) error {
	b, err := marshalLine(v)
	if err != nil {
		return err
	}
	if _, err := l.w.Write(b); err != nil {
		return err
	}
	return l.rc.Flush()
}

func marshalLine(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(v) // ends in '\n'
	return buf.Bytes(), err
}

// executeStream runs req for POST /v1/execute with Accept: application/x-ndjson: the
// events as lines as they come, then the result. Until the job starts, a refusal is
// an ordinary JSON error with its status; once streaming, the status is 200. The
// request's context is the job's: a client that goes away cancels it.
func (s *Server) executeStream(w http.ResponseWriter, r *http.Request, req sandbox.Request, b64 bool) {
	// The body is read: the server's read deadline must not end the job's context.
	_ = http.NewResponseController(w).SetReadDeadline(noDeadline)
	log := jobs.NewEventLog()
	req.Events = log.Add
	type outcome struct {
		res *sandbox.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := s.runJob(r, req, "limits.gpus")
		log.Close()
		done <- outcome{res, err}
	}()
	// Wait for the job's first event (it started) or its end (it may have been refused).
	_, closed, more := log.Next(0)
	if !closed {
		select {
		case <-more:
		case <-r.Context().Done():
		}
	}
	if evs, closed, _ := log.Next(0); len(evs) == 0 && closed {
		o := <-done
		if o.err != nil {
			s.fail(w, o.err)
			return
		}
	}
	lw := newLineWriter(w)
	err := follow(r.Context(), log, newEventEncoder(b64), func(ev api.Event) error { return lw.write(ev) })
	o := <-done // the job ends with the request's context when the client is gone
	if err != nil {
		return
	}
	if o.err != nil {
		var ae *apiError
		ev := api.Event{Type: "error", Error: "internal error"}
		if errors.As(o.err, &ae) {
			ev.Error, ev.Field = ae.message, ae.field
		}
		_ = lw.write(ev)
		return
	}
	_ = lw.write(api.Event{Type: "result", State: string(jobs.StateDone), Result: ToAPI(o.res, b64)})
}

// decodeBytes decodes one JSON value from b as decode does a body: bounded nesting,
// unknown fields refused when strict.
func (s *Server) decodeBytes(b []byte, v any, strict bool) error {
	if int64(len(b)) > s.opts.MaxBodyBytes {
		return &apiError{status: http.StatusRequestEntityTooLarge, message: fmt.Sprintf("message exceeds %d bytes", s.opts.MaxBodyBytes)}
	}
	if err := checkDepth(b, s.opts.MaxJSONDepth); err != nil {
		return &apiError{status: http.StatusBadRequest, message: err.Error()}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return &apiError{status: http.StatusBadRequest, message: "holds more than one JSON value"}
	}
	return nil
}
