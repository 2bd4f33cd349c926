package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sandboxd/sandboxd/sandbox"
)

// ClusterOptions point a Manager at NATS JetStream, shared by every daemon given the
// same stream and bucket.
type ClusterOptions struct {
	URL       string // nats://host:port, or several, comma-separated (required)
	Node      string // this daemon's name, stored with the jobs it runs (required)
	Stream    string // the work-queue stream of submitted jobs (default SANDBOXD_JOBS)
	Bucket    string // the key-value bucket of job records (default sandboxd_jobs)
	CredsFile string // a NATS .creds file; "" connects without
	// AckWait is how long a job may go without its node's word before another node
	// takes it over (default 30s); a running job's node renews it every AckWait/4.
	AckWait  time.Duration
	Replicas int // of the stream and bucket (default 1)
}

const (
	jobHeader   = "Sandboxd-Job"
	consumerNm  = "sandboxd-workers"
	opTimeout   = 5 * time.Second
	fetchWait   = 2 * time.Second
	maxCASTries = 5
	finishRetry = time.Minute
)

// jsBackend keeps jobs in JetStream. Submitting a job writes its record to the bucket
// (job.<id>) and then its request to the stream, a work queue bounded at MaxQueue
// messages with new ones refused when full. Every node's idle workers pull from one
// durable consumer, so a job goes to a node with a free slot; a node claims a job by
// writing its record as running with compare-and-set on the record's revision, renews
// the message's ack deadline while it runs, and stores the final record with
// compare-and-set on the revision it claimed: of two runs of one job (a node thought
// dead that was not), only one final record is ever stored. The message is acked once
// the final record is stored; a node that dies before leaves it unacked, so JetStream
// delivers it again after AckWait, and the node that gets it re-runs the job (Retry,
// runs to spare) or stores it lost. Cancels go through cancel.<id> keys that the running
// node watches.
type jsBackend struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	cons    jetstream.Consumer
	subject string
	node    string
	ackWait time.Duration
	opts    *Options
	log     *slog.Logger

	draining atomic.Bool
	qmu      sync.Mutex
	qAt      time.Time
	qN       int
	downLog  atomic.Int64 // unix seconds of the last "queue unreachable" log line
}

// kvRecord is a job's value in the bucket: its record and, once done, its result.
type kvRecord struct {
	Record Record        `json:"record"`
	Result *storedResult `json:"result,omitempty"`
}

func jobKey(id string) string    { return "job." + id }
func cancelKey(id string) string { return "cancel." + id }
func idemKey(k string) string {
	h := sha256.Sum256([]byte(k))
	return "idem." + hex.EncodeToString(h[:])
}

// validID: a job id must be one key token of the bucket.
func validID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '=') {
			return false
		}
	}
	return true
}

func (co *ClusterOptions) setDefaults() {
	if co.Stream == "" {
		co.Stream = "SANDBOXD_JOBS"
	}
	if co.Bucket == "" {
		co.Bucket = "sandboxd_jobs"
	}
	if co.AckWait <= 0 {
		co.AckWait = 30 * time.Second
	}
	if co.Replicas <= 0 {
		co.Replicas = 1
	}
}

// openJetStream connects and creates (or updates) the stream, bucket and consumer.
// NATS not answering is an error: a daemon configured for the cluster does not start
// alone.
func openJetStream(co ClusterOptions, o *Options) (*jsBackend, error) {
	co.setDefaults()
	if co.URL == "" || co.Node == "" {
		return nil, errors.New("jobs: the cluster's URL and node name are required")
	}
	log := o.Logger.With("nats", co.URL)
	nopts := []nats.Option{nats.Name("sandboxd " + co.Node), nats.Timeout(opTimeout),
		nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
		// No buffering while disconnected: a write that timed out must not land later
		// (a record with no queued message), so writes fail at once instead.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("NATS disconnected", "err", err) }),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("NATS reconnected") })}
	if co.CredsFile != "" {
		nopts = append(nopts, nats.UserCredentials(co.CredsFile))
	}
	nc, err := nats.Connect(co.URL, nopts...)
	if err != nil {
		return nil, fmt.Errorf("%w: connect to NATS at %s: %w", ErrUnavailable, co.URL, err)
	}
	b := &jsBackend{nc: nc, subject: co.Stream + ".submit", node: co.Node, ackWait: co.AckWait, opts: o, log: o.Logger}
	if err := b.setup(co, o); err != nil {
		nc.Close()
		return nil, err
	}
	log.Info("async jobs on the shared queue", "node", co.Node, "stream", co.Stream, "bucket", co.Bucket,
		"ack_wait", co.AckWait, "max_queue", o.MaxQueue)
	return b, nil
}

func (b *jsBackend) setup(co ClusterOptions, o *Options) error {
	var err error
	if b.js, err = jetstream.New(b.nc); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*opTimeout)
	defer cancel()
	_, err = b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: co.Stream, Subjects: []string{b.subject}, Retention: jetstream.WorkQueuePolicy,
		MaxMsgs: int64(o.MaxQueue), Discard: jetstream.DiscardNew, MaxAge: o.Retention,
		Storage: jetstream.FileStorage, Replicas: co.Replicas, Duplicates: 2 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("JetStream stream %s: %w", co.Stream, err)
	}
	b.kv, err = b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: co.Bucket, TTL: o.Retention, History: 1, Storage: jetstream.FileStorage, Replicas: co.Replicas,
	})
	if err != nil {
		return fmt.Errorf("JetStream bucket %s: %w", co.Bucket, err)
	}
	b.cons, err = b.js.CreateOrUpdateConsumer(ctx, co.Stream, jetstream.ConsumerConfig{
		Durable: consumerNm, AckPolicy: jetstream.AckExplicitPolicy, AckWait: co.AckWait, MaxDeliver: -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("JetStream consumer %s on %s: %w", consumerNm, co.Stream, err)
	}
	return nil
}

func opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), opTimeout)
}

// unavailable marks an error of NATS itself (not of a job) as ErrUnavailable.
func unavailable(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
}

func (b *jsBackend) encode(v *kvRecord) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil || int64(len(data)) <= b.nc.MaxPayload() || v.Result == nil {
		return data, err
	}
	// Too big for one message: store that, rather than no result at all.
	r := sandbox.Result{ID: v.Record.ID, Status: sandbox.StatusInternalError, Outcome: sandbox.Outcome{ExitCode: -1},
		Error: fmt.Sprintf("the job's result (%d bytes) exceeds the NATS server's max_payload (%d bytes)", len(data), b.nc.MaxPayload())}
	sr := storeResult(&r)
	v.Result = &sr
	return json.Marshal(v)
}

func (b *jsBackend) create(rec *Record, req sandbox.Request) (*Record, error) {
	if b.draining.Load() {
		return nil, ErrClosed
	}
	if !validID(rec.ID) {
		return nil, fmt.Errorf("%w: a job id of letters, digits, '-', '_' or '=' (at most 128) is needed on a shared queue", ErrBadRequest)
	}
	body, err := json.Marshal(storeRequest(req))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > b.nc.MaxPayload() {
		return nil, fmt.Errorf("%w: the request (%d bytes) exceeds the NATS server's max_payload (%d bytes)", ErrBadRequest, len(body), b.nc.MaxPayload())
	}
	data, err := b.encode(&kvRecord{Record: *rec})
	if err != nil {
		return nil, err
	}
	ctx, cancel := opCtx()
	defer cancel()
	var ik string
	if rec.IdempotencyKey != "" {
		ik = idemKey(rec.IdempotencyKey)
		if _, err := b.kv.Create(ctx, ik, []byte(rec.ID)); err != nil {
			if !errors.Is(err, jetstream.ErrKeyExists) {
				return nil, unavailable("store the idempotency key", err)
			}
			if e, err := b.kv.Get(ctx, ik); err == nil {
				if old, err := b.get(string(e.Value())); err == nil {
					return &old, nil
				}
			}
			// The job it named is gone (retention): the key is this job's now.
			if _, err := b.kv.Put(ctx, ik, []byte(rec.ID)); err != nil {
				return nil, unavailable("store the idempotency key", err)
			}
		}
	}
	undo := func() {
		dctx, dcancel := opCtx()
		defer dcancel()
		_ = b.kv.Purge(dctx, jobKey(rec.ID))
		if ik != "" {
			_ = b.kv.Purge(dctx, ik)
		}
	}
	if _, err := b.kv.Create(ctx, jobKey(rec.ID), data); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			if old, err := b.get(rec.ID); err == nil {
				return &old, nil
			}
		}
		return nil, unavailable("store the job", err)
	}
	msg := &nats.Msg{Subject: b.subject, Data: body, Header: nats.Header{jobHeader: []string{rec.ID}}}
	if _, err := b.js.PublishMsg(ctx, msg, jetstream.WithMsgID(rec.ID)); err != nil {
		undo()
		var ae *jetstream.APIError
		if errors.As(err, &ae) && strings.Contains(ae.Description, "maximum messages") {
			return nil, ErrQueueFull
		}
		return nil, unavailable("queue the job", err)
	}
	return nil, nil
}

func (b *jsBackend) next() (*task, bool) {
	for {
		if b.draining.Load() {
			return nil, false
		}
		msg, err := b.cons.Next(jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			if !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
				b.logDown("fetch a job", err)
				time.Sleep(time.Second)
			}
			continue
		}
		if b.draining.Load() {
			_ = msg.Nak() // for another node, now
			return nil, false
		}
		id := msg.Headers().Get(jobHeader)
		t, err := b.claim(msg, id)
		if err != nil {
			b.logDown("claim job "+id, err)
			_ = msg.NakWithDelay(time.Second)
			continue
		}
		if t != nil {
			return t, true
		}
	}
}

// logDown logs a failure to reach NATS, at most every 10 s.
func (b *jsBackend) logDown(what string, err error) {
	now := time.Now().Unix()
	if last := b.downLog.Load(); now-last >= 10 && b.downLog.CompareAndSwap(last, now) {
		b.log.Warn("shared job queue: cannot "+what, "err", err)
	}
}

// claim turns a delivered message into a task: nil when the job needs nothing more
// (final already, or gone), a lost task when its previous run died and it may not run
// again, else the job marked running here.
func (b *jsBackend) claim(msg jetstream.Msg, id string) (*task, error) {
	for range maxCASTries {
		ctx, cancel := opCtx()
		e, err := b.kv.Get(ctx, jobKey(id))
		cancel()
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			_ = msg.Term() // dropped by retention, or never stored
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		var v kvRecord
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			b.log.Error("shared job queue: corrupt record; job dropped", "job", id, "err", err)
			_ = msg.Term()
			return nil, nil
		}
		t := &task{id: id, rec: v.Record}
		rev := e.Revision()
		switch v.Record.State {
		case StateDone, StateLost:
			_ = msg.Ack()
			return nil, nil
		case StateRunning:
			// Delivered again: the node running it stopped (or went silent for AckWait).
			if !v.Record.Retry || v.Record.Runs >= b.opts.MaxRuns {
				t.lost = fmt.Sprintf("the node running it (%s) stopped before the job finished", v.Record.Node)
				if v.Record.Retry {
					t.lost += fmt.Sprintf(", %d times", v.Record.Runs)
				}
				b.arm(t, msg, rev, false)
				return t, nil
			}
			b.log.Info("async job run again: the node running it stopped", "job", id, "node", v.Record.Node, "runs", v.Record.Runs)
			if b.opts.Observer != nil {
				b.opts.Observer.AsyncJob("retried")
			}
		}
		var sreq storedRequest
		if err := json.Unmarshal(msg.Data(), &sreq); err != nil {
			b.log.Error("shared job queue: corrupt request; job dropped", "job", id, "err", err)
			_ = msg.Term()
			return nil, nil
		}
		v.Record.State, v.Record.Started = StateRunning, time.Now().UTC()
		v.Record.Runs++
		v.Record.Node = b.node
		data, err := json.Marshal(&v)
		if err != nil {
			return nil, err
		}
		ctx, cancel = opCtx()
		rev, err = b.kv.Update(ctx, jobKey(id), data, rev)
		cancel()
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // cancelled or taken meanwhile: look again
		}
		if err != nil {
			return nil, err
		}
		t.rec, t.req = v.Record, sreq.request(id)
		b.arm(t, msg, rev, true)
		return t, nil
	}
	return nil, fmt.Errorf("the record kept changing")
}

// arm starts renewing the message's ack deadline while the task runs and, for a run,
// watches for a cancel from another node; t.end stops both and settles the message.
func (b *jsBackend) arm(t *task, msg jetstream.Msg, rev uint64, run bool) {
	t.rev = rev
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(b.ackWait / 4)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				_ = msg.InProgress()
			}
		}
	}()
	var w jetstream.KeyWatcher
	unwatch := func() {}
	if run {
		stop := make(chan struct{})
		t.stop = stop
		// The watch lives as long as its context: until the run ends.
		ctx, cancel := context.WithCancel(context.Background())
		var err error
		w, err = b.kv.Watch(ctx, cancelKey(t.id), jetstream.IgnoreDeletes())
		unwatch = cancel
		if err != nil {
			b.log.Warn("shared job queue: cannot watch for cancels; the job runs to its end", "job", t.id, "err", err)
		} else {
			go func() {
				for e := range w.Updates() {
					if e != nil && e.Operation() == jetstream.KeyValuePut {
						close(stop)
						return
					}
				}
			}()
		}
	}
	t.end = func(stored bool) {
		close(done)
		if w != nil {
			_ = w.Stop()
		}
		unwatch()
		if stored {
			_ = msg.Ack()
			return
		}
		if run {
			// Not run after all (this node is stopping): queued again, so the next
			// node runs it rather than finding it lost.
			r := t.rec
			r.State, r.Started, r.Runs = StateQueued, time.Time{}, r.Runs-1
			if data, err := json.Marshal(&kvRecord{Record: r}); err == nil {
				ctx, cancel := opCtx()
				_, _ = b.kv.Update(ctx, jobKey(t.id), data, t.rev)
				cancel()
			}
		}
		_ = msg.Nak()
	}
}

func (b *jsBackend) unqueue(string) bool { return false }

func (b *jsBackend) entry(id string) (kvRecord, uint64, error) {
	var v kvRecord
	if !validID(id) {
		return v, 0, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	ctx, cancel := opCtx()
	defer cancel()
	e, err := b.kv.Get(ctx, jobKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return v, 0, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return v, 0, unavailable("read job "+id, err)
	}
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return v, 0, fmt.Errorf("job %s: corrupt record: %w", id, err)
	}
	return v, e.Revision(), nil
}

func (b *jsBackend) get(id string) (Record, error) {
	v, _, err := b.entry(id)
	rec := v.Record
	if err == nil && v.Result != nil {
		rec.Result = v.Result.result()
	}
	return rec, err
}

// list reads every record of the bucket (a watch replays them all), so it costs in
// proportion to the jobs kept; they are sorted by submission time, then id.
func (b *jsBackend) list(state State, limit int, after string) ([]Record, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*opTimeout)
	defer cancel()
	w, err := b.kv.Watch(ctx, "job.>", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, false, unavailable("list jobs", err)
	}
	defer func() { _ = w.Stop() }()
	var all []Record
	for e := range w.Updates() {
		if e == nil {
			break // the replay is over
		}
		var v struct {
			Record Record `json:"record"`
		}
		if json.Unmarshal(e.Value(), &v) == nil {
			all = append(all, v.Record)
		}
	}
	if ctx.Err() != nil {
		return nil, false, unavailable("list jobs", ctx.Err())
	}
	less := func(a, c Record) int {
		if n := a.Submitted.Compare(c.Submitted); n != 0 {
			return n
		}
		return strings.Compare(a.ID, c.ID)
	}
	slices.SortFunc(all, less)
	if after != "" {
		i := slices.IndexFunc(all, func(r Record) bool { return r.ID == after })
		if i < 0 {
			return nil, false, fmt.Errorf("%w: %s", ErrNotFound, after)
		}
		all = all[i+1:]
	}
	var out []Record
	for _, r := range all {
		if state != "" && r.State != state {
			continue
		}
		if len(out) == limit {
			return out, true, nil
		}
		out = append(out, r)
	}
	return out, false, nil
}

func (b *jsBackend) findKey(key string) (Record, error) {
	ctx, cancel := opCtx()
	defer cancel()
	e, err := b.kv.Get(ctx, idemKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Record{}, ErrNotFound
	}
	if err != nil {
		return Record{}, unavailable("read an idempotency key", err)
	}
	return b.get(string(e.Value()))
}

func (b *jsBackend) update(id string, f func(*Record)) (Record, error) {
	for range maxCASTries {
		v, rev, err := b.entry(id)
		if err != nil {
			return Record{}, err
		}
		f(&v.Record)
		data, err := b.encode(&v)
		if err != nil {
			return Record{}, err
		}
		ctx, cancel := opCtx()
		_, err = b.kv.Update(ctx, jobKey(id), data, rev)
		cancel()
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return Record{}, unavailable("store job "+id, err)
		}
		return v.Record, nil
	}
	return Record{}, fmt.Errorf("job %s: the record kept changing", id)
}

func (b *jsBackend) finish(t *task, id string, final func(*Record), res *storedResult) (Record, int, error) {
	var v kvRecord
	var rev uint64
	if t != nil {
		v, rev = kvRecord{Record: t.rec}, t.rev
	} else {
		var err error
		if v, rev, err = b.entry(id); err != nil {
			return v.Record, 0, err
		}
		if v.Record.State != StateQueued {
			return v.Record, 0, errNotQueued
		}
	}
	final(&v.Record)
	v.Result = res
	data, err := b.encode(&v)
	if err != nil {
		return v.Record, 0, err
	}
	// A run's result is worth waiting for while NATS is away (its slot stays taken,
	// its message renewed); past finishRetry the redelivered job is another node's.
	for wait := time.Now().Add(finishRetry); ; time.Sleep(time.Second) {
		ctx, cancel := opCtx()
		_, err = b.kv.Update(ctx, jobKey(id), data, rev)
		cancel()
		if t == nil || err == nil || errors.Is(err, jetstream.ErrKeyRevisionMismatch) || time.Now().After(wait) || b.nc.IsClosed() {
			break
		}
		b.logDown("store the result of job "+id, err)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch) && t == nil:
		return v.Record, 0, errNotQueued
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return v.Record, 0, errSuperseded
	case err != nil:
		return v.Record, 0, unavailable("store job "+id, err)
	}
	return v.Record, len(data), nil
}

func (b *jsBackend) stopRemote(id string) error {
	ctx, cancel := opCtx()
	defer cancel()
	if _, err := b.kv.Put(ctx, cancelKey(id), []byte(time.Now().UTC().Format(time.RFC3339Nano))); err != nil {
		return unavailable("cancel job "+id, err)
	}
	return nil
}

func (b *jsBackend) await(ctx context.Context, id string) {
	if !validID(id) {
		return
	}
	w, err := b.kv.Watch(ctx, jobKey(id), jetstream.IgnoreDeletes())
	if err != nil {
		return
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				continue
			}
			var v struct {
				Record Record `json:"record"`
			}
			if json.Unmarshal(e.Value(), &v) == nil && v.Record.State.Final() {
				return
			}
		}
	}
}

// queued is the stream's count of jobs no node has taken, read at most once a second.
func (b *jsBackend) queued() int {
	b.qmu.Lock()
	defer b.qmu.Unlock()
	if time.Since(b.qAt) > time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		if ci, err := b.cons.Info(ctx); err == nil {
			b.qN = int(ci.NumPending)
		}
		cancel()
		b.qAt = time.Now()
	}
	return b.qN
}

func (b *jsBackend) shared() bool { return true }
func (b *jsBackend) prune()       {} // the bucket's TTL and the stream's MaxAge expire jobs
func (b *jsBackend) drain()       { b.draining.Store(true) }

func (b *jsBackend) close() error {
	b.draining.Store(true)
	b.nc.Close()
	return nil
}
