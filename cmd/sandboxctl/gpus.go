package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/docker/go-units"
	"github.com/urfave/cli/v2"
)

var gpusCommand = &cli.Command{
	Name:  "gpus",
	Usage: "list the GPUs jobs may lease, and which job holds each",
	Flags: []cli.Flag{jsonFlag},
	Action: func(c *cli.Context) error {
		var ans struct {
			GPUs []struct {
				UUID        string  `json:"uuid"`
				Index       int     `json:"index"`
				Name        string  `json:"name"`
				MemoryBytes uint64  `json:"memory_bytes"`
				Parent      string  `json:"parent"`
				LeasedBy    string  `json:"leased_by"`
				Utilization *uint32 `json:"utilization_pct"`
			} `json:"gpus"`
		}
		if printed, err := get(c, "/v1/gpus", &ans); printed || err != nil {
			return err
		}
		if len(ans.GPUs) == 0 {
			fmt.Fprintln(c.App.Writer, "no GPUs")
			return nil
		}
		w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "INDEX\tUUID\tNAME\tMEMORY\tUTIL\tJOB")
		for _, g := range ans.GPUs {
			util, job := "-", g.LeasedBy
			if g.Utilization != nil {
				util = fmt.Sprintf("%d%%", *g.Utilization)
			}
			if job == "" {
				job = "free"
			}
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", g.Index, g.UUID, g.Name, units.BytesSize(float64(g.MemoryBytes)), util, job)
		}
		return w.Flush()
	},
}
