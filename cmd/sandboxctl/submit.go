package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/sandboxd/sandboxd/api"
)

var submitCommand = &cli.Command{
	Name:      "submit",
	Usage:     "queue a program (- reads standard input) as an async job and print its id",
	ArgsUsage: "FILE|- [EXTRA-FILE...]",
	Description: `Takes run's arguments and flags. The job runs when a slot is free; its result is
kept by the daemon (see sandboxctl get ID --wait). With --retry, a restart of the daemon
that interrupts it runs it again instead of reporting it lost.`,
	Flags: append(slices.Clone(jobFlags),
		&cli.BoolFlag{Name: "retry", Usage: "run it again if a restart of the daemon interrupts it"},
		&cli.StringFlag{Name: "callback-url", Usage: "POST the finished job there"},
		&cli.StringFlag{Name: "idempotency-key", Usage: "a second submit with the same key returns the first job"},
	),
	Action: func(c *cli.Context) error {
		if c.NArg() < 1 {
			return cli.Exit("submit takes a FILE (or - for standard input), then any extra files", exitDaemon)
		}
		er, err := runRequest(c)
		if err != nil {
			return err
		}
		body := api.JobRequest{ExecuteRequest: *er, Retry: c.Bool("retry"), CallbackURL: c.String("callback-url")}
		cl, err := newClient(c)
		if err != nil {
			return err
		}
		js, err := json.Marshal(body)
		if err != nil {
			return err
		}
		req, err := cl.request(c, http.MethodPost, "/v1/jobs", bytes.NewReader(js))
		if err != nil {
			return err
		}
		if k := c.String("idempotency-key"); k != "" {
			req.Header.Set("Idempotency-Key", k)
		}
		raw, err := cl.send(req)
		if err != nil {
			return err
		}
		if wantJSON(c) {
			return printJSON(c.App.Writer, raw)
		}
		var j asyncJob
		if err := json.Unmarshal(raw, &j); err != nil {
			return fmt.Errorf("unexpected answer from sandboxd: %w", err)
		}
		_, err = fmt.Fprintln(c.App.Writer, j.ID)
		return err
	},
}

// asyncJob is what the job commands read of GET /v1/jobs/{id}.
type asyncJob struct {
	ID         string      `json:"id"`
	State      string      `json:"state"`
	Submitted  string      `json:"submitted"`
	Runs       int         `json:"runs"`
	LostReason string      `json:"lost_reason"`
	Result     *api.Result `json:"result"`
	Callback   *struct {
		State     string `json:"state"`
		Attempts  int    `json:"attempts"`
		LastError string `json:"last_error"`
	} `json:"callback"`
}

// request builds a request to the daemon with the client's token.
func (cl *client) request(c *cli.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(c.Context, method, cl.base+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cl.token != "" {
		req.Header.Set("Authorization", "Bearer "+cl.token)
	}
	return req, nil
}

// send sends req and returns a 2xx answer's body, or the daemon's refusal.
func (cl *client) send(req *http.Request) (json.RawMessage, error) {
	resp, err := cl.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach sandboxd at %s: %w", cl.where, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		ae := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(data, ae) != nil || ae.Message == "" {
			ae.Message = strings.TrimSpace(string(data))
		}
		return nil, ae
	}
	return data, nil
}
