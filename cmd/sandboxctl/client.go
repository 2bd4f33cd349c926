package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// client talks to one daemon.
type client struct {
	http  *http.Client
	base  string // "http://sandboxd" over the socket
	token string
	where string // for error messages
}

func newClient(c *cli.Context) (*client, error) {
	cl := &client{token: common(c, "token").String("token")}
	if f := common(c, "token-file").String("token-file"); f != "" && cl.token == "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		cl.token = strings.TrimSpace(string(b))
	}
	if u := common(c, "url").String("url"); u != "" {
		cl.base, cl.where = strings.TrimRight(u, "/"), u
		cl.http = &http.Client{}
		return cl, nil
	}
	sock := common(c, "socket").String("socket")
	cl.base, cl.where = "http://sandboxd", sock
	cl.http = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	return cl, nil
}

// apiError is the daemon's refusal, with the status it came with.
type apiError struct {
	Status  int
	Message string `json:"error"`
	Field   string `json:"field"`
}

func (e *apiError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status) }

// do sends a request and decodes a 2xx JSON answer into out (a *json.RawMessage keeps
// it as sent). body is JSON-encoded unless it is an io.Reader.
func (cl *client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	ctype := "application/json"
	switch b := body.(type) {
	case nil:
	case io.Reader:
		rd, ctype = b, "application/octet-stream"
	default:
		js, err := json.Marshal(b)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequestWithContext(ctx, method, cl.base+path, rd)
	if err != nil {
		return err
	}
	if rd != nil {
		req.Header.Set("Content-Type", ctype)
	}
	if cl.token != "" {
		req.Header.Set("Authorization", "Bearer "+cl.token)
	}
	resp, err := cl.http.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return fmt.Errorf("cannot reach sandboxd at %s (is it running, and may you use its socket?): %w", cl.where, op.Err)
		}
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		ae := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(data, ae) != nil || ae.Message == "" {
			ae.Message = strings.TrimSpace(string(data))
		}
		return ae
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("unexpected answer from sandboxd: %w", err)
	}
	return nil
}

// get fetches path into out and, with --json, prints the answer as sent instead.
// printed says whether it did, so the caller prints a table otherwise.
func get(c *cli.Context, path string, out any) (printed bool, err error) {
	cl, err := newClient(c)
	if err != nil {
		return false, err
	}
	var raw json.RawMessage
	if err := cl.do(c.Context, http.MethodGet, path, nil, &raw); err != nil {
		return false, err
	}
	if wantJSON(c) {
		return true, printJSON(c.App.Writer, raw)
	}
	return false, json.Unmarshal(raw, out)
}

func printJSON(w io.Writer, raw json.RawMessage) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := buf.WriteTo(w)
	return err
}

var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print the daemon's JSON answer"}

// wantJSON says whether --json was given, before or after the command.
func wantJSON(c *cli.Context) bool { return common(c, "json").Bool("json") }
