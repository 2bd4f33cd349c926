package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	"github.com/urfave/cli/v2"
)

var statusCommand = &cli.Command{
	Name:  "status",
	Usage: "show the daemon's version, uptime, cgroup mode, rootfs, capacity, jobs and GPUs",
	Flags: []cli.Flag{jsonFlag},
	Action: func(c *cli.Context) error {
		var s struct {
			Version       string  `json:"version"`
			UptimeSeconds float64 `json:"uptime_seconds"`
			CgroupMode    string  `json:"cgroup_mode"`
			Rootfs        string  `json:"rootfs"`
			State         string  `json:"state"`
			Draining      bool    `json:"draining"` // a daemon older than state
			Capacity      struct {
				MaxJobs  int `json:"max_jobs"`
				MaxQueue int `json:"max_queue"`
				PoolIdle int `json:"pool_idle"`
			} `json:"capacity"`
			Jobs struct {
				Running int `json:"running"`
				Queued  int `json:"queued"`
			} `json:"jobs"`
			GPUs struct {
				Total  int `json:"total"`
				Leased int `json:"leased"`
			} `json:"gpus"`
			Limits struct{ Default, Max limitsView } `json:"limits"`
		}
		if printed, err := get(c, "/v1/admin/status", &s); printed || err != nil {
			return err
		}
		state := s.State
		if state == "" && s.Draining {
			state = "draining"
		} else if state == "" {
			state = "serving"
		}
		if state == "draining" {
			state += " (new jobs get 503)"
		}
		w := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
		fmt.Fprintf(w, "version:\t%s\n", s.Version)
		fmt.Fprintf(w, "state:\t%s\n", state)
		fmt.Fprintf(w, "uptime:\t%s\n", time.Duration(s.UptimeSeconds)*time.Second)
		fmt.Fprintf(w, "cgroup:\t%s\n", s.CgroupMode)
		fmt.Fprintf(w, "rootfs:\t%s\n", s.Rootfs)
		fmt.Fprintf(w, "jobs:\t%d running (of %d), %d queued (of %d)\n", s.Jobs.Running, s.Capacity.MaxJobs, s.Jobs.Queued, s.Capacity.MaxQueue)
		fmt.Fprintf(w, "warm pool:\t%d ready\n", s.Capacity.PoolIdle)
		fmt.Fprintf(w, "gpus:\t%d leased of %d\n", s.GPUs.Leased, s.GPUs.Total)
		fmt.Fprintf(w, "default limits:\t%s\n", s.Limits.Default)
		fmt.Fprintf(w, "max limits:\t%s\n", s.Limits.Max)
		return w.Flush()
	},
}

// limitsView is what the tables show of a job's limits.
type limitsView struct {
	CPUs      float64 `json:"cpus"`
	Memory    int64   `json:"memory_bytes"`
	Storage   int64   `json:"storage_bytes"`
	Pids      int64   `json:"pids"`
	TimeoutMS int64   `json:"timeout_ms"`
	CPUTimeMS int64   `json:"cpu_time_ms"`
}

func (l limitsView) String() string {
	return fmt.Sprintf("cpus=%g memory=%s storage=%s pids=%d timeout=%s cpu_time=%s", l.CPUs,
		units.BytesSize(float64(l.Memory)), units.BytesSize(float64(l.Storage)), l.Pids,
		time.Duration(l.TimeoutMS)*time.Millisecond, time.Duration(l.CPUTimeMS)*time.Millisecond)
}
