package main

import "github.com/urfave/cli/v2"

var resumeCommand = &cli.Command{
	Name:   "resume",
	Usage:  "take new jobs again after drain",
	Action: func(c *cli.Context) error { return setDraining(c, false) },
}
