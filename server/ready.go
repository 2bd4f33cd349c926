package server

import (
	"fmt"
	"net/http"
	"sync/atomic"
)

// SessionHeader names, on the answer that creates a session (/v1/sessions, a Jupyter
// kernel, an E2B sandbox), the id later calls carry: a balancer in front of many nodes
// (deploy/haproxy.cfg) records which node answered and sends those calls there.
const SessionHeader = "Sandboxd-Session"

// ReadyView is GET /readyz's answer. Status is "ready" (200), or why the node takes no
// work now (503): "draining", "busy" (every slot and queue place taken), "warming" (the
// warm pool has not filled once since start). The shared queue (NATS) is not checked on
// purpose: while it is away sync jobs go on, and it is away for every node alike.
type ReadyView struct {
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
	Running  int    `json:"running"`
	Queued   int    `json:"queued"`
	MaxJobs  int    `json:"max_jobs"`
	MaxQueue int    `json:"max_queue"`
	PoolIdle int    `json:"pool_idle"`
}

// Readiness answers /readyz for a balancer or an orchestrator: 200 only while this node
// takes work. /healthz stays "alive": a draining or busy node is healthy, only not ready.
// The images are unpacked before the daemon serves at all, so they need no check here.
type Readiness struct {
	Engine   AdminEngine
	Gate     *Gate
	MaxJobs  int
	MaxQueue int
	// PoolTarget is how many warm containers the pools hold when full; the node is not
	// ready until they have been full once, so a fresh node does not take a burst cold.
	// Later dips (the pool drains under load) do not take it out of rotation.
	PoolTarget int
	warmed     atomic.Bool
}

// Register adds GET /readyz to s. Like /healthz it needs no token.
func (rd *Readiness) Register(s *Server) { s.mux.HandleFunc("GET /readyz", rd.serve) }

func (rd *Readiness) serve(w http.ResponseWriter, _ *http.Request) {
	v := rd.check()
	code := http.StatusOK
	if v.Status != "ready" {
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, code, v)
}

func (rd *Readiness) check() ReadyView {
	v := ReadyView{MaxJobs: rd.MaxJobs, MaxQueue: rd.MaxQueue, PoolIdle: rd.Engine.PoolIdle()}
	v.Running, v.Queued = rd.Engine.Load()
	if !rd.warmed.Load() && v.PoolIdle >= rd.PoolTarget {
		rd.warmed.Store(true)
	}
	switch {
	case rd.Gate != nil && rd.Gate.Draining():
		v.Status, v.Reason = "draining", "the daemon is draining: new jobs get 503"
	case v.Running >= rd.MaxJobs && v.Queued >= rd.MaxQueue:
		v.Status, v.Reason = "busy", fmt.Sprintf("every slot (%d) and queue place (%d) is taken", rd.MaxJobs, rd.MaxQueue)
	case !rd.warmed.Load():
		v.Status, v.Reason = "warming", fmt.Sprintf("warm pool %d of %d ready", v.PoolIdle, rd.PoolTarget)
	default:
		v.Status = "ready"
	}
	return v
}
