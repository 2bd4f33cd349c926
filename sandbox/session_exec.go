package sandbox

import (
	"context"
	"encoding/json"
	"time"

	"golang.org/x/sys/unix"
)

// interruptGrace is how long a cell has to stop once interrupted at its timeout before
// the session is ended.
const interruptGrace = 3 * time.Second

// maxRichBytes bounds the rich results (mime bundles) one cell returns; more are dropped
// and the result says so.
const maxRichBytes = 16 << 20

// CellEventType is what a CellEvent carries.
type CellEventType string

const (
	CellStdout CellEventType = "stdout"
	CellStderr CellEventType = "stderr"
	CellResult CellEventType = "result" // an execute_result or display_data
	CellError  CellEventType = "error"
)

// CellEvent is something a running cell produced (Execute's events).
type CellEvent struct {
	Type   CellEventType
	Text   string
	Result *RichResult
	Error  *CellErr
}

// RichResult is a mime bundle: an execute_result (the cell's value) or a display_data.
type RichResult struct {
	Data     map[string]json.RawMessage // "text/plain", "text/html", "image/png" (base64), ...
	Metadata json.RawMessage
	IsMain   bool // the cell's value (execute_result)
}

// CellErr is an exception a cell raised.
type CellErr struct {
	Name      string
	Value     string
	Traceback []string
}

// CellOutcome is what one cell did.
type CellOutcome struct {
	ExecutionCount  int
	Status          string // the kernel's: ok, error, aborted; "" when it never replied
	Stdout, Stderr  string
	StdoutTruncated bool
	StderrTruncated bool
	Results         []RichResult
	ResultsDropped  bool
	Error           *CellErr
	TimedOut        bool // interrupted at the cell timeout
	WallMS          float64
	CPUMS           float64 // this cell's CPU, all the session's processes
	MemoryPeak      int64   // this cell's peak (cgroup v1) or the session's so far (v2)
	SessionCPUMS    float64
	// SessionEnded is set when the cell ended the session (a crash, the memory limit, a
	// cell that would not stop), with why.
	SessionEnded     SessionStatus
	SessionEndDetail string
}

// Execute runs one cell. Cells run one at a time: a second waits for the first (or ctx).
// A cell past its timeout is interrupted (KeyboardInterrupt); if it does not stop
// within a grace, the session is ended. ctx ending interrupts the cell too.
func (s *Session) Execute(ctx context.Context, code string, events func(CellEvent)) (*CellOutcome, error) {
	select {
	case s.cell <- struct{}{}:
	case <-s.ended:
		return nil, ErrSessionEnded
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.cell }()
	s.mu.Lock()
	if s.status.ended() {
		s.mu.Unlock()
		return nil, ErrSessionEnded
	}
	s.status = SessionBusy
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if !s.status.ended() {
			s.status = SessionIdle
		}
		s.lastUsed = time.Now()
		s.mu.Unlock()
		select {
		case s.touch <- struct{}{}:
		default:
		}
	}()

	mode, paths := s.e.place.mode, s.jp.paths
	resetMemoryPeak(mode, paths)
	cpu0, _ := cpuUsage(mode, paths)
	start := time.Now()
	out := &CellOutcome{}
	content, _ := json.Marshal(map[string]any{"code": code, "silent": false, "store_history": true,
		"user_expressions": map[string]any{}, "allow_stdin": false,
		// Cells are one request each, run one at a time: an error must not abort the next.
		"stop_on_error": false})
	ch, done, err := s.kc.send("shell", &kernelMsg{Header: msgHeader{MsgType: "execute_request"}, Content: content})
	if err != nil {
		return nil, ErrSessionEnded
	}
	defer done()

	limit := s.e.opts.OutputLimit
	var stdout, stderr capture
	stdout.limit, stderr.limit = limit, limit
	if events != nil {
		stdout.sink = func(b []byte, _ bool) { events(CellEvent{Type: CellStdout, Text: string(b)}) }
		stderr.sink = func(b []byte, _ bool) { events(CellEvent{Type: CellStderr, Text: string(b)}) }
	}
	richBytes := 0
	timeout := time.NewTimer(s.lim.Timeout)
	defer timeout.Stop()
	var grace <-chan time.Time
	interrupt := func() { _ = unix.Kill(s.pid, unix.SIGINT) }
	replied, idle := false, false
	for !(replied && idle) {
		select {
		case m := <-ch:
			switch {
			case m.Channel == "shell" && m.Header.MsgType == "execute_reply":
				var r struct {
					Status         string `json:"status"`
					ExecutionCount int    `json:"execution_count"`
				}
				_ = json.Unmarshal(m.Content, &r)
				out.Status, out.ExecutionCount, replied = r.Status, r.ExecutionCount, true
			case m.Channel != "iopub":
			case m.Header.MsgType == "status":
				var st struct {
					ExecutionState string `json:"execution_state"`
				}
				_ = json.Unmarshal(m.Content, &st)
				idle = idle || st.ExecutionState == "idle"
			case m.Header.MsgType == "stream":
				var st struct{ Name, Text string }
				_ = json.Unmarshal(m.Content, &st)
				if st.Name == "stderr" {
					stderr.Write([]byte(st.Text))
				} else {
					stdout.Write([]byte(st.Text))
				}
			case m.Header.MsgType == "execute_input":
				var in struct {
					ExecutionCount int `json:"execution_count"`
				}
				_ = json.Unmarshal(m.Content, &in)
				out.ExecutionCount = in.ExecutionCount
			case m.Header.MsgType == "execute_result" || m.Header.MsgType == "display_data":
				var r struct {
					Data     map[string]json.RawMessage `json:"data"`
					Metadata json.RawMessage            `json:"metadata"`
				}
				if json.Unmarshal(m.Content, &r) != nil {
					continue
				}
				if richBytes += len(m.Content); richBytes > maxRichBytes {
					out.ResultsDropped = true
					continue
				}
				rr := RichResult{Data: r.Data, Metadata: r.Metadata, IsMain: m.Header.MsgType == "execute_result"}
				out.Results = append(out.Results, rr)
				if events != nil {
					events(CellEvent{Type: CellResult, Result: &rr})
				}
			case m.Header.MsgType == "error":
				var r struct {
					Ename     string   `json:"ename"`
					Evalue    string   `json:"evalue"`
					Traceback []string `json:"traceback"`
				}
				_ = json.Unmarshal(m.Content, &r)
				out.Error = &CellErr{Name: r.Ename, Value: r.Evalue, Traceback: r.Traceback}
				if events != nil {
					events(CellEvent{Type: CellError, Error: out.Error})
				}
			}
		case <-timeout.C:
			out.TimedOut = true
			interrupt()
			grace = time.After(interruptGrace)
		case <-grace:
			select {
			case s.end <- SessionCellTimeout:
			default:
			}
			<-s.ended
			replied, idle = true, true
		case <-ctx.Done():
			// The client went away: stop the cell so the next one can run.
			if grace == nil {
				interrupt()
				grace = time.After(interruptGrace)
			}
		case <-s.ended:
			replied, idle = true, true
		}
	}
	out.WallMS = ms(time.Since(start))
	out.Stdout, out.StdoutTruncated = stdout.buf.String(), stdout.truncated
	out.Stderr, out.StderrTruncated = stderr.buf.String(), stderr.truncated
	select {
	case <-s.ended:
		info := s.Info()
		out.SessionEnded, out.SessionEndDetail = info.Status, info.Detail
		out.SessionCPUMS = info.CPUMS
		return out, nil
	default:
	}
	if cpu1, err := cpuUsage(mode, paths); err == nil {
		out.CPUMS = ms(cpu1 - cpu0)
		out.SessionCPUMS = ms(cpu1 - s.jp.cpuBase)
	}
	if f, err := readFigures(mode, paths); err == nil {
		out.MemoryPeak = int64(f.memoryPeak)
	}
	s.mu.Lock()
	if out.ExecutionCount > s.execCount {
		s.execCount = out.ExecutionCount
	}
	s.mu.Unlock()
	return out, ctx.Err()
}

// Interrupt sends the kernel SIGINT: a running cell raises KeyboardInterrupt.
func (s *Session) Interrupt() error {
	select {
	case <-s.ended:
		return ErrSessionEnded
	default:
	}
	return unix.Kill(s.pid, unix.SIGINT)
}
