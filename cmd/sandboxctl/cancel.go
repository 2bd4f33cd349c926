package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/urfave/cli/v2"
)

var cancelCommand = &cli.Command{
	Name:      "cancel",
	Usage:     "cancel an async job: a queued one never runs, a running one is killed (status cancelled)",
	ArgsUsage: "ID",
	Action: func(c *cli.Context) error {
		if c.NArg() != 1 {
			return cli.Exit("cancel takes one job ID", exitDaemon)
		}
		cl, err := newClient(c)
		if err != nil {
			return err
		}
		var raw json.RawMessage
		if err := cl.do(c.Context, http.MethodDelete, "/v1/jobs/"+url.PathEscape(c.Args().First()), nil, &raw); err != nil {
			return err
		}
		var j asyncJob
		if err := json.Unmarshal(raw, &j); err != nil {
			return fmt.Errorf("unexpected answer from sandboxd: %w", err)
		}
		status := j.State
		if j.Result != nil {
			status = j.Result.Status
		}
		_, err = fmt.Fprintln(c.App.Writer, "cancelled", j.ID, status)
		return err
	},
}
