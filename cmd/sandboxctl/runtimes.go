package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	"github.com/urfave/cli/v2"

	"github.com/sandboxd/sandboxd/api"
)

var runtimesCommand = &cli.Command{
	Name:  "runtimes",
	Usage: "list the languages the daemon runs, with their versions and default limits",
	Flags: []cli.Flag{jsonFlag},
	Action: func(c *cli.Context) error {
		var ans api.Runtimes
		if printed, err := get(c, "/v1/runtimes", &ans); printed || err != nil {
			return err
		}
		w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tVERSION\tALIASES\tCOMPILED\tWARM\tTIMEOUT\tMEMORY\tPIDS")
		for _, r := range ans.Runtimes {
			fmt.Fprintf(w, "%s\t%s\t%s\t%v\t%v\t%s\t%s\t%d\n", r.Name, r.Version, strings.Join(r.Aliases, ","), r.Compiled, r.Warm,
				time.Duration(r.Limits.TimeoutMS)*time.Millisecond, units.BytesSize(float64(r.Limits.Memory)), r.Limits.Pids)
		}
		return w.Flush()
	},
}
