package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// JupyterMsg is a Jupyter message as the messaging protocol's JSON form carries it (a
// WebSocket's /api/kernels/{id}/channels): the kernel's own parts, unchanged, and the
// channel. Binary buffers are not carried.
type JupyterMsg struct {
	Header       json.RawMessage `json:"header"`
	ParentHeader json.RawMessage `json:"parent_header"`
	Metadata     json.RawMessage `json:"metadata"`
	Content      json.RawMessage `json:"content"`
	Channel      string          `json:"channel"`
	Buffers      []any           `json:"buffers"`
}

// Relay connects a client to the kernel: recv is told of every message the kernel
// sends, on whichever channel (it must not block: a client that cannot keep up is the
// caller's to drop); the returned send passes the client's shell and control messages
// to the kernel as they are, but for allow_stdin, which is forced off (the daemon has
// no stdin channel: input() raises at once instead of hanging). stop ends the relay.
func (s *Session) Relay(recv func(JupyterMsg)) (send func(JupyterMsg) error, stop func()) {
	stop = s.kc.addTap(func(m *kernelMsg) {
		recv(JupyterMsg{Header: m.RawHeader, ParentHeader: m.RawParent, Metadata: m.Metadata, Content: m.Content,
			Channel: m.Channel, Buffers: []any{}})
	})
	send = func(m JupyterMsg) error {
		if err := s.alive(); err != nil {
			return err
		}
		if m.Channel != "shell" && m.Channel != "control" {
			return fmt.Errorf("channel %q is not relayed", m.Channel)
		}
		var h msgHeader
		if err := json.Unmarshal(m.Header, &h); err != nil || h.MsgID == "" || h.MsgType == "" {
			return errors.New("header: needs msg_id and msg_type")
		}
		content := []byte(m.Content)
		if h.MsgType == "execute_request" {
			var c map[string]json.RawMessage
			if err := json.Unmarshal(content, &c); err != nil {
				return errors.New("content: not an object")
			}
			c["allow_stdin"] = json.RawMessage("false")
			content, _ = json.Marshal(c)
		}
		orEmpty := func(b []byte) []byte {
			if len(b) == 0 || string(b) == "null" {
				return []byte("{}")
			}
			return b
		}
		s.mu.Lock()
		s.lastUsed = time.Now()
		s.mu.Unlock()
		select {
		case s.touch <- struct{}{}:
		default:
		}
		return s.kc.post(m.Channel, m.Header, orEmpty(m.ParentHeader), orEmpty(m.Metadata), orEmpty(content), nil)
	}
	return send, stop
}

// RestartSession replaces a session's kernel with a fresh one, in a new container with
// the same limits, TTL and lifetime (nothing of the old one's state survives), and
// returns it. The old session ends as deleted.
func (e *Engine) RestartSession(id string) (*Session, error) {
	old, err := e.Session(id)
	if err != nil {
		return nil, err
	}
	old.stop(SessionDeleted)
	return e.CreateSession(context.Background(), SessionRequest{Limits: old.lim, IdleTTL: old.idleTTL, Lifetime: old.lifetime})
}

// Status is the session's state now.
func (s *Session) Status() SessionStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}
