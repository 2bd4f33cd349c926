package jobs

import (
	"encoding/json"
	"time"

	"github.com/sandboxd/sandboxd/gpu"
	"github.com/sandboxd/sandboxd/sandbox"
)

// State is where an async job is. Final states are Done and Lost.
type State string

const (
	StateQueued  State = "queued"  // accepted and stored, waiting for a slot
	StateRunning State = "running" // handed to the engine
	StateDone    State = "done"    // finished: Result holds how (a cancelled job too)
	// StateLost: the daemon stopped (crash, kill, power cut) before the job finished and
	// the job was not marked retry (or ran out of retries); it has no result.
	StateLost State = "lost"
)

// Final says whether a job in state s will change no more.
func (s State) Final() bool { return s == StateDone || s == StateLost }

// Valid says whether s is one of the states.
func (s State) Valid() bool {
	switch s {
	case StateQueued, StateRunning, StateDone, StateLost:
		return true
	}
	return false
}

// Callback states.
const (
	CallbackPending   = "pending"   // not yet delivered; attempts go on (also across a restart)
	CallbackDelivered = "delivered" // a 2xx answer came
	CallbackFailed    = "failed"    // every attempt failed
)

// Callback is a job's callback and how its delivery went.
type Callback struct {
	URL string `json:"url"`
	// Kind names the encoder that builds the request (Options.Callbacks); "" is the
	// default one. Fronts with their own callback format (Judge0 PUTs) register theirs.
	Kind      string `json:"kind,omitempty"`
	State     string `json:"state"`
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error,omitempty"`
}

// Record is everything the manager keeps of an async job.
type Record struct {
	ID        string    `json:"id"`
	State     State     `json:"state"`
	Submitted time.Time `json:"submitted"`
	Started   time.Time `json:"started,omitzero"`
	Finished  time.Time `json:"finished,omitzero"`
	// Result is set once the job is done (Get and Wait load it; List leaves it nil).
	Result   *sandbox.Result `json:"-"`
	Callback *Callback       `json:"callback,omitempty"`
	// Meta is the submitting front's own data, stored with the job and never read here.
	Meta           json.RawMessage `json:"meta,omitempty"`
	Retry          bool            `json:"retry,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	// Runs counts the times the job was handed to the engine (more than one: it was
	// re-run after a restart).
	Runs int `json:"runs"`
	// Node is the daemon that ran the job last, on a shared queue (ClusterOptions.Node).
	Node string `json:"node,omitempty"`
	// LostReason says why a lost job was lost.
	LostReason string `json:"lost_reason,omitempty"`
	Seq        uint64 `json:"seq"` // submission order, for listing and retention
}

// storedRequest is a sandbox.Request as the store keeps it, for jobs that are re-run
// after a restart (retry). Events and StdinStream are the live job's, never stored.
type storedRequest struct {
	Language      string            `json:"language,omitempty"`
	Version       string            `json:"version,omitempty"`
	Code          []byte            `json:"code,omitempty"` // a Go string of any bytes: as []byte it round-trips exactly
	Files         []sandbox.File    `json:"files,omitempty"`
	Stdin         []byte            `json:"stdin,omitempty"`
	Args          []string          `json:"args,omitempty"`
	Env           map[string]string `json:"env,omitempty"`
	Collect       []string          `json:"collect,omitempty"`
	Tests         []sandbox.Test    `json:"tests,omitempty"`
	Compare       sandbox.Compare   `json:"compare,omitempty"`
	Limits        sandbox.Limits    `json:"limits"`
	CompileLimits sandbox.Limits    `json:"compile_limits"`
	GPUs          gpu.Request       `json:"gpus"`
}

func storeRequest(r sandbox.Request) storedRequest {
	return storedRequest{Language: r.Language, Version: r.Version, Code: []byte(r.Code), Files: r.Files, Stdin: r.Stdin,
		Args: r.Args, Env: r.Env, Collect: r.Collect, Tests: r.Tests, Compare: r.Compare, Limits: r.Limits,
		CompileLimits: r.CompileLimits, GPUs: r.GPUs}
}

func (s storedRequest) request(id string) sandbox.Request {
	return sandbox.Request{ID: id, Language: s.Language, Version: s.Version, Code: string(s.Code), Files: s.Files, Stdin: s.Stdin,
		Args: s.Args, Env: s.Env, Collect: s.Collect, Tests: s.Tests, Compare: s.Compare, Limits: s.Limits,
		CompileLimits: s.CompileLimits, GPUs: s.GPUs}
}

// storedResult is a sandbox.Result as the store keeps it. Outcome.Stdout and Stderr
// are Go strings of raw bytes, which encoding/json would make valid UTF-8 (replacing
// what is not); so they are blanked in the embedded Result and kept exactly, as
// []byte (base64 in JSON), in Streams: the run's stdout and stderr, then the compile
// step's (when there is one), then each test's.
type storedResult struct {
	sandbox.Result
	Streams [][]byte `json:"streams"`
}

func storeResult(r *sandbox.Result) storedResult {
	s := storedResult{Result: *r}
	take := func(o *sandbox.Outcome) {
		s.Streams = append(s.Streams, []byte(o.Stdout), []byte(o.Stderr))
		o.Stdout, o.Stderr = "", ""
	}
	take(&s.Outcome)
	if r.Compile != nil {
		c := *r.Compile
		take(&c.Outcome)
		s.Compile = &c
	}
	if r.Tests != nil {
		s.Tests = make([]sandbox.TestResult, len(r.Tests))
		copy(s.Tests, r.Tests)
		for i := range s.Tests {
			take(&s.Tests[i].Outcome)
		}
	}
	return s
}

func (s storedResult) result() *sandbox.Result {
	r := s.Result
	i := 0
	give := func(o *sandbox.Outcome) {
		if i+1 < len(s.Streams) {
			o.Stdout, o.Stderr = string(s.Streams[i]), string(s.Streams[i+1])
		}
		i += 2
	}
	give(&r.Outcome)
	if r.Compile != nil {
		give(&r.Compile.Outcome)
	}
	for j := range r.Tests {
		give(&r.Tests[j].Outcome)
	}
	return &r
}
