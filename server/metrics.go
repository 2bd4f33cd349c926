package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sandboxd/sandboxd/gpu"
	"github.com/sandboxd/sandboxd/sandbox"
)

// Gauges reads the figures that are a state rather than a count of events.
type Gauges struct {
	Load   func() (running, queued int) // required
	GPUs   func() []gpu.Status          // nil: no GPUs
	Pool   func() int                   // warm containers ready now; nil reports 0
	Async  func() (queued, running int) // async jobs now; nil reports 0
	Digest string                       // the rootfs jobs run on, as a label of sandboxd_info
	Ver    string
}

// Metrics is the daemon's Prometheus registry: it observes jobs (a sandbox.Observer),
// counts refused requests (Wrap) and serves /metrics (Handler). Its own registry, so
// nothing registered globally by a library leaks in.
type Metrics struct {
	reg       *prometheus.Registry
	jobs      *prometheus.CounterVec
	duration  prometheus.Histogram
	queueWait prometheus.Histogram
	rejected  *prometheus.CounterVec
	cleanup   prometheus.Counter
	async     *prometheus.CounterVec // async jobs' transitions (jobs.Observer)
	callbacks *prometheus.CounterVec // callback delivery attempts, by outcome
	cbFailed  prometheus.Counter
}

// jobBuckets cover 10 ms to about 10 min: jobs range from a print to the longest timeout.
var jobBuckets = prometheus.ExponentialBuckets(0.01, 2.5, 13)

// NewMetrics registers sandboxd's metrics and the Go runtime's and process's.
func NewMetrics(g Gauges) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandboxd_jobs_total", Help: "Jobs that ran, by how they ended.",
		}, []string{"status"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sandboxd_job_duration_seconds", Help: "Wall-clock time of jobs' code, start to exit.", Buckets: jobBuckets,
		}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sandboxd_job_queue_wait_seconds", Help: "Time jobs waited for a job slot.", Buckets: jobBuckets,
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandboxd_requests_rejected_total", Help: "Requests refused, by reason.",
		}, []string{"reason"}),
		cleanup: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sandboxd_cgroup_cleanup_failures_total", Help: "Jobs whose cgroup, mounts or state could not all be removed.",
		}),
		async: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandboxd_async_jobs_total", Help: "Async jobs, by event: submitted, done, cancelled, lost, retried.",
		}, []string{"event"}),
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sandboxd_callback_attempts_total", Help: "Callback delivery attempts, by outcome: delivered, retry (failed, tried again), failed (the last attempt failed).",
		}, []string{"outcome"}),
		cbFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sandboxd_callback_failures_total", Help: "Callbacks given up after every attempt failed.",
		}),
	}
	for _, e := range []string{"submitted", "done", "cancelled", "lost", "retried"} {
		m.async.WithLabelValues(e)
	}
	for _, o := range []string{"delivered", "retry", "failed"} {
		m.callbacks.WithLabelValues(o)
	}
	// Every status is there from the start, so rates work before the first of each.
	for _, s := range []sandbox.Status{sandbox.StatusOK, sandbox.StatusError, sandbox.StatusSignaled,
		sandbox.StatusTimeout, sandbox.StatusCPULimit, sandbox.StatusMemoryLimit, sandbox.StatusInternalError} {
		m.jobs.WithLabelValues(string(s))
	}
	for _, r := range rejectReasons {
		m.rejected.WithLabelValues(r)
	}
	running := func() float64 { r, _ := g.Load(); return float64(r) }
	queued := func() float64 { _, q := g.Load(); return float64(q) }
	reg.MustRegister(m.jobs, m.duration, m.queueWait, m.rejected, m.cleanup, m.async, m.callbacks, m.cbFailed,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sandboxd_jobs_running", Help: "Jobs running now."}, running),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sandboxd_jobs_queued", Help: "Requests waiting for a job slot."}, queued),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sandboxd_async_jobs_queued", Help: "Async jobs waiting for a slot."}, func() float64 {
			if g.Async == nil {
				return 0
			}
			q, _ := g.Async()
			return float64(q)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sandboxd_async_jobs_running", Help: "Async jobs running now."}, func() float64 {
			if g.Async == nil {
				return 0
			}
			_, r := g.Async()
			return float64(r)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sandboxd_pool_size", Help: "Warm containers ready for jobs now."}, func() float64 {
			if g.Pool == nil {
				return 0
			}
			return float64(g.Pool())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sandboxd_gpus", Help: "Leasable GPUs and MIG instances."}, func() float64 {
			if g.GPUs == nil {
				return 0
			}
			return float64(len(g.GPUs()))
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sandboxd_gpu_leases", Help: "GPUs and MIG instances leased to jobs now."}, func() float64 {
			if g.GPUs == nil {
				return 0
			}
			n := 0
			for _, s := range g.GPUs() {
				if s.LeasedBy != "" {
					n++
				}
			}
			return float64(n)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sandboxd_info", Help: "Always 1; its labels say what runs.",
			ConstLabels: prometheus.Labels{"version": g.Ver, "rootfs": g.Digest},
		}, func() float64 { return 1 }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// JobDone implements sandbox.Observer.
func (m *Metrics) JobDone(job sandbox.JobInfo, res *sandbox.Result, cleanupErr error) {
	m.jobs.WithLabelValues(string(res.Status)).Inc()
	m.duration.Observe(res.Wall.Seconds())
	m.queueWait.Observe(job.QueueWait.Seconds())
	if cleanupErr != nil {
		m.cleanup.Inc()
	}
}

// AsyncJob implements jobs.Observer.
func (m *Metrics) AsyncJob(event string) { m.async.WithLabelValues(event).Inc() }

// Callback implements jobs.Observer.
func (m *Metrics) Callback(outcome string) {
	m.callbacks.WithLabelValues(outcome).Inc()
	if outcome == "failed" {
		m.cbFailed.Inc()
	}
}

// Handler serves the registry in Prometheus' text (or OpenMetrics) format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is the registry itself, for tests and for adding collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// The reasons a request is refused, from the status the API answered with.
var rejectReasons = []string{"invalid", "unauthorized", "forbidden", "too_large", "gpus_busy", "busy", "unavailable"}

func rejectReason(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusConflict:
		return "gpus_busy"
	case http.StatusTooManyRequests:
		return "busy"
	case http.StatusServiceUnavailable:
		return "unavailable"
	}
	return ""
}

// Wrap counts the requests next refuses, by reason.
func (m *Metrics) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if reason := rejectReason(sw.status); reason != "" {
			m.rejected.WithLabelValues(reason).Inc()
		}
	})
}

// statusWriter remembers the status; Unwrap keeps http.ResponseController working.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
