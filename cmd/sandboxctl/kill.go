package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/urfave/cli/v2"
)

var killCommand = &cli.Command{
	Name:      "kill",
	Usage:     "kill a running job; its client gets its result, status signaled (SIGKILL)",
	ArgsUsage: "ID",
	Action: func(c *cli.Context) error {
		if c.NArg() != 1 {
			return cli.Exit("kill takes one job ID (see sandboxctl jobs)", exitDaemon)
		}
		cl, err := newClient(c)
		if err != nil {
			return err
		}
		id := c.Args().First()
		var raw json.RawMessage
		if err := cl.do(c.Context, http.MethodPost, "/v1/admin/jobs/"+url.PathEscape(id)+"/kill", nil, &raw); err != nil {
			return err
		}
		if wantJSON(c) {
			return printJSON(c.App.Writer, raw)
		}
		fmt.Fprintln(c.App.Writer, "killed", id)
		return nil
	},
}
