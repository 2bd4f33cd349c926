// Command bench measures sandboxd against the floor it is built on: it starts the real
// daemon, sends hello-world jobs through its HTTP API, and runs the same program as bare
// python3 in a chroot of the same root filesystem, all in one run, and prints a table.
//
//	go build -o bin/sbxbench ./bench && bin/sbxbench -n 200   (make bench does this)
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

var (
	bin      = flag.String("sandboxd", "bin/sandboxd", "the daemon binary")
	tarball  = flag.String("rootfs", "build/rootfs.tar.zst", "rootfs tarball")
	stateDir = flag.String("state-dir", "/var/tmp/sandboxd-bench", "daemon state dir (keeps the unpacked rootfs between runs)")
	n        = flag.Int("n", 200, "jobs per sequential series")
	burst    = flag.Int("burst", 200, "jobs per throughput series")
)

const hello = `print("hello")`

func run() error {
	flag.Parse()
	port, err := freePort()
	if err != nil {
		return err
	}
	runDir, err := os.MkdirTemp("", "sbxbench-run-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(runDir)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	daemon := exec.Command(*bin, "--rootfs", *tarball, "--state-dir", *stateDir, "--run-dir", runDir,
		"--listen", addr, "--max-jobs", "4", "--max-queue", "64")
	var logs bytes.Buffer
	daemon.Stdout, daemon.Stderr = &logs, &logs
	if err := daemon.Start(); err != nil {
		return err
	}
	defer func() {
		_ = daemon.Process.Signal(syscall.SIGTERM)
		_ = daemon.Wait()
	}()
	url := "http://" + addr
	if err := waitHealthy(url, 60*time.Second); err != nil {
		return fmt.Errorf("%w\n%s", err, logs.String())
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: 30 * time.Second}

	rootfs, err := unpackedRootfs(*stateDir, *tarball)
	if err != nil {
		return err
	}
	job := func() error { return execute(client, url) }
	bare := func() error {
		cmd := exec.Command("/usr/bin/python3", "-c", hello)
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: rootfs}
		cmd.Dir = "/"
		out, err := cmd.Output()
		if err == nil && string(out) != "hello\n" {
			err = fmt.Errorf("bare python printed %q", out)
		}
		return err
	}
	for range 10 { // warm caches on both sides
		if err := job(); err != nil {
			return err
		}
		if err := bare(); err != nil {
			return err
		}
	}
	rows := []struct {
		name string
		f    func() error
	}{
		{"bare python3 -c in chroot", bare},
		{"sandboxd /v1/execute (HTTP)", job},
	}
	fmt.Printf("hello-world, %d sequential jobs each, then %d jobs by 2 and 4 clients; %d CPUs\n\n", *n, *burst, numCPU())
	fmt.Printf("%-30s %9s %9s %11s %11s\n", "", "p50 ms", "p95 ms", "jobs/s (2)", "jobs/s (4)")
	var base float64
	for i, r := range rows {
		lat, err := series(r.f, *n)
		if err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		t2, err := throughput(r.f, 2, *burst)
		if err != nil {
			return err
		}
		t4, err := throughput(r.f, 4, *burst)
		if err != nil {
			return err
		}
		p50, p95 := pct(lat, 50), pct(lat, 95)
		if i == 0 {
			base = p50
		}
		fmt.Printf("%-30s %9.1f %9.1f %11.0f %11.0f   p50 = %.2fx bare\n", r.name, p50, p95, t2, t4, p50/base)
	}
	return nil
}

func execute(c *http.Client, url string) error {
	resp, err := c.Post(url+"/v1/execute", "application/json", bytes.NewReader([]byte(`{"code": "print(\"hello\")"}`)))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var r struct{ Status, Stdout string }
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return err
	}
	if resp.StatusCode != 200 || r.Status != "ok" || r.Stdout != "hello\n" {
		return fmt.Errorf("HTTP %d status %q stdout %q", resp.StatusCode, r.Status, r.Stdout)
	}
	return nil
}

func series(f func() error, n int) ([]float64, error) {
	lat := make([]float64, 0, n)
	for range n {
		t := time.Now()
		if err := f(); err != nil {
			return nil, err
		}
		lat = append(lat, float64(time.Since(t).Microseconds())/1000)
	}
	return lat, nil
}

func throughput(f func() error, clients, total int) (float64, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	next := make(chan struct{}, total)
	for range total {
		next <- struct{}{}
	}
	close(next)
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				if err := f(); err != nil {
					mu.Lock()
					firstErr = errors.Join(firstErr, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(total) / time.Since(start).Seconds(), firstErr
}

func pct(v []float64, p int) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

func waitHealthy(url string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for ctx.Err() == nil {
		if resp, err := http.Get(url + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("daemon did not become healthy")
}

// unpackedRootfs is where the daemon unpacked the tarball (its content address).
func unpackedRootfs(state, tarball string) (string, error) {
	f, err := os.Open(tarball)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	abs, err := filepath.Abs(state)
	if err != nil {
		return "", err
	}
	return filepath.Join(abs, "rootfs", hex.EncodeToString(h.Sum(nil)), "rootfs"), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func numCPU() int { return runtime.NumCPU() }
