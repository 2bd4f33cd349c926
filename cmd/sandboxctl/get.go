package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/urfave/cli/v2"
)

var getCommand = &cli.Command{
	Name:      "get",
	Usage:     "show an async job; once done, print its output and exit with its exit status (as run does)",
	ArgsUsage: "ID",
	Flags: []cli.Flag{
		&cli.BoolFlag{Name: "wait", Usage: "wait until the job is done (or lost)"},
		jsonFlag,
	},
	Action: func(c *cli.Context) error {
		if c.NArg() != 1 {
			return cli.Exit("get takes one job ID (see sandboxctl submit)", exitDaemon)
		}
		cl, err := newClient(c)
		if err != nil {
			return err
		}
		path := "/v1/jobs/" + url.PathEscape(c.Args().First())
		var raw json.RawMessage
		var j asyncJob
		for {
			wait := ""
			if c.Bool("wait") {
				wait = "?wait=60s" // the daemon's longest; asked again until final
			}
			if err := cl.do(c.Context, http.MethodGet, path+wait, nil, &raw); err != nil {
				return err
			}
			if err := json.Unmarshal(raw, &j); err != nil {
				return fmt.Errorf("unexpected answer from sandboxd: %w", err)
			}
			if !c.Bool("wait") || j.State == "done" || j.State == "lost" {
				break
			}
		}
		if wantJSON(c) {
			if err := printJSON(c.App.Writer, raw); err != nil {
				return err
			}
		}
		switch j.State {
		case "done":
			if j.Result == nil {
				return cli.Exit("job "+j.ID+" is done but has no result", exitDaemon)
			}
			if !wantJSON(c) {
				printResult(c, j.Result)
			}
			return exitOf(j.Result)
		case "lost":
			return cli.Exit(fmt.Sprintf("job %s: lost: %s", j.ID, j.LostReason), exitDaemon)
		}
		if !wantJSON(c) {
			fmt.Fprintf(c.App.Writer, "%s %s\n", j.ID, j.State)
		}
		return nil
	},
}
