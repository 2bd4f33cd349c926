package main

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	clusterOnly = flag.Bool("cluster-only", false, "run only the shared-queue (NATS JetStream) rows")
	clusterN    = flag.Int("cluster-n", 100, "async jobs per sequential series of the shared-queue rows")
)

// clusterTable times async jobs behind the shared queue beside single-host async: one
// daemon with its embedded store, then one and three daemons on one nats-server with
// JetStream, all on this host. A job is POST /v1/jobs to a node (round robin), then
// GET ?wait on that node until done, so a row's latency is submit-to-done. The three
// daemons share this host's CPUs: their row shows the queue's cost, not a speed-up.
func clusterTable() error {
	natsBin, err := exec.LookPath("nats-server")
	if err != nil {
		return fmt.Errorf("nats-server is not installed (scripts/deps.sh nats-server; make bench does it): %w", err)
	}
	dir, err := os.MkdirTemp("", "sbxbench-nats-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	port, err := freePort()
	if err != nil {
		return err
	}
	natsAddr := fmt.Sprintf("127.0.0.1:%d", port)
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listen: %q\nmax_payload: 8MB\njetstream {\n  store_dir: %q\n}\n", natsAddr, dir)), 0o600); err != nil {
		return err
	}
	nats := exec.Command(natsBin, "-c", conf)
	nats.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := nats.Start(); err != nil {
		return err
	}
	defer func() { _ = nats.Process.Signal(syscall.SIGTERM); _ = nats.Wait() }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", natsAddr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats-server did not listen on %s", natsAddr)
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 60 * time.Second}
	type setup struct {
		name   string
		nodes  int
		stream string // "" = the embedded store
	}
	setups := []setup{{"single host, embedded store", 1, ""}, {"1 daemon, shared queue", 1, "BENCH1"}, {"3 daemons, shared queue", 3, "BENCH3"}}
	fmt.Printf("\nasync jobs: hello-world, POST /v1/jobs then GET ?wait until done; %d sequential, then %d by 4 and by 8 clients;\n"+
		"nats-server %s with JetStream on loopback; every daemon max_jobs 4, pool 2, on this host's %d CPUs\n"+
		"(three daemons share them: the row shows the queue's overhead, not a speed-up)\n\n",
		*clusterN, *burst, natsVersion(natsBin), runtime.NumCPU())
	fmt.Printf("%-30s %8s %8s %10s %10s\n", "", "p50 ms", "p95 ms", "jobs/s 4", "jobs/s 8")
	var single float64
	for _, s := range setups {
		var ds []*daemon
		stop := func() {
			for _, d := range ds {
				d.stop()
			}
		}
		for i := range s.nodes {
			d, err := startClusterDaemon(fmt.Sprintf("node%d", i+1), natsAddr, s.stream)
			if err != nil {
				stop()
				return fmt.Errorf("%s: %w", s.name, err)
			}
			ds = append(ds, d)
		}
		time.Sleep(2 * time.Second) // pools filled
		var next atomic.Int64
		job := func() error { return asyncJob(client, ds[int(next.Add(1))%len(ds)].url) }
		for range 20 {
			if err := job(); err != nil {
				stop()
				return fmt.Errorf("%s: %w", s.name, err)
			}
		}
		lat, err := series(job, *clusterN)
		var t4, t8 float64
		if err == nil {
			t4, err = throughput(job, 4, *burst)
		}
		if err == nil {
			t8, err = throughput(job, 8, *burst)
		}
		stop()
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		p50 := pct(lat, 50)
		if s.stream == "" {
			single = p50
		}
		fmt.Printf("%-30s %8.1f %8.1f %10.0f %10.0f\n", s.name, p50, pct(lat, 95), t4, t8)
		if s.stream != "" && s.nodes == 1 {
			defer fmt.Printf("the shared queue's added latency (p50, 1 daemon vs the embedded store): %.1f ms\n", p50-single)
		}
	}
	return nil
}

func natsVersion(bin string) string {
	out, _ := exec.Command(bin, "--version").Output()
	return string(bytes.TrimSpace(bytes.TrimPrefix(out, []byte("nats-server: "))))
}

// startClusterDaemon runs a daemon whose async jobs go to stream on natsAddr (its own
// embedded store when stream is "").
func startClusterDaemon(name, natsAddr, stream string) (*daemon, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	d := &daemon{url: fmt.Sprintf("http://127.0.0.1:%d", port)}
	if d.runDir, err = os.MkdirTemp("", "sbxbench-run-"); err != nil {
		return nil, err
	}
	conf := "session_pool = 0\n"
	if stream != "" {
		conf += fmt.Sprintf("[cluster]\nnats_url = \"nats://%s\"\nnode = %q\nstream = %q\nbucket = %q\n", natsAddr, name, stream, stream)
	}
	cfg := filepath.Join(d.runDir, "config.toml")
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	d.cmd = exec.Command(*bin, "--rootfs", *tarball, "--images-dir", "", "--state-dir", filepath.Join(*stateDir, "cluster-"+name),
		"--run-dir", d.runDir, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--max-jobs", "4", "--max-queue", "64",
		"--pool-size", strconv.Itoa(2), "--cgroup-name", fmt.Sprintf("sandboxd-bench-%d", port), "--config", cfg)
	d.cmd.Stdout, d.cmd.Stderr = &d.logs, &d.logs
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	if err := waitHealthy(d.url, 60*time.Second); err != nil {
		d.stop()
		return nil, fmt.Errorf("%w\n%s", err, d.logs.String())
	}
	return d, nil
}
