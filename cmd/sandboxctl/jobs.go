package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
)

var jobsCommand = &cli.Command{
	Name:  "jobs",
	Usage: "list running jobs with their age and limits, then the async jobs queued and running",
	Flags: []cli.Flag{jsonFlag},
	Action: func(c *cli.Context) error {
		var ans struct {
			Jobs []struct {
				ID      string     `json:"id"`
				Started time.Time  `json:"started"`
				Limits  limitsView `json:"limits"`
				GPUs    []string   `json:"gpus"`
			} `json:"jobs"`
		}
		if printed, err := get(c, "/v1/admin/jobs", &ans); printed || err != nil {
			return err
		}
		w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tAGE\tLIMITS\tGPUS")
		for _, j := range ans.Jobs {
			gpus := strings.Join(j.GPUs, ",")
			if gpus == "" {
				gpus = "-"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", j.ID, time.Since(j.Started).Round(100*time.Millisecond), j.Limits, gpus)
		}
		if err := w.Flush(); err != nil {
			return err
		}
		return printAsyncJobs(c, c.App.Writer)
	},
}
