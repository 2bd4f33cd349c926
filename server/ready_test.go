package server

import (
	"testing"

	"github.com/sandboxd/sandboxd/sandbox"
)

// loadEngine reports a set load and pool; readiness reads nothing else of the engine.
type loadEngine struct {
	fakeEngine
	running, queued, idle int
}

func (l *loadEngine) Load() (int, int) { return l.running, l.queued }
func (l *loadEngine) PoolIdle() int    { return l.idle }

func TestReadyz(t *testing.T) {
	eng := &loadEngine{fakeEngine: fakeEngine{policy: sandbox.DefaultPolicy()}}
	gate := NewGate(eng, nil)
	s := New(gate, Options{})
	rd := &Readiness{Engine: eng, Gate: gate, MaxJobs: 2, MaxQueue: 1, PoolTarget: 2}
	rd.Register(s)
	want := func(step string, code int, status string) {
		t.Helper()
		got, v := do(t, s, "GET", "/readyz", nil)
		if got != code || v["status"] != status {
			t.Errorf("%s: %d %v, want %d %q", step, got, v, code, status)
		}
		if got, v := do(t, s, "GET", "/healthz", nil); got != 200 || v["status"] != "ok" {
			t.Errorf("%s: healthz %d %v, want 200 ok", step, got, v)
		}
	}
	want("fresh, pool empty", 503, "warming")
	eng.idle = 1
	want("pool half full", 503, "warming")
	eng.idle = 2
	want("pool full once", 200, "ready")
	eng.idle = 0
	want("pool drained by jobs later", 200, "ready")
	eng.running = 2
	want("slots full, queue free", 200, "ready")
	eng.queued = 1
	want("slots and queue full", 503, "busy")
	eng.running, eng.queued = 1, 0
	want("a slot free again", 200, "ready")
	gate.Drain()
	want("draining", 503, "draining")
	gate.Resume()
	want("resumed", 200, "ready")
}
