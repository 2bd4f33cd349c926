package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	"github.com/urfave/cli/v2"
)

var rootfsCommand = &cli.Command{
	Name:  "rootfs",
	Usage: "manage the daemon's root filesystems",
	Subcommands: []*cli.Command{
		{
			Name:      "import",
			Usage:     "upload a tarball (tar, tar.gz, tar.zst) into the daemon's store",
			ArgsUsage: "FILE|-",
			Description: `Jobs keep running on the image the daemon started with. To switch, set
rootfs = "sha256:…" (the digest printed) in the config file and restart the daemon.`,
			Flags:  []cli.Flag{jsonFlag},
			Action: rootfsImport,
		},
		{
			Name:   "ls",
			Usage:  "list the images in the store; * marks the one jobs run on",
			Flags:  []cli.Flag{jsonFlag},
			Action: rootfsList,
		},
	},
}

type image struct {
	Digest  string    `json:"digest"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
	InUse   bool      `json:"in_use"`
}

func rootfsImport(c *cli.Context) error {
	if c.NArg() != 1 {
		return cli.Exit("rootfs import takes one FILE (or - for standard input)", exitDaemon)
	}
	var f io.Reader = c.App.Reader
	if name := c.Args().First(); name != "-" {
		file, err := os.Open(name)
		if err != nil {
			return err
		}
		defer file.Close()
		f = file
	}
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := cl.do(c.Context, http.MethodPost, "/v1/admin/rootfs", f, &raw); err != nil {
		return err
	}
	if wantJSON(c) {
		return printJSON(c.App.Writer, raw)
	}
	var img image
	if err := json.Unmarshal(raw, &img); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "imported %s (%s)\n", img.Digest, units.BytesSize(float64(img.Size)))
	return nil
}

func rootfsList(c *cli.Context) error {
	var ans struct {
		Images []image `json:"images"`
	}
	if printed, err := get(c, "/v1/admin/rootfs", &ans); printed || err != nil {
		return err
	}
	w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "\tDIGEST\tSIZE\tCREATED")
	for _, img := range ans.Images {
		mark := ""
		if img.InUse {
			mark = "*"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", mark, img.Digest, units.BytesSize(float64(img.Size)), img.Created.Local().Format(time.DateTime))
	}
	return w.Flush()
}
