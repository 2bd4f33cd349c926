package gpu

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Request says which devices a job wants. Set exactly one selector:
// Count, UUIDs, Indices or All.
//
// Count and All pick whole GPUs; a GPU in MIG mode is leased only through
// its MIG instances, which are asked for by UUID.
type Request struct {
	Count   int      // any N free whole GPUs
	UUIDs   []string // these devices ("GPU-…" or "MIG-…")
	Indices []int    // these whole GPUs, by NVML index
	All     bool     // every whole GPU on the host

	// Wait bounds how long Acquire waits for busy devices to be released;
	// 0 fails at once with ErrUnavailable.
	Wait time.Duration
}

// Wanted says whether the request asks for any GPU (the zero Request asks for none).
func (r Request) Wanted() bool {
	return r.Count > 0 || r.All || len(r.UUIDs) > 0 || len(r.Indices) > 0
}

func (r Request) validate() error {
	n := 0
	for _, set := range []bool{r.Count != 0, len(r.UUIDs) > 0, len(r.Indices) > 0, r.All} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return fmt.Errorf("%w: no selector: set count, uuids, indices or all", ErrInvalidRequest)
	case n > 1:
		return fmt.Errorf("%w: set only one of count, uuids, indices and all", ErrInvalidRequest)
	case r.Count < 0:
		return fmt.Errorf("%w: negative count %d", ErrInvalidRequest, r.Count)
	case r.Wait < 0:
		return fmt.Errorf("%w: negative wait %s", ErrInvalidRequest, r.Wait)
	}
	if dup, ok := firstDup(r.UUIDs); ok {
		return fmt.Errorf("%w: %s asked for twice", ErrInvalidRequest, dup)
	}
	if dup, ok := firstDup(r.Indices); ok {
		return fmt.Errorf("%w: index %d asked for twice", ErrInvalidRequest, dup)
	}
	return nil
}

func firstDup[T comparable](xs []T) (T, bool) {
	seen := make(map[T]bool, len(xs))
	for _, x := range xs {
		if seen[x] {
			return x, true
		}
		seen[x] = true
	}
	var zero T
	return zero, false
}

// Allocator leases devices to jobs, each to one job at a time, keyed by UUID.
type Allocator struct {
	m      *Manager
	whole  []Device          // GPUs not in MIG mode, in index order
	byUUID map[string]Device // every leasable device: whole GPUs and MIG instances
	parent map[string]bool   // UUIDs of GPUs in MIG mode

	mu       sync.Mutex
	leasedBy map[string]*Lease // UUID -> holder
	released chan struct{}     // closed, and replaced, whenever a lease ends
}

// NewAllocator leases the devices m found.
func NewAllocator(m *Manager) *Allocator {
	a := &Allocator{
		m:        m,
		byUUID:   make(map[string]Device),
		parent:   make(map[string]bool),
		leasedBy: make(map[string]*Lease),
		released: make(chan struct{}),
	}
	for _, d := range m.Devices() {
		if len(d.MIG) > 0 {
			a.parent[d.UUID] = true
			for _, mig := range d.MIG {
				a.byUUID[mig.UUID] = mig
			}
			continue
		}
		a.whole = append(a.whole, d)
		a.byUUID[d.UUID] = d
	}
	return a
}

// Acquire leases the devices req asks for to jobID. A request that can
// never be met fails at once; one whose devices are busy fails with
// ErrUnavailable, after waiting up to req.Wait (and no longer than ctx) for
// other leases to end. Call Release on the lease when the job ends.
func (a *Allocator) Acquire(ctx context.Context, jobID string, req Request) (*Lease, error) {
	if jobID == "" {
		return nil, fmt.Errorf("%w: empty job id", ErrInvalidRequest)
	}
	if err := req.validate(); err != nil {
		return nil, err
	}
	if len(a.byUUID) == 0 {
		return nil, ErrNoGPUs
	}
	named, err := a.resolve(req)
	if err != nil {
		return nil, err
	}
	if req.Wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Wait)
		defer cancel()
	}
	for {
		a.mu.Lock()
		devs, busy := a.pick(req, named)
		if busy == nil {
			l := &Lease{JobID: jobID, Devices: devs, a: a}
			for _, d := range devs {
				a.leasedBy[d.UUID] = l
			}
			a.mu.Unlock()
			return l, nil
		}
		released := a.released
		a.mu.Unlock()

		if req.Wait == 0 {
			return nil, busy
		}
		select {
		case <-released:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (waited): %w", busy, ctx.Err())
		}
	}
}

// resolve turns UUIDs and indices into devices, failing on those that do
// not exist or cannot be leased, and rejects counts the host can never meet.
func (a *Allocator) resolve(req Request) ([]Device, error) {
	var out []Device
	for _, u := range req.UUIDs {
		if a.parent[u] {
			return nil, fmt.Errorf("%w: %s is in MIG mode: ask for its MIG instances", ErrInvalidRequest, u)
		}
		d, ok := a.byUUID[u]
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrUnknownDevice, u)
		}
		out = append(out, d)
	}
	for _, i := range req.Indices {
		j := slices.IndexFunc(a.m.devices, func(d Device) bool { return d.Index == i })
		switch {
		case j < 0:
			return nil, fmt.Errorf("%w: index %d", ErrUnknownDevice, i)
		case a.parent[a.m.devices[j].UUID]:
			return nil, fmt.Errorf("%w: GPU %d is in MIG mode: ask for its MIG instances", ErrInvalidRequest, i)
		}
		out = append(out, a.byUUID[a.m.devices[j].UUID])
	}
	if req.Count > len(a.whole) {
		return nil, fmt.Errorf("%w: asks for %d GPUs, the host has %d not in MIG mode", ErrInvalidRequest, req.Count, len(a.whole))
	}
	if req.All && len(a.whole) == 0 {
		return nil, fmt.Errorf("%w: all GPUs asked for, but every GPU is in MIG mode", ErrInvalidRequest)
	}
	return out, nil
}

// pick chooses the devices for req under a.mu, or says why it cannot yet.
func (a *Allocator) pick(req Request, named []Device) ([]Device, error) {
	free := func(d Device) bool { return a.leasedBy[d.UUID] == nil }
	switch {
	case req.Count > 0:
		var devs []Device
		for _, d := range a.whole {
			if free(d) {
				devs = append(devs, d)
			}
			if len(devs) == req.Count {
				return devs, nil
			}
		}
		return nil, fmt.Errorf("%w: %d GPUs asked for, %d free", ErrUnavailable, req.Count, len(devs))
	case req.All:
		named = a.whole
	}
	var busy []error
	for _, d := range named {
		if !free(d) {
			busy = append(busy, fmt.Errorf("%w: %s is leased", ErrUnavailable, d.UUID))
		}
	}
	if len(busy) > 0 {
		return nil, errors.Join(busy...)
	}
	return slices.Clone(named), nil
}

// Status is a device and the job holding it ("" when free).
type Status struct {
	Device
	LeasedBy string
}

// List returns every leasable device: whole GPUs in index order, then MIG
// instances by parent index.
func (a *Allocator) List() []Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Status
	add := func(d Device) {
		s := Status{Device: d}
		if l := a.leasedBy[d.UUID]; l != nil {
			s.LeasedBy = l.JobID
		}
		out = append(out, s)
	}
	for _, d := range a.whole {
		add(d)
	}
	for _, d := range a.m.devices {
		for _, mig := range d.MIG {
			add(mig)
		}
	}
	return out
}

// Lease is one job's exclusive hold on some devices.
type Lease struct {
	JobID   string
	Devices []Device // in the order CUDA will number them from 0

	a    *Allocator
	once sync.Once
}

// UUIDs returns the leased devices' UUIDs, in order.
func (l *Lease) UUIDs() []string {
	if l == nil {
		return nil
	}
	out := make([]string, len(l.Devices))
	for i, d := range l.Devices {
		out[i] = d.UUID
	}
	return out
}

// Release gives the devices back and wakes waiting requests. It is safe to
// call more than once, and on a nil Lease, so it can be deferred on every
// path a job ends by.
func (l *Lease) Release() {
	if l == nil {
		return
	}
	l.once.Do(func() {
		a := l.a
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, d := range l.Devices {
			if a.leasedBy[d.UUID] == l {
				delete(a.leasedBy, d.UUID)
			}
		}
		close(a.released)
		a.released = make(chan struct{})
	})
}
