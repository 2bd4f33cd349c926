package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/api"
	"github.com/sandboxd/sandboxd/jobs"
	"github.com/sandboxd/sandboxd/sandbox"
)

// wsSignals are the signals a /v1/ws client may send its job's command.
var wsSignals = map[string]unix.Signal{
	"SIGINT": unix.SIGINT, "SIGTERM": unix.SIGTERM, "SIGKILL": unix.SIGKILL, "SIGHUP": unix.SIGHUP,
	"SIGQUIT": unix.SIGQUIT, "SIGUSR1": unix.SIGUSR1, "SIGUSR2": unix.SIGUSR2,
}

// wsFirstMessage bounds how long a client may take to send its request.
const wsFirstMessage = 30 * time.Second

// ws runs one job interactively over a WebSocket: the client's first text message is
// the execute request; then it sends stdin chunks, the end of stdin, and signals
// (api.WSMessage); the server sends the job's events as NDJSON does, then the result,
// and closes normally. A bad message gets an error event naming the field; a bad
// request closes the connection with 1008 (policy violation). A client that goes away
// cancels the job.
func (j *Jobs) ws(w http.ResponseWriter, r *http.Request) {
	s := j.s
	_ = http.NewResponseController(w).SetReadDeadline(noDeadline)
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept answered the client
	}
	defer c.CloseNow()
	c.SetReadLimit(s.opts.MaxBodyBytes)
	// The connection's context: ServeHTTP's request context is not the job's once hijacked.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	send := func(v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return c.Write(ctx, websocket.MessageText, b)
	}
	refuse := func(err error) {
		ev := api.Event{Type: "error", Error: "internal error"}
		var ae *apiError
		if errors.As(err, &ae) {
			ev.Error, ev.Field = ae.message, ae.field
		}
		_ = send(ev)
		c.Close(websocket.StatusPolicyViolation, "bad request")
	}

	first, cancelFirst := context.WithTimeout(ctx, wsFirstMessage)
	typ, msg, err := c.Read(first)
	cancelFirst()
	if err != nil {
		return
	}
	if typ != websocket.MessageText {
		refuse(&apiError{status: http.StatusBadRequest, message: "the first message must be the execute request, as text"})
		return
	}
	var body api.ExecuteRequest
	if err := s.decodeBytes(msg, &body, true); err != nil {
		refuse(err)
		return
	}
	req, b64, err := parseExecute(&body)
	if err == nil && int64(len(req.Code)) > s.opts.MaxCodeBytes {
		err = &apiError{status: http.StatusRequestEntityTooLarge, field: "code", message: fmt.Sprintf("code: exceeds %d bytes", s.opts.MaxCodeBytes)}
	}
	if err != nil {
		refuse(err)
		return
	}
	req.ID = newStreamID()
	pr, pw := io.Pipe()
	req.StdinStream = pr
	log := jobs.NewEventLog()
	req.Events = log.Add

	type outcome struct {
		res *sandbox.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := s.run.Run(ctx, req)
		log.Close()
		pr.CloseWithError(io.ErrClosedPipe) // a stdin write still pending fails now
		done <- outcome{res, err}
	}()

	// stdin is written by a goroutine of its own: the job may not read it for a while,
	// and signals must still get through.
	stdin := make(chan []byte, 4) // with the read limit, bounds what one client can have buffered
	go func() {
		for b := range stdin {
			if _, err := pw.Write(b); err != nil {
				for range stdin { // drain: the job does not read any more
				}
				return
			}
		}
		pw.Close()
	}()
	go func() {
		closed := false
		defer func() {
			if !closed {
				close(stdin)
			}
		}()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				cancel() // the client is gone (or the job ended and we closed): cancel the job
				return
			}
			var m api.WSMessage
			if typ != websocket.MessageText {
				_ = send(api.Event{Type: "error", Error: "messages must be text (JSON)"})
				continue
			}
			if err := s.decodeBytes(msg, &m, true); err != nil {
				var ae *apiError
				errors.As(err, &ae)
				_ = send(api.Event{Type: "error", Error: ae.message, Field: ae.field})
				continue
			}
			switch m.Type {
			case "stdin":
				if closed {
					_ = send(api.Event{Type: "error", Error: "stdin is closed", Field: "type"})
					continue
				}
				select {
				case stdin <- []byte(m.Data):
				case <-ctx.Done():
					return
				}
			case "stdin_close":
				if !closed {
					closed = true
					close(stdin)
				}
			case "signal":
				sig, ok := wsSignals[m.Signal]
				if !ok {
					_ = send(api.Event{Type: "error", Error: fmt.Sprintf("signal: %q is not one of SIGINT, SIGTERM, SIGKILL, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2", m.Signal), Field: "signal"})
					continue
				}
				if j.Signal == nil {
					_ = send(api.Event{Type: "error", Error: "signal: this daemon does not pass signals", Field: "signal"})
					continue
				}
				if err := j.Signal(req.ID, sig); err != nil {
					_ = send(api.Event{Type: "error", Error: "signal: the job is not running yet", Field: "signal"})
				}
			default:
				_ = send(api.Event{Type: "error", Error: fmt.Sprintf("type: %q is not one of stdin, stdin_close, signal", m.Type), Field: "type"})
			}
		}
	}()

	err = follow(ctx, log, newEventEncoder(b64), func(ev api.Event) error { return send(ev) })
	o := <-done
	if err != nil {
		return
	}
	if o.err != nil {
		refuse(s.runError(o.err, "limits.gpus"))
		return
	}
	if err := send(api.Event{Type: "result", State: string(jobs.StateDone), Result: ToAPI(o.res, b64)}); err != nil {
		return
	}
	c.Close(websocket.StatusNormalClosure, "")
}
