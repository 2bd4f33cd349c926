package jobs

import (
	"context"
	"errors"

	"github.com/sandboxd/sandboxd/sandbox"
)

// backend is where a Manager keeps its jobs and how it queues them. There are two:
// the embedded bbolt store with an in-memory queue, for one daemon (local.go, the
// default), and NATS JetStream, shared by many daemons (jetstream.go). The manager
// keeps what is this node's alone either way: the jobs it runs, their events and
// cancel functions, and callback deliveries.
type backend interface {
	// create stores rec as queued, with req kept for a re-run when rec.Retry, and
	// queues it. When rec's idempotency key (or id) names a kept job it stores nothing
	// and returns that job. ErrQueueFull when the queue holds its bound.
	create(rec *Record, req sandbox.Request) (existing *Record, err error)
	// next blocks until a job is queued for this node, which has a free slot (the
	// caller is an idle worker), marks it running (Runs counted) and returns it. A job
	// that must be reported lost instead comes with task.lost set. ok is false once
	// drain was called.
	next() (t *task, ok bool)
	// unqueue takes a job no one has started off this node's queue and says whether
	// it did (the local queue only; a shared queue's jobs are cancelled by finish).
	unqueue(id string) bool
	get(id string) (Record, error)
	list(state State, limit int, after string) (recs []Record, more bool, err error)
	findKey(key string) (Record, error)
	// update changes a job's record in place (callback bookkeeping).
	update(id string, f func(*Record)) (Record, error)
	// finish makes a job's record final with final and stores it with its result (nil
	// for a lost job). t is the run that ended, nil for a job cancelled while queued;
	// then errNotQueued says that some node started it meanwhile. errSuperseded says
	// that another run's final record is stored already (this one is dropped). It
	// returns the record stored and the result's size in bytes.
	finish(t *task, id string, final func(*Record), res *storedResult) (Record, int, error)
	// stopRemote asks whichever node runs id to cancel it (a shared queue; the local
	// backend has no other node).
	stopRemote(id string) error
	// await blocks until the job is final or ctx ends (a shared queue's job running
	// elsewhere; the local backend returns at once: the manager's own live entry
	// covers every job it has).
	await(ctx context.Context, id string)
	// queued counts the jobs waiting for a slot.
	queued() int
	// shared says whether other nodes run this backend's jobs too.
	shared() bool
	// prune applies retention (the local store; a shared one expires jobs itself).
	prune()
	// drain makes next return false; close releases the backend.
	drain()
	close() error
}

// task is a job handed to this node to run.
type task struct {
	id  string
	req sandbox.Request
	rec Record // as marked running (or found, when lost)
	// lost: the job's previous run ended with its node and it may not run again;
	// the manager stores it lost with this reason.
	lost string
	// stop is closed when another node asks for the job to be cancelled (nil: never).
	stop <-chan struct{}
	// end is called once the run is over; stored says whether its final record was
	// stored (else a shared queue hands the job to another node).
	end func(stored bool)
	rev uint64 // a shared queue's: the record's revision as claimed
}

var (
	errNotQueued  = errors.New("the job is no longer queued")
	errSuperseded = errors.New("another run's result is stored")
)
