package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// CallbackRequest is what an encoder makes of a finished job.
type CallbackRequest struct {
	Method      string // default POST
	ContentType string // default application/json
	Body        []byte
}

// CallbackEncoder builds the callback request of a final record (its Result loaded).
type CallbackEncoder func(Record) (CallbackRequest, error)

// CheckCallbackURL refuses a callback URL that is not http or https with a host, and,
// unless offHost, one whose host is not loopback (127.0.0.0/8, ::1, localhost). The
// dialer checks again at connect time, so a name cannot resolve its way off the host.
func CheckCallbackURL(raw string, offHost bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: not a URL: %v", ErrBadCallback, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: the scheme must be http or https, not %q", ErrBadCallback, u.Scheme)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("%w: the URL has no host", ErrBadCallback)
	}
	if u.User != nil {
		return fmt.Errorf("%w: the URL may not hold credentials", ErrBadCallback)
	}
	if !offHost && !loopbackHost(u.Hostname()) {
		return fmt.Errorf("%w: %q is not loopback, and callbacks_off_host is off", ErrBadCallback, u.Hostname())
	}
	return nil
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// client is the HTTP client deliveries use: no redirects (a 3xx is a failure), and
// unless off-host callbacks are allowed, connections to loopback addresses only.
func (m *Manager) client() *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if !m.opts.CallbacksOffHost {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil || !loopbackHost(host) {
				return fmt.Errorf("callback to %s refused: not loopback", address)
			}
			return nil
		}
	}
	return &http.Client{
		Timeout:       m.opts.CallbackTimeout,
		Transport:     &http.Transport{DialContext: d.DialContext, Proxy: nil, MaxIdleConns: 4},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// deliver sends a done (or lost) job's callback, retrying with exponential backoff up
// to CallbackAttempts; each attempt is recorded on the job. Close stops it; a pending
// callback is resumed at the next start.
func (m *Manager) deliver(id string) {
	defer m.callbacks.Done()
	cl := m.client()
	defer cl.CloseIdleConnections()
	for {
		rec, err := m.be.get(id)
		if err != nil || rec.Callback == nil || rec.Callback.State != CallbackPending {
			return
		}
		err = m.attempt(cl, rec)
		attempts := rec.Callback.Attempts + 1
		state := CallbackPending
		switch {
		case err == nil:
			state = CallbackDelivered
		case attempts >= m.opts.CallbackAttempts:
			state = CallbackFailed
		}
		if _, serr := m.be.update(id, func(r *Record) {
			if r.Callback == nil {
				return
			}
			r.Callback.Attempts, r.Callback.State = attempts, state
			r.Callback.LastError = ""
			if err != nil {
				r.Callback.LastError = err.Error()
			}
		}); serr != nil {
			if !errors.Is(serr, ErrNotFound) {
				m.log.Error("callback: store", "job", id, "err", serr)
			}
			return
		}
		if m.opts.Observer != nil {
			m.opts.Observer.Callback(map[string]string{CallbackDelivered: "delivered", CallbackFailed: "failed", CallbackPending: "retry"}[state])
		}
		if state != CallbackPending {
			if state == CallbackFailed {
				m.log.Warn("callback failed", "job", id, "attempts", attempts, "err", err)
			}
			return
		}
		wait := m.opts.CallbackBackoff << (attempts - 1)
		select {
		case <-m.ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (m *Manager) attempt(cl *http.Client, rec Record) error {
	enc := m.opts.Callbacks[rec.Callback.Kind]
	if enc == nil {
		return fmt.Errorf("no callback encoder of kind %q", rec.Callback.Kind)
	}
	cr, err := enc(rec)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	if cr.Method == "" {
		cr.Method = http.MethodPost
	}
	if cr.ContentType == "" {
		cr.ContentType = "application/json"
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.opts.CallbackTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, cr.Method, rec.Callback.URL, bytes.NewReader(cr.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", cr.ContentType)
	req.Header.Set("User-Agent", "sandboxd-callback")
	resp, err := cl.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return ue.Err
		}
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}
