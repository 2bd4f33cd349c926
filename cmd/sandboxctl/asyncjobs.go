package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
)

// printAsyncJobs lists the async jobs queued and running, after the jobs command's
// table of the engine's running jobs.
func printAsyncJobs(c *cli.Context, out io.Writer) error {
	var all []asyncJob
	for _, state := range []string{"running", "queued"} {
		var page struct {
			Jobs []asyncJob `json:"jobs"`
		}
		cl, err := newClient(c)
		if err != nil {
			return err
		}
		if err := cl.do(c.Context, "GET", "/v1/jobs?limit=1000&state="+state, nil, &page); err != nil {
			return err
		}
		all = append(all, page.Jobs...)
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "\nASYNC ID\tSTATE\tSUBMITTED")
	for _, j := range all {
		age := j.Submitted
		if t, err := time.Parse(time.RFC3339Nano, j.Submitted); err == nil {
			age = time.Since(t).Round(100*time.Millisecond).String() + " ago"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", j.ID, j.State, age)
	}
	return w.Flush()
}
