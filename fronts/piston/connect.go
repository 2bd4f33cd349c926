package piston

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sys/unix"

	"github.com/sandboxd/sandboxd/sandbox"
)

// Piston's /connect close codes (api/src/api/v2.js).
const (
	closeAlreadyInit   websocket.StatusCode = 4000
	closeInitTimeout   websocket.StatusCode = 4001
	closeNotifiedError websocket.StatusCode = 4002
	closeNotInit       websocket.StatusCode = 4003
	closeOnlyStdin     websocket.StatusCode = 4004
	closeBadSignal     websocket.StatusCode = 4005
	closeJobCompleted  websocket.StatusCode = 4999
)

// initTimeout is how long Piston waits for the init message.
const initTimeout = time.Second

// wsMessage is any message a client sends.
type wsMessage struct {
	Type   string `json:"type"`
	Stream string `json:"stream"`
	Data   string `json:"data"`
	Signal string `json:"signal"`
	jobBody
}

// connect serves WS /api/v2/connect: an init message starts the job, data messages
// feed its stdin as it runs, signal messages signal it; the server sends runtime, stage,
// data and exit messages, then closes with 4999.
func (f *Front) connect(w http.ResponseWriter, r *http.Request) {
	// Piston checks no origin; browsers cannot add the daemon's bearer token to a
	// WebSocket anyway, so a token-protected daemon stays protected.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept has answered
	}
	c.SetReadLimit(f.opts.MaxBody)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	s := &session{f: f, c: c, ctx: ctx}
	s.serve()
}

type session struct {
	f   *Front
	c   *websocket.Conn
	ctx context.Context

	wmu sync.Mutex // one writer at a time: the engine's event goroutines and the loop

	id       string
	stdin    chan []byte
	done     chan jobDone
	cancel   context.CancelFunc
	compiled bool // a compile stage ran and its exit was sent
}

type jobDone struct {
	res *sandbox.Result
	err error
	j   *job
}

func (s *session) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	_ = s.c.Write(ctx, websocket.MessageText, b)
}

func (s *session) close(code websocket.StatusCode, reason string) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_ = s.c.Close(code, reason)
}

// fail is Piston's catch: an error message, then 4002.
func (s *session) fail(msg string) {
	s.send(map[string]string{"type": "error", "message": msg})
	s.close(closeNotifiedError, "Notified Error")
}

func (s *session) serve() {
	msgs := make(chan []byte)
	go func() {
		defer close(msgs)
		for {
			_, b, err := s.c.Read(s.ctx)
			if err != nil {
				return
			}
			select {
			case msgs <- b:
			case <-s.ctx.Done():
				return
			}
		}
	}()
	timer := time.NewTimer(initTimeout)
	defer timer.Stop()
	defer s.stop()
	for {
		select {
		case <-timer.C:
			if s.done == nil {
				s.close(closeInitTimeout, "Initialization Timeout")
				return
			}
		case b, ok := <-msgs:
			if !ok {
				return // the client went away: stop cancels the job
			}
			if !s.handle(b) {
				return
			}
		case d := <-s.done:
			s.finish(d)
			return
		}
	}
}

// handle acts on one client message; false ends the session.
func (s *session) handle(b []byte) bool {
	var m wsMessage
	if err := json.Unmarshal(b, &m); err != nil {
		s.fail(err.Error())
		return false
	}
	switch m.Type {
	case "init":
		if s.done != nil {
			s.close(closeAlreadyInit, "Already Initialized")
			return false
		}
		return s.start(&m.jobBody)
	case "data":
		if s.done == nil {
			s.close(closeNotInit, "Not yet initialized")
			return false
		}
		if m.Stream != "stdin" {
			s.close(closeOnlyStdin, "Can only write to stdin")
			return false
		}
		select {
		case s.stdin <- []byte(m.Data):
		default:
			s.fail("stdin is not being read fast enough")
			return false
		}
	case "signal":
		if s.done == nil {
			s.close(closeNotInit, "Not yet initialized")
			return false
		}
		sig := unix.SignalNum(m.Signal)
		if sig == 0 || !strings.HasPrefix(m.Signal, "SIG") || s.f.opts.Signal == nil {
			s.close(closeBadSignal, "Invalid signal")
			return false
		}
		if err := s.f.opts.Signal(s.id, sig); err != nil && !errors.Is(err, sandbox.ErrJobNotFound) {
			s.fail("could not signal the job")
			return false
		}
	}
	// Piston ignores other message types.
	return true
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "sbx-ws-" + hex.EncodeToString(b)
}

// start parses the init message and starts the job in the background.
func (s *session) start(b *jobBody) bool {
	j, err := s.f.parse(b)
	if err != nil {
		s.fail(err.Error())
		return false
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		s.fail("internal error")
		return false
	}
	s.id = newID()
	s.stdin = make(chan []byte, 256)
	s.done = make(chan jobDone, 1)
	var jobCtx context.Context
	jobCtx, s.cancel = context.WithCancel(context.Background())
	j.req.ID = s.id
	j.req.StdinStream = pr
	out := &output{}
	j.req.Events = func(ev sandbox.Event) {
		out.event(ev)
		switch ev.Type {
		case sandbox.EventStage:
			if ev.Stage == sandbox.StageRun && s.markCompiled(j) {
				// The run starts only after a compile step that succeeded.
				s.send(exitMsg{Type: "exit", Stage: "compile", Code: ptr(0)})
			}
			s.send(map[string]string{"type": "stage", "stage": string(ev.Stage)})
		case sandbox.EventStdout, sandbox.EventStderr:
			stream := "stdout"
			if ev.Type == sandbox.EventStderr {
				stream = "stderr"
			}
			s.send(map[string]string{"type": "data", "stream": stream, "data": text(string(ev.Data))})
		}
	}
	s.send(map[string]string{"type": "runtime", "language": j.rt.Name, "version": j.rt.Version})
	// The stdin pump: the loop never blocks on a job that does not read.
	go func() {
		defer pw.Close()
		for {
			select {
			case data := <-s.stdin:
				if _, err := pw.Write(data); err != nil {
					return
				}
			case <-jobCtx.Done():
				return
			}
		}
	}()
	go func() {
		res, err := s.f.opts.Run.Run(jobCtx, j.req)
		pr.Close()
		s.done <- jobDone{res: res, err: err, j: j}
	}()
	return true
}

func (s *session) markCompiled(j *job) bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if !j.rt.Compiled || s.compiled {
		return false
	}
	s.compiled = true
	return true
}

type exitMsg struct {
	Type   string  `json:"type"`
	Stage  string  `json:"stage"`
	Code   *int    `json:"code"`
	Signal *string `json:"signal"`
}

// finish sends the last stage's exit and closes with 4999 "Job Completed".
func (s *session) finish(d jobDone) {
	if d.err != nil {
		s.fail(d.j.runError(d.err).msg)
		return
	}
	v := view(d.res, &output{})
	st := "run"
	if d.res.Compile != nil && (d.res.Status == sandbox.StatusCompileError || d.res.Status == sandbox.StatusCompileTimeout) {
		st = "compile"
	}
	if d.res.Status == sandbox.StatusInternalError {
		s.fail("the sandbox failed to run the job")
		return
	}
	s.send(exitMsg{Type: "exit", Stage: st, Code: v.Run.Code, Signal: v.Run.Signal})
	s.close(closeJobCompleted, "Job Completed")
}

// stop ends a job still running when the session ends and waits for it.
func (s *session) stop() {
	if s.cancel == nil {
		return
	}
	s.cancel()
}
