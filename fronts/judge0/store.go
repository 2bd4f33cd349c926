package judge0

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/sandboxd/sandboxd/sandbox"
	"github.com/sandboxd/sandboxd/server"
)

// Store keeps submissions that outlive their request: Judge0's tokens (wait=false,
// batches, GET by token) and callbacks. The async job manager (package jobs) is meant
// to satisfy it; MemoryStore is a small in-memory one over the same Runner until then.
type Store interface {
	// Submit accepts req and runs it in the background; the record's ID is the token.
	Submit(ctx context.Context, req sandbox.Request, opts SubmitOptions) (Record, error)
	// Get returns a submission's record, or an error wrapping ErrNotFound.
	Get(id string) (Record, error)
	// Wait returns the record once it is done, or as it stands when ctx ends or max
	// passes.
	Wait(ctx context.Context, id string, max time.Duration) (Record, error)
}

// ErrNotFound is returned for a token the store does not hold.
var ErrNotFound = errors.New("no such submission")

// ErrQueueFull is returned by Submit when the store holds as many waiting submissions
// as it may (Judge0's max_queue_size).
var ErrQueueFull = errors.New("queue is full")

// ErrBadCallback is returned by Submit for a callback URL the store will not call.
var ErrBadCallback = errors.New("callback URL refused")

// SubmitOptions go with a submission.
type SubmitOptions struct {
	Meta        json.RawMessage // kept with the record: the front's own view of the request
	CallbackURL string          // called once the job is done, if set
	// CallbackMethod and CallbackBody make the callback request (Judge0: PUT with the
	// submission); the body is computed from the finished record.
	CallbackMethod string
	CallbackBody   func(Record) ([]byte, error)
}

// State is where a submission is.
type State string

const (
	StateQueued  State = "queued"
	StateRunning State = "running"
	StateDone    State = "done"   // Result is set
	StateFailed  State = "failed" // the job did not run: Err says why
)

// Record is a submission as the store holds it.
type Record struct {
	ID       string
	State    State
	Result   *sandbox.Result
	Err      error
	Meta     json.RawMessage
	Created  time.Time
	Started  time.Time
	Finished time.Time
}

// MemoryStore runs submissions on a Runner, Workers at a time, keeping up to Keep
// records (the oldest finished ones go first). Records do not survive a restart.
type MemoryStore struct {
	run      server.Runner
	workers  chan struct{}
	maxQueue int
	keep     int
	client   *http.Client
	tries    int
	log      *slog.Logger

	mu      sync.Mutex
	recs    map[string]*memRecord
	order   []string // ids, oldest first
	waiting int
}

type memRecord struct {
	rec  Record
	done chan struct{}
}

// MemoryStoreOptions size a MemoryStore.
type MemoryStoreOptions struct {
	Workers         int           // jobs handed to the runner at once (default 4)
	MaxQueue        int           // submissions waiting for a worker (default 100)
	Keep            int           // records kept (default 10000)
	CallbackTimeout time.Duration // per try (default 5s, Judge0's)
	CallbackTries   int           // default 3, Judge0's
	Logger          *slog.Logger
}

// NewMemoryStore builds a store over run.
func NewMemoryStore(run server.Runner, o MemoryStoreOptions) *MemoryStore {
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.MaxQueue <= 0 {
		o.MaxQueue = 100
	}
	if o.Keep <= 0 {
		o.Keep = 10000
	}
	if o.CallbackTimeout <= 0 {
		o.CallbackTimeout = 5 * time.Second
	}
	if o.CallbackTries <= 0 {
		o.CallbackTries = 3
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &MemoryStore{run: run, workers: make(chan struct{}, o.Workers), maxQueue: o.MaxQueue, keep: o.Keep,
		client: &http.Client{Timeout: o.CallbackTimeout}, tries: o.CallbackTries, log: o.Logger, recs: map[string]*memRecord{}}
}

// Submit implements Store. ctx only bounds the call: the job runs on its own.
func (s *MemoryStore) Submit(_ context.Context, req sandbox.Request, opts SubmitOptions) (Record, error) {
	id := uuid.NewString()
	if req.ID == "" {
		req.ID = "sbx-" + id
	}
	r := &memRecord{rec: Record{ID: id, State: StateQueued, Meta: opts.Meta, Created: time.Now()}, done: make(chan struct{})}
	s.mu.Lock()
	if s.waiting >= s.maxQueue {
		s.mu.Unlock()
		return Record{}, ErrQueueFull
	}
	s.waiting++
	s.recs[id] = r
	s.order = append(s.order, id)
	s.evictLocked()
	out := r.rec
	s.mu.Unlock()
	go s.runOne(r, req, opts)
	return out, nil
}

func (s *MemoryStore) runOne(r *memRecord, req sandbox.Request, opts SubmitOptions) {
	s.workers <- struct{}{}
	s.mu.Lock()
	s.waiting--
	r.rec.State, r.rec.Started = StateRunning, time.Now()
	s.mu.Unlock()
	res, err := s.run.Run(context.Background(), req)
	<-s.workers
	s.mu.Lock()
	r.rec.Result, r.rec.Err, r.rec.Finished = res, err, time.Now()
	r.rec.State = StateDone
	if err != nil {
		r.rec.State = StateFailed
	}
	rec := r.rec
	s.mu.Unlock()
	close(r.done)
	if opts.CallbackURL != "" {
		s.callback(rec, opts)
	}
}

// callback makes the callback request, retrying as Judge0 does (tries, no backoff);
// any answer ends the tries.
func (s *MemoryStore) callback(rec Record, opts SubmitOptions) {
	method := opts.CallbackMethod
	if method == "" {
		method = http.MethodPost
	}
	var body []byte
	if opts.CallbackBody != nil {
		var err error
		if body, err = opts.CallbackBody(rec); err != nil {
			s.log.Warn("callback body", "submission", rec.ID, "err", err)
			return
		}
	}
	for try := 1; try <= s.tries; try++ {
		req, err := http.NewRequest(method, opts.CallbackURL, bytes.NewReader(body))
		if err != nil {
			s.log.Warn("callback", "submission", rec.ID, "err", err)
			return
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.client.Do(req)
		if err == nil {
			resp.Body.Close()
			return
		}
		s.log.Info("callback failed", "submission", rec.ID, "try", try, "err", err)
	}
}

// evictLocked drops the oldest finished records beyond keep.
func (s *MemoryStore) evictLocked() {
	for len(s.order) > s.keep {
		dropped := false
		for i, id := range s.order {
			if r := s.recs[id]; r.rec.State == StateDone || r.rec.State == StateFailed {
				delete(s.recs, id)
				s.order = append(s.order[:i], s.order[i+1:]...)
				dropped = true
				break
			}
		}
		if !dropped {
			return // all are pending: they count against maxQueue, not keep
		}
	}
}

// Get implements Store.
func (s *MemoryStore) Get(id string) (Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.recs[id]
	if r == nil {
		return Record{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return r.rec, nil
}

// Wait implements Store.
func (s *MemoryStore) Wait(ctx context.Context, id string, max time.Duration) (Record, error) {
	s.mu.Lock()
	r := s.recs[id]
	s.mu.Unlock()
	if r == nil {
		return Record{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-r.done:
	case <-ctx.Done():
	case <-t.C:
	}
	return s.Get(id)
}
