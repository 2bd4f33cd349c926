package sandbox_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
	"github.com/sandboxd/sandboxd/sandbox"
)

type observed struct {
	mu   sync.Mutex
	jobs []sandbox.JobInfo
	res  []*sandbox.Result
	errs []error
}

func (o *observed) JobDone(j sandbox.JobInfo, r *sandbox.Result, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.jobs, o.res, o.errs = append(o.jobs, j), append(o.res, r), append(o.errs, err)
}

// A running job is listed with its limits, an admin's kill ends it as SIGKILL, whether
// it comes before the container runs or while it runs, and the observer hears of it
// once its cleanup is done.
func TestJobsKillObserver(t *testing.T) {
	for _, delay := range []time.Duration{0, time.Second} {
		t.Run(delay.String(), func(t *testing.T) { testKill(t, delay) })
	}
}

func testKill(t *testing.T, delay time.Duration) {
	obs := &observed{}
	e := testenv.Engine(t, sandbox.Options{Observer: obs})
	if err := e.Kill("sbx-nope"); !errors.Is(err, sandbox.ErrJobNotFound) {
		t.Fatalf("Kill(unknown) = %v, want ErrJobNotFound", err)
	}
	done := make(chan *sandbox.Result, 1)
	go func() {
		res, err := e.Run(context.Background(), sandbox.Request{Code: "import time\nprint('up', flush=True)\ntime.sleep(60)", Limits: sandbox.Limits{Timeout: 90 * time.Second}})
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		done <- res
	}()
	var jobs []sandbox.JobInfo
	for deadline := time.Now().Add(10 * time.Second); len(jobs) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the job never showed in Jobs()")
		}
		time.Sleep(20 * time.Millisecond)
		jobs = e.Jobs()
	}
	if jobs[0].Limits.TimeoutMS != 90_000 {
		t.Errorf("listed limits %+v, want the job's 90 s timeout", jobs[0].Limits)
	}
	// Right after it is listed its container may not run yet; the kill must still land.
	time.Sleep(delay)
	if err := e.Kill(jobs[0].ID); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	var res *sandbox.Result
	select {
	case res = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the killed job did not end")
	}
	if res == nil {
		return
	}
	if res.Status != sandbox.StatusSignaled || res.Signal != "SIGKILL" || res.ID != jobs[0].ID {
		t.Errorf("killed job: id %s status %s signal %q, want %s signaled SIGKILL", res.ID, res.Status, res.Signal, jobs[0].ID)
	}
	if n := len(e.Jobs()); n != 0 {
		t.Errorf("%d jobs still listed after the end", n)
	}
	e.Settle() // the observer hears of a job once its teardown is done
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.res) != 1 || obs.res[0] != res || obs.errs[0] != nil || obs.jobs[0].ID != res.ID {
		t.Errorf("observer saw %d jobs (errs %v), want this one, cleaned up", len(obs.res), obs.errs)
	}
}
