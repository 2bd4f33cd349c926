package jobs

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/sandbox"
)

// natsServer starts Debian's nats-server with JetStream in a temp dir (installing it
// with scripts/deps.sh when root) and returns its URL.
func natsServer(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if os.Geteuid() != 0 {
			t.Skip("nats-server is not installed and installing it needs root (scripts/deps.sh nats-server)")
		}
		if out, err := exec.Command("../scripts/deps.sh", "nats-server").CombinedOutput(); err != nil {
			t.Fatalf("scripts/deps.sh nats-server: %v\n%s", err, out)
		}
		if bin, err = exec.LookPath("nats-server"); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listen: %q\njetstream {\n  store_dir: %q\n}\n", addr, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return "nats://" + addr
		}
		if time.Now().After(deadline) {
			t.Fatal("nats-server did not listen")
		}
	}
}

// openNode opens a backend as one daemon of a cluster would.
func openNode(t *testing.T, url, node string, maxQueue int) *jsBackend {
	t.Helper()
	o := &Options{MaxQueue: maxQueue}
	o.setDefaults()
	b, err := openJetStream(ClusterOptions{URL: url, Node: node, AckWait: time.Second}, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.close() })
	return b
}

func submitTo(t *testing.T, b *jsBackend, id string, retry bool) {
	t.Helper()
	rec := Record{ID: id, State: StateQueued, Submitted: time.Now().UTC(), Retry: retry}
	if existing, err := b.create(&rec, sandbox.Request{ID: id, Code: "print(1)"}); err != nil || existing != nil {
		t.Fatalf("create %s: %v %v", id, existing, err)
	}
}

func done(stdout string) (func(*Record), *storedResult) {
	sr := storeResult(&sandbox.Result{Status: sandbox.StatusOK, Outcome: sandbox.Outcome{Stdout: stdout}})
	return func(r *Record) { r.State, r.Finished = StateDone, time.Now().UTC() }, &sr
}

// A node that goes silent past ack_wait (but is not dead) has its job taken over; of
// its run and the new one, only the first to store a final record counts: with retry
// the job is re-run, without it it is stored lost, and the silent node's late result
// is refused either way.
func TestJetStreamOneFinalResult(t *testing.T) {
	url := natsServer(t)
	a, b := openNode(t, url, "a", 8), openNode(t, url, "b", 8)
	a.ackWait = time.Hour // a renews nothing: silent, to the queue
	for _, retry := range []bool{true, false} {
		t.Run(fmt.Sprintf("retry=%t", retry), func(t *testing.T) {
			id := fmt.Sprintf("sbx-one-%t", retry)
			submitTo(t, a, id, retry)
			ta, ok := a.next()
			if !ok || ta.id != id || ta.rec.Runs != 1 || ta.rec.Node != "a" || ta.req.Code != "print(1)" {
				t.Fatalf("a's task: %+v %v", ta, ok)
			}
			tb, ok := b.next() // redelivered once a's ack_wait passes
			if !ok || tb.id != id {
				t.Fatalf("b's task: %+v %v", tb, ok)
			}
			var want State
			if retry {
				want = StateDone
				if tb.lost != "" || tb.rec.Runs != 2 || tb.rec.Node != "b" {
					t.Fatalf("b should re-run the retry job: %+v", tb)
				}
				f, res := done("b\n")
				if _, _, err := b.finish(tb, id, f, res); err != nil {
					t.Fatal(err)
				}
			} else {
				want = StateLost
				if tb.lost == "" {
					t.Fatalf("b should report the job lost: %+v", tb)
				}
				if _, _, err := b.finish(tb, id, func(r *Record) { r.State, r.LostReason = StateLost, tb.lost }, nil); err != nil {
					t.Fatal(err)
				}
			}
			tb.end(true)
			f, res := done("a\n")
			if _, _, err := a.finish(ta, id, f, res); !errors.Is(err, errSuperseded) {
				t.Fatalf("a's late result: %v, want errSuperseded", err)
			}
			ta.end(true)
			got, err := a.get(id)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != want || (retry && (got.Result == nil || got.Result.Stdout != "b\n" || got.Runs != 2)) || (!retry && got.Result != nil) {
				t.Fatalf("stored: %+v result %+v", got, got.Result)
			}
		})
	}
}

// The stream bounds the jobs waiting or running across nodes; a refused job leaves no
// record. A queued job cancelled from any node is final at once; once a node claimed
// it, the cancel is refused as errNotQueued (and goes to the running node instead).
func TestJetStreamBoundAndCancel(t *testing.T) {
	url := natsServer(t)
	a, b := openNode(t, url, "a", 2), openNode(t, url, "b", 2)
	submitTo(t, a, "sbx-q1", false)
	submitTo(t, b, "sbx-q2", false)
	rec := Record{ID: "sbx-q3", State: StateQueued, Submitted: time.Now()}
	if _, err := a.create(&rec, sandbox.Request{ID: "sbx-q3"}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third job: %v, want ErrQueueFull", err)
	}
	if _, err := b.get("sbx-q3"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused job has a record: %v", err)
	}
	f, res := done("")
	if _, _, err := b.finish(nil, "sbx-q2", f, res); err != nil {
		t.Fatalf("cancel the queued sbx-q2: %v", err)
	}
	t1, ok := a.next()
	if !ok || t1.id != "sbx-q1" {
		t.Fatalf("a's task: %+v", t1)
	}
	if _, _, err := b.finish(nil, "sbx-q1", f, res); !errors.Is(err, errNotQueued) {
		t.Fatalf("cancel of a running job as queued: %v, want errNotQueued", err)
	}
	if err := b.stopRemote("sbx-q1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-t1.stop:
	case <-time.After(5 * time.Second):
		t.Fatal("the running node did not hear the cancel")
	}
	t1.end(false) // not stored: queued again for another node
	t2, ok := b.next()
	if !ok || t2.id != "sbx-q1" || t2.lost != "" || t2.rec.Runs != 1 {
		t.Fatalf("the job given back should run again, as its first run: %+v", t2)
	}
	t2.end(true)
	if _, err := a.create(&Record{ID: "sbx-q4", State: StateQueued, Submitted: time.Now()}, sandbox.Request{ID: "sbx-q4"}); err != nil {
		t.Fatalf("room again once the jobs are settled: %v", err)
	}
}
