package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/urfave/cli/v2"
)

var drainCommand = &cli.Command{
	Name:  "drain",
	Usage: "stop taking new jobs (they get 503); running and queued ones go on",
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "wait", Usage: "return once no job runs or waits"},
	},
	Action: func(c *cli.Context) error { return setDraining(c, true) },
}

// setDraining drains or resumes the daemon; drain --wait then polls until it is idle.
func setDraining(c *cli.Context, on bool) error {
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	path := "/v1/admin/resume"
	if on {
		path = "/v1/admin/drain"
	}
	var ans struct {
		Running int `json:"running"`
		Queued  int `json:"queued"`
	}
	var raw json.RawMessage
	if err := cl.do(c.Context, http.MethodPost, path, nil, &raw); err != nil {
		return err
	}
	if err := json.Unmarshal(raw, &ans); err != nil {
		return fmt.Errorf("unexpected answer from sandboxd: %w", err)
	}
	if wantJSON(c) { // the daemon's answer; drain --wait then waits without a word
		if err := printJSON(c.App.Writer, raw); err != nil || !on || !c.Bool("wait") {
			return err
		}
		return waitIdle(c, cl, ans.Running+ans.Queued, false)
	}
	if !on {
		fmt.Fprintln(c.App.Writer, "taking new jobs")
		return nil
	}
	fmt.Fprintf(c.App.Writer, "draining: %d running, %d queued\n", ans.Running, ans.Queued)
	if c.Bool("wait") {
		return waitIdle(c, cl, ans.Running+ans.Queued, true)
	}
	return nil
}

// waitIdle polls the daemon until no job runs or waits.
func waitIdle(c *cli.Context, cl *client, busy int, say bool) error {
	for busy > 0 {
		select {
		case <-c.Context.Done():
			return c.Context.Err()
		case <-time.After(200 * time.Millisecond):
		}
		var s struct {
			Jobs struct{ Running, Queued int } `json:"jobs"`
		}
		if err := cl.do(c.Context, http.MethodGet, "/v1/admin/status", nil, &s); err != nil {
			return err
		}
		busy = s.Jobs.Running + s.Jobs.Queued
	}
	if say {
		fmt.Fprintln(c.App.Writer, "idle")
	}
	return nil
}
