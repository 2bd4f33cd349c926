package daemon

import (
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/sandboxd/sandboxd/jobs"
)

// ClusterConfig is the [cluster] table: where async jobs are kept and queued when many
// daemons share them (NATS JetStream). With nats_url empty, the default, each daemon
// keeps its own under state_dir/jobs and nothing else is needed.
type ClusterConfig struct {
	NATSURL string `toml:"nats_url"` // nats://host:4222, or several, comma-separated
	// Node names this daemon in the jobs it runs; "" is the host name. Unique per daemon.
	Node      string   `toml:"node"`
	Stream    string   `toml:"stream"`           // the work-queue stream of submitted jobs
	Bucket    string   `toml:"bucket"`           // the key-value bucket of job records
	CredsFile string   `toml:"credentials_file"` // a NATS .creds file (JWT and nkey); "" = none
	AckWait   Duration `toml:"ack_wait"`         // silence after which another node takes a job over
	Replicas  int      `toml:"replicas"`         // of the stream and bucket, in a NATS cluster
}

func defaultCluster() ClusterConfig {
	return ClusterConfig{Stream: "SANDBOXD_JOBS", Bucket: "sandboxd_jobs", AckWait: Duration(30 * time.Second), Replicas: 1}
}

// Enabled says whether async jobs go to NATS.
func (c *ClusterConfig) Enabled() bool { return c.NATSURL != "" }

// validate names each bad cluster.* setting; the node name defaults to the host's.
func (c *ClusterConfig) validate(bad func(key, format string, args ...any)) {
	if !c.Enabled() {
		return
	}
	for _, u := range strings.Split(c.NATSURL, ",") {
		p, err := url.Parse(strings.TrimSpace(u))
		switch {
		case err != nil:
			bad("cluster.nats_url", "%q: %v", u, err)
		case p.Scheme != "nats" && p.Scheme != "tls" && p.Scheme != "ws" && p.Scheme != "wss":
			bad("cluster.nats_url", "%q: want nats://host:port (or tls://, ws://, wss://)", u)
		case p.Host == "":
			bad("cluster.nats_url", "%q has no host", u)
		case p.User != nil:
			bad("cluster.nats_url", "%q holds credentials: put them in cluster.credentials_file", u)
		}
	}
	if c.Node == "" {
		h, err := os.Hostname()
		if err != nil {
			bad("cluster.node", "not set, and no host name: %v", err)
		}
		c.Node = h
	}
	if !token(c.Node, "-_.") {
		bad("cluster.node", "%q: letters, digits, '-', '_' and '.' only", c.Node)
	}
	if !token(c.Stream, "-_") {
		bad("cluster.stream", "%q: a JetStream stream name of letters, digits, '-' and '_'", c.Stream)
	}
	if !token(c.Bucket, "-_") {
		bad("cluster.bucket", "%q: a JetStream bucket name of letters, digits, '-' and '_'", c.Bucket)
	}
	if c.CredsFile != "" {
		if _, err := os.Stat(c.CredsFile); err != nil {
			bad("cluster.credentials_file", "%v", err)
		}
	}
	if c.AckWait < Duration(time.Second) || c.AckWait > Duration(10*time.Minute) {
		bad("cluster.ack_wait", "must be from 1s to 10m, not %s", c.AckWait)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		bad("cluster.replicas", "must be from 1 to 5, not %d", c.Replicas)
	}
}

func token(s, extra string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(extra, r)) {
			return false
		}
	}
	return true
}

// options are the job manager's, nil when the cluster is off.
func (c *ClusterConfig) options() *jobs.ClusterOptions {
	if !c.Enabled() {
		return nil
	}
	return &jobs.ClusterOptions{URL: c.NATSURL, Node: c.Node, Stream: c.Stream, Bucket: c.Bucket,
		CredsFile: c.CredsFile, AckWait: time.Duration(c.AckWait), Replicas: c.Replicas}
}
