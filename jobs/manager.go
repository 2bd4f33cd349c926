// Package jobs runs sandbox jobs asynchronously: a job is stored as queued before
// Submit returns, runs when the engine has a slot, and its result is kept in an
// embedded, crash-safe store (bbolt) under the state directory for a configurable time
// and count. After a restart every job the previous run accepted but did not finish is
// reported lost, or run again if it was submitted with Retry. A finished job's result
// can be POSTed to a callback URL. The HTTP fronts (/v1/jobs, and the Judge0 and Piston
// fronts) sit on its Go API; only they map its errors to statuses.
//
// With Options.Cluster set, the store and the queue are NATS JetStream's instead
// (jetstream.go), shared by every daemon pointed at the same streams: a job submitted
// to any of them runs on one with a free slot, and its record is read from any.
package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sandboxd/sandboxd/sandbox"
)

// Engine is what the manager needs of the engine (*sandbox.Engine).
type Engine interface {
	// Check refuses a request the engine would refuse, without running it.
	Check(req sandbox.Request) error
	Submit(ctx context.Context, req sandbox.Request) (*sandbox.Job, error)
}

// Observer is told about async jobs and callbacks (metrics hang off it).
type Observer interface {
	// AsyncJob is told of each transition: "submitted", "done", "cancelled", "lost", "retried".
	AsyncJob(event string)
	// Callback is told of each delivery attempt's outcome: "delivered", "retry", "failed".
	Callback(outcome string)
}

// Options configure a Manager. Zero fields take the defaults named.
type Options struct {
	Dir    string // holds the store, jobs.db (required without Cluster)
	Engine Engine // required
	// Slots is how many async jobs are handed to the engine at once (the engine's
	// max_jobs; default 4). The rest wait in the manager's queue.
	Slots int
	// MaxQueue bounds the jobs waiting for a slot (default 64); more get ErrQueueFull.
	MaxQueue int
	// Retention is how long a finished job is kept (default 24h); RetentionCount how
	// many jobs are kept at most (default 10000); MaxStoreBytes bounds the bytes of
	// stored results (default 1 GiB). Past any, finished jobs go, oldest first.
	Retention      time.Duration
	RetentionCount int
	MaxStoreBytes  int64
	// MaxRuns bounds how often a Retry job is started across restarts (default 3).
	MaxRuns int
	// CallbacksOffHost allows callback URLs whose host is not loopback.
	CallbacksOffHost bool
	// CallbackAttempts bounds delivery attempts (default 5); CallbackBackoff is the wait
	// before the second, doubling after each (default 1s); CallbackTimeout bounds one
	// attempt (default 10s).
	CallbackAttempts int
	CallbackBackoff  time.Duration
	CallbackTimeout  time.Duration
	// Callbacks build a callback's request by Callback.Kind; "" is the default kind
	// (the daemon sets it to POST the job as GET /v1/jobs/{id} shows it).
	Callbacks map[string]CallbackEncoder
	// Draining, if set, refuses new jobs while it says true (the admin's drain).
	Draining func() bool
	// Cluster, if set, keeps jobs in NATS JetStream, shared with other daemons, instead
	// of the store under Dir.
	Cluster  *ClusterOptions
	Observer Observer
	Logger   *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Slots <= 0 {
		o.Slots = 4
	}
	if o.MaxQueue == 0 {
		o.MaxQueue = 64
	}
	if o.Retention <= 0 {
		o.Retention = 24 * time.Hour
	}
	if o.RetentionCount <= 0 {
		o.RetentionCount = 10000
	}
	if o.MaxStoreBytes <= 0 {
		o.MaxStoreBytes = 1 << 30
	}
	if o.MaxRuns <= 0 {
		o.MaxRuns = 3
	}
	if o.CallbackAttempts <= 0 {
		o.CallbackAttempts = 5
	}
	if o.CallbackBackoff <= 0 {
		o.CallbackBackoff = time.Second
	}
	if o.CallbackTimeout <= 0 {
		o.CallbackTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// SubmitOptions are what a front adds to a request.
type SubmitOptions struct {
	// IdempotencyKey, if set, makes a second Submit with the same key return the first
	// job instead of running another (while that job is kept).
	IdempotencyKey string
	// CallbackURL, if set, is called when the job is done (see CheckCallbackURL);
	// CallbackKind picks the encoder of its request ("" the default).
	CallbackURL  string
	CallbackKind string
	// Retry re-runs the job after a restart that interrupted it, instead of reporting it lost.
	Retry bool
	// Meta is stored with the job as it is (the front's own fields).
	Meta json.RawMessage
}

// MaxIdempotencyKey is the longest idempotency key taken.
const MaxIdempotencyKey = 255

// Manager runs async jobs. Create it with New; Close it last.
type Manager struct {
	opts Options
	be   backend
	log  *slog.Logger

	mu      sync.Mutex
	live    map[string]*live // jobs this node has that are not finished
	closing bool

	workers   sync.WaitGroup
	callbacks sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
	stop      context.CancelFunc // ends callback deliveries and the pruner
	ctx       context.Context
}

// live is a job that is not finished, in this run of the manager: queued here (the
// local backend) or running here.
type live struct {
	done    chan struct{} // closed once its final record is stored
	events  *EventLog
	cancel  context.CancelFunc // set once it runs
	running bool
	stop    bool // Cancel came
	once    sync.Once
}

func newLive() *live { return &live{done: make(chan struct{}), events: NewEventLog()} }

// end wakes the job's waiters and readers, once.
func (l *live) end() {
	l.once.Do(func() {
		l.events.Close()
		close(l.done)
	})
}

// New opens (or creates) the store in opts.Dir, deals with the jobs a previous run left
// unfinished (lost, or queued again when marked Retry), resumes pending callbacks, and
// starts feeding the engine. With opts.Cluster it connects to JetStream instead, where
// a job left unfinished by a node that stopped is found again when it is redelivered.
func New(opts Options) (*Manager, error) {
	opts.setDefaults()
	if opts.Engine == nil || (opts.Dir == "" && opts.Cluster == nil) {
		return nil, errors.New("jobs: Engine and Dir (or Cluster) are required")
	}
	ctx, stop := context.WithCancel(context.Background())
	m := &Manager{opts: opts, log: opts.Logger, live: map[string]*live{}, stop: stop, ctx: ctx}
	if opts.Cluster != nil {
		be, err := openJetStream(*opts.Cluster, &m.opts)
		if err != nil {
			stop()
			return nil, err
		}
		m.be = be
	} else {
		if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
			stop()
			return nil, fmt.Errorf("job store: %w", err)
		}
		st, err := openStore(filepath.Join(opts.Dir, "jobs.db"))
		if err != nil {
			stop()
			return nil, err
		}
		lb, err := newLocalBackend(st, &m.opts)
		if err == nil {
			err = m.recover(lb)
		}
		if err != nil {
			st.close()
			stop()
			return nil, err
		}
		m.be = lb
		lb.prune()
	}
	for range opts.Slots {
		m.workers.Add(1)
		go m.worker()
	}
	m.callbacks.Add(1)
	go m.pruner()
	return m, nil
}

// recover settles what a previous run left in the local store: unfinished jobs become
// lost or, marked Retry with runs to spare and their request stored, queued again;
// callbacks still pending are delivered again.
func (m *Manager) recover(lb *localBackend) error {
	var unfinished, pendingCB []Record
	if err := lb.store.all(func(r Record) {
		if !r.State.Final() {
			unfinished = append(unfinished, r)
		} else if r.Callback != nil && r.Callback.State == CallbackPending {
			pendingCB = append(pendingCB, r)
		}
	}); err != nil {
		return err
	}
	for _, r := range unfinished {
		if r.Retry && r.Runs < m.opts.MaxRuns {
			req, err := lb.store.request(r.ID)
			if err == nil && req != nil {
				rec, err := lb.store.update(r.ID, func(r *Record) { r.State = StateQueued })
				if err != nil {
					return err
				}
				m.live[r.ID] = newLive()
				lb.push(&task{id: r.ID, req: req.request(r.ID)})
				m.log.Info("async job queued again after a restart", "job", rec.ID, "runs", rec.Runs)
				m.observe("retried")
				continue
			}
		}
		why := "the daemon stopped before the job finished"
		if r.Retry {
			why = fmt.Sprintf("the daemon stopped before the job finished, %d times", r.Runs)
		}
		r.State, r.Finished, r.LostReason = StateLost, time.Now(), why
		if _, err := lb.store.finish(&r, nil); err != nil {
			return err
		}
		m.log.Warn("async job lost: the previous run did not finish it", "job", r.ID, "was", "unfinished")
		m.observe("lost")
		if r.Callback != nil && r.Callback.State == CallbackPending {
			pendingCB = append(pendingCB, r)
		}
	}
	for _, r := range pendingCB {
		m.callbacks.Add(1)
		go m.deliver(r.ID)
	}
	return nil
}

func (m *Manager) observe(event string) {
	if m.opts.Observer != nil {
		m.opts.Observer.AsyncJob(event)
	}
}

func newID() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return "sbx-" + hex.EncodeToString(b)
}

// Submit checks req, stores it as a queued job and returns its record at once; created
// is false when opts.IdempotencyKey named a job already kept (whose record it returns).
// req.ID, if set, is the job's id. Errors: the engine's refusal of req (a
// *sandbox.FieldError, ...), ErrBadCallback, ErrBadRequest, ErrQueueFull, ErrClosed,
// ErrUnavailable (the shared queue cannot be reached).
func (m *Manager) Submit(ctx context.Context, req sandbox.Request, opts SubmitOptions) (rec Record, created bool, err error) {
	if req.StdinStream != nil {
		return rec, false, fmt.Errorf("%w: an async job cannot take an interactive stdin stream", ErrBadRequest)
	}
	if len(opts.IdempotencyKey) > MaxIdempotencyKey {
		return rec, false, fmt.Errorf("%w: the idempotency key is longer than %d bytes", ErrBadRequest, MaxIdempotencyKey)
	}
	if opts.CallbackURL != "" {
		if err := CheckCallbackURL(opts.CallbackURL, m.opts.CallbacksOffHost); err != nil {
			return rec, false, err
		}
		if _, ok := m.opts.Callbacks[opts.CallbackKind]; !ok {
			return rec, false, fmt.Errorf("%w: no callback encoder of kind %q", ErrBadCallback, opts.CallbackKind)
		}
	}
	if m.opts.Draining != nil && m.opts.Draining() {
		return rec, false, fmt.Errorf("%w: draining", ErrClosed)
	}
	if req.ID == "" {
		req.ID = newID()
	}
	if err := m.opts.Engine.Check(req); err != nil {
		return rec, false, err
	}
	rec = Record{ID: req.ID, State: StateQueued, Submitted: time.Now().UTC(), Meta: opts.Meta, Retry: opts.Retry,
		IdempotencyKey: opts.IdempotencyKey}
	if opts.CallbackURL != "" {
		rec.Callback = &Callback{URL: opts.CallbackURL, Kind: opts.CallbackKind, State: CallbackPending}
	}
	m.mu.Lock()
	if m.closing {
		m.mu.Unlock()
		return Record{}, false, fmt.Errorf("%w: shutting down", ErrClosed)
	}
	// A job queued here is live here before a worker can take it, so Wait and
	// Events find it; a shared queue's job is live where it runs.
	var l *live
	if _, dup := m.live[rec.ID]; !dup && !m.be.shared() {
		l = newLive()
		m.live[rec.ID] = l
	}
	m.mu.Unlock()
	existing, err := m.be.create(&rec, req)
	if err != nil || existing != nil {
		if l != nil {
			m.mu.Lock()
			delete(m.live, rec.ID)
			m.mu.Unlock()
		}
		if err != nil {
			return Record{}, false, err
		}
		return *existing, false, nil
	}
	m.observe("submitted")
	return rec, true, nil
}

// Get returns a job's record, with its result when it is done, or ErrNotFound.
func (m *Manager) Get(id string) (Record, error) { return m.be.get(id) }

// Wait returns a job's record once it is final, or when maxWait or ctx ends first
// (then the record as it is; not an error).
func (m *Manager) Wait(ctx context.Context, id string, maxWait time.Duration) (Record, error) {
	if maxWait <= 0 {
		return m.be.get(id)
	}
	m.mu.Lock()
	l := m.live[id]
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, maxWait)
	defer cancel()
	if l != nil {
		select {
		case <-l.done:
		case <-ctx.Done():
		}
	} else {
		m.be.await(ctx, id)
	}
	return m.be.get(id)
}

// Events returns the live event log of a job that is not finished and runs (or waits)
// on this node, or nil for one that is finished or elsewhere (its result is all there
// is); ErrNotFound for an unknown id.
func (m *Manager) Events(id string) (*EventLog, error) {
	m.mu.Lock()
	l := m.live[id]
	m.mu.Unlock()
	if l != nil {
		return l.events, nil
	}
	if _, err := m.be.get(id); err != nil {
		return nil, err
	}
	return nil, nil
}

// Cancel stops a job: a queued one never runs (it is done, status cancelled); a
// running one is killed and its result says cancelled, on whichever node runs it. A
// finished job is left as it is. It returns the job's record, final unless a running
// job took over 2 s to end.
func (m *Manager) Cancel(id string) (Record, error) {
	cancelled := &sandbox.Result{ID: id, Status: sandbox.StatusCancelled, Outcome: sandbox.Outcome{ExitCode: -1}}
	if m.be.unqueue(id) {
		return m.finish(nil, id, cancelled, "cancelled")
	}
	m.mu.Lock()
	l := m.live[id]
	if l != nil {
		l.stop = true
		if l.cancel != nil {
			l.cancel()
		}
	}
	m.mu.Unlock()
	if l != nil {
		// A kill takes milliseconds: answer with the job's end when it comes soon.
		select {
		case <-l.done:
		case <-time.After(2 * time.Second):
		}
		return m.be.get(id)
	}
	if !m.be.shared() {
		return m.be.get(id)
	}
	rec, err := m.be.get(id)
	if err != nil || rec.State.Final() {
		return rec, err
	}
	if rec.State == StateQueued {
		rec, err := m.finish(nil, id, cancelled, "cancelled")
		if !errors.Is(err, errNotQueued) {
			return rec, err
		}
	}
	if err := m.be.stopRemote(id); err != nil {
		return Record{}, err
	}
	ctx, stop := context.WithTimeout(context.Background(), 2*time.Second)
	defer stop()
	m.be.await(ctx, id)
	return m.be.get(id)
}

// List pages through the jobs in submission order: up to limit (1 to 1000; default
// 100) after the job named after, in state ("" any). next is the id to pass as after
// for the next page, "" at the end.
func (m *Manager) List(state State, limit int, after string) (recs []Record, next string, err error) {
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	recs, more, err := m.be.list(state, limit, after)
	if err != nil {
		return nil, "", err
	}
	if more && len(recs) > 0 {
		next = recs[len(recs)-1].ID
	}
	return recs, next, nil
}

// Load is how many async jobs are queued (in the whole queue, when it is shared) and
// running on this node now.
func (m *Manager) Load() (queued, running int) {
	m.mu.Lock()
	for _, l := range m.live {
		if l.running {
			running++
		}
	}
	m.mu.Unlock()
	return m.be.queued(), running
}

// worker hands queued jobs to the engine, one at a time: it takes a job only while it
// is idle, which is what keeps a shared queue's jobs on nodes with a free slot.
func (m *Manager) worker() {
	defer m.workers.Done()
	for {
		t, ok := m.be.next()
		if !ok {
			return
		}
		if t.lost != "" {
			m.lose(t)
			continue
		}
		m.mu.Lock()
		l := m.live[t.id]
		if l == nil {
			l = newLive()
			m.live[t.id] = l
		}
		ctx, cancel := context.WithCancel(m.ctx) // the manager's, not a client's
		l.cancel, l.running = cancel, true
		stop := l.stop
		m.mu.Unlock()
		if stop {
			cancel()
		}
		if t.stop != nil {
			go func() {
				select {
				case <-t.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
		}
		stored := m.run(ctx, t, l)
		cancel()
		if t.end != nil {
			t.end(stored)
		}
	}
}

// run hands one job to the engine and stores how it ended; it says whether it did.
func (m *Manager) run(ctx context.Context, t *task, l *live) bool {
	req := t.req
	front := req.Events
	req.Events = func(ev sandbox.Event) {
		l.events.Add(ev)
		if front != nil {
			front(ev)
		}
	}
	var job *sandbox.Job
	var err error
	for backoff := 10 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		job, err = m.opts.Engine.Submit(ctx, req)
		if !errors.Is(err, sandbox.ErrBusy) {
			break
		}
		// Synchronous requests hold every slot and queue place: wait for one.
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
			continue
		}
		break
	}
	var res *sandbox.Result
	switch {
	case err == nil:
		res, err = job.Wait(context.Background())
	case errors.Is(err, sandbox.ErrClosed):
		// Shutting down: the job stays unfinished in the store, so the next start
		// reports it lost or runs it again (a shared queue hands it to another node).
		m.log.Warn("async job not run: the engine is closing", "job", t.id)
		if m.be.shared() {
			m.mu.Lock()
			delete(m.live, t.id)
			m.mu.Unlock()
			l.end()
		} else {
			l.events.Close()
		}
		return false
	}
	if err != nil {
		res = &sandbox.Result{ID: t.id, Status: sandbox.StatusInternalError, Outcome: sandbox.Outcome{ExitCode: -1}}
		if ctx.Err() != nil {
			res.Status = sandbox.StatusCancelled
		} else {
			res.Error = err.Error() // "the job did not start: <why>" (GPUs it could not have)
			m.log.Warn("async job did not start", "job", t.id, "err", err)
		}
	}
	event := "done"
	if res.Status == sandbox.StatusCancelled {
		event = "cancelled"
	}
	_, err = m.finish(t, t.id, res, event)
	if err != nil && !errors.Is(err, errSuperseded) {
		m.log.Error("async job: store result", "job", t.id, "err", err)
		return false
	}
	return true
}

// finish stores a job's result as done, wakes its waiters, starts its callback and
// applies retention. t is the run that ended, nil for a job cancelled while queued.
func (m *Manager) finish(t *task, id string, res *sandbox.Result, event string) (Record, error) {
	sr := storeResult(res)
	rec, _, err := m.be.finish(t, id, func(r *Record) {
		r.State, r.Finished, r.Result = StateDone, time.Now().UTC(), nil
	}, &sr)
	if errors.Is(err, errNotQueued) {
		return rec, err
	}
	rec.Result = res
	m.mu.Lock()
	l := m.live[id]
	delete(m.live, id)
	m.mu.Unlock()
	if l != nil {
		l.end()
	}
	if errors.Is(err, errSuperseded) {
		m.log.Warn("async job: another run's result was stored first; this one is dropped", "job", id)
		return rec, err
	}
	if err != nil {
		return rec, err
	}
	m.observe(event)
	m.log.Info("async job done", "job", id, "status", string(res.Status), "runs", rec.Runs)
	if rec.Callback != nil {
		m.callbacks.Add(1)
		go m.deliver(id)
	}
	m.be.prune()
	return rec, nil
}

// lose stores a job of a shared queue lost: its node stopped while it ran, and it may
// not run again.
func (m *Manager) lose(t *task) {
	rec, _, err := m.be.finish(t, t.id, func(r *Record) {
		r.State, r.Finished, r.LostReason = StateLost, time.Now().UTC(), t.lost
	}, nil)
	stored := err == nil || errors.Is(err, errSuperseded)
	if t.end != nil {
		t.end(stored)
	}
	if err != nil {
		if !errors.Is(err, errSuperseded) {
			m.log.Error("async job: store lost", "job", t.id, "err", err)
		}
		return
	}
	m.log.Warn("async job lost: its node stopped before the job finished", "job", t.id, "runs", rec.Runs)
	m.observe("lost")
	if rec.Callback != nil && rec.Callback.State == CallbackPending {
		m.callbacks.Add(1)
		go m.deliver(t.id)
	}
}

// pruner applies retention by age while nothing else happens.
func (m *Manager) pruner() {
	defer m.callbacks.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
			m.be.prune()
		}
	}
}

// Drain stops handing queued jobs to the engine and refuses new ones; jobs already
// running go on. The queued ones stay queued in the store: the next start reports
// them lost, or runs them if they were submitted with Retry (a shared queue keeps them
// for the other nodes).
func (m *Manager) Drain() {
	m.mu.Lock()
	m.closing = true
	m.mu.Unlock()
	m.be.drain()
}

// Close drains, waits for running jobs to be stored (until ctx ends: the daemon kills
// them after its grace period), stops callback deliveries (pending ones resume at the
// next start) and closes the store.
func (m *Manager) Close(ctx context.Context) error {
	m.closeOnce.Do(func() {
		m.Drain()
		done := make(chan struct{})
		go func() { m.workers.Wait(); close(done) }()
		var err error
		select {
		case <-done:
		case <-ctx.Done():
			err = fmt.Errorf("jobs: running jobs not stored: %w", ctx.Err())
		}
		m.stop()
		m.callbacks.Wait()
		// Waiters and event readers of jobs left queued are answered now.
		m.mu.Lock()
		for _, l := range m.live {
			l.end()
		}
		m.mu.Unlock()
		m.closeErr = errors.Join(err, m.be.close())
	})
	return m.closeErr
}

// Check refuses a request Submit would refuse for its content, without storing it.
func (m *Manager) Check(req sandbox.Request) error {
	if req.ID == "" {
		req.ID = newID()
	}
	return m.opts.Engine.Check(req)
}
