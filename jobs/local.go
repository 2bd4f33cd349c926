package jobs

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/sandboxd/sandboxd/sandbox"
)

// localBackend is one daemon's: the bbolt store under its state dir and a FIFO in
// memory of the jobs waiting for a slot, bounded by MaxQueue.
type localBackend struct {
	store    *store
	maxQueue int
	// retention
	age      time.Duration
	maxCount int
	maxBytes int64
	log      *slog.Logger

	mu      sync.Mutex
	cond    *sync.Cond // workers wait on it for queued jobs
	queue   []*task
	closing bool
	count   int   // records in the store
	bytes   int64 // bytes of stored results
	pruneMu sync.Mutex
}

func newLocalBackend(st *store, o *Options) (*localBackend, error) {
	b := &localBackend{store: st, maxQueue: o.MaxQueue, age: o.Retention, maxCount: o.RetentionCount,
		maxBytes: o.MaxStoreBytes, log: o.Logger}
	b.cond = sync.NewCond(&b.mu)
	var err error
	if b.count, b.bytes, err = st.stats(); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *localBackend) create(rec *Record, req sandbox.Request) (*Record, error) {
	var sreq *storedRequest
	if rec.Retry {
		s := storeRequest(req)
		sreq = &s
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return nil, ErrClosed
	}
	if len(b.queue) >= b.maxQueue {
		// An idempotent retry of a job already kept is answered even now.
		if rec.IdempotencyKey != "" {
			if old, err := b.findKey(rec.IdempotencyKey); err == nil {
				return &old, nil
			}
		}
		return nil, ErrQueueFull
	}
	existing, err := b.store.create(rec, sreq)
	if err != nil || existing != nil {
		return existing, err
	}
	b.count++
	b.push(&task{id: rec.ID, req: req})
	return nil, nil
}

// push queues t (b.mu held).
func (b *localBackend) push(t *task) {
	b.queue = append(b.queue, t)
	b.cond.Signal()
}

func (b *localBackend) next() (*task, bool) {
	for {
		b.mu.Lock()
		for len(b.queue) == 0 && !b.closing {
			b.cond.Wait()
		}
		if b.closing {
			b.mu.Unlock()
			return nil, false
		}
		t := b.queue[0]
		b.queue = b.queue[1:]
		b.mu.Unlock()
		rec, err := b.store.update(t.id, func(r *Record) {
			r.State, r.Started = StateRunning, time.Now().UTC()
			r.Runs++
		})
		if err != nil {
			b.log.Error("async job: store", "job", t.id, "err", err)
			continue
		}
		t.rec = rec
		return t, true
	}
}

func (b *localBackend) unqueue(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, t := range b.queue {
		if t.id == id {
			b.queue = append(b.queue[:i], b.queue[i+1:]...)
			return true
		}
	}
	return false
}

func (b *localBackend) get(id string) (Record, error) { return b.store.get(id) }

func (b *localBackend) list(state State, limit int, after string) ([]Record, bool, error) {
	return b.store.list(state, limit, after)
}

func (b *localBackend) findKey(key string) (Record, error) {
	var found *Record
	err := b.store.all(func(r Record) {
		if found == nil && r.IdempotencyKey == key {
			found = &r
		}
	})
	if err != nil {
		return Record{}, err
	}
	if found == nil {
		return Record{}, ErrNotFound
	}
	return *found, nil
}

func (b *localBackend) update(id string, f func(*Record)) (Record, error) {
	return b.store.update(id, f)
}

func (b *localBackend) finish(_ *task, id string, final func(*Record), res *storedResult) (Record, int, error) {
	rec, err := b.store.get(id)
	if err != nil {
		return rec, 0, err
	}
	final(&rec)
	n, err := b.store.finish(&rec, res)
	b.mu.Lock()
	b.bytes += int64(n)
	b.mu.Unlock()
	return rec, n, err
}

func (b *localBackend) stopRemote(string) error       { return nil }
func (b *localBackend) await(context.Context, string) {}
func (b *localBackend) shared() bool                  { return false }

func (b *localBackend) queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// prune applies retention.
func (b *localBackend) prune() {
	b.pruneMu.Lock()
	defer b.pruneMu.Unlock()
	b.mu.Lock()
	count, bytes := b.count, b.bytes
	b.mu.Unlock()
	cutoff := time.Now().Add(-b.age)
	n, freed, err := b.store.prune(cutoff, count, b.maxCount, bytes, b.maxBytes)
	if err != nil {
		b.log.Error("job store: retention", "err", err)
		return
	}
	if n > 0 {
		b.mu.Lock()
		b.count -= n
		b.bytes -= freed
		b.mu.Unlock()
		b.log.Debug("job store: dropped old jobs", "jobs", n, "bytes", freed)
	}
}

func (b *localBackend) drain() {
	b.mu.Lock()
	b.closing = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

func (b *localBackend) close() error { return b.store.close() }
