package gpu

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestAcquireSelects(t *testing.T) {
	srv := dgx(t)
	u := uuidsOf(srv)
	tests := []struct {
		name string
		req  Request
		want []string
	}{
		{"count", Request{Count: 3}, u[:3]},
		{"uuids in asked order", Request{UUIDs: []string{u[5], u[2]}}, []string{u[5], u[2]}},
		{"indices in asked order", Request{Indices: []int{7, 0}}, []string{u[7], u[0]}},
		{"all", Request{All: true}, u},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAllocator(New(srv, quiet))
			l, err := a.Acquire(t.Context(), "job1", tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if got := l.UUIDs(); !slices.Equal(got, tt.want) {
				t.Errorf("leased %v, want %v", got, tt.want)
			}
			for _, s := range a.List() {
				if leased := slices.Contains(tt.want, s.UUID); leased != (s.LeasedBy == "job1") {
					t.Errorf("List: %s leased by %q", s.UUID, s.LeasedBy)
				}
			}
			l.Release()
			for _, s := range a.List() {
				if s.LeasedBy != "" {
					t.Errorf("after Release, %s leased by %q", s.UUID, s.LeasedBy)
				}
			}
		})
	}
}

func TestAcquireCountSkipsBusy(t *testing.T) {
	srv := dgx(t)
	u := uuidsOf(srv)
	a := NewAllocator(New(srv, quiet))
	if _, err := a.Acquire(t.Context(), "a", Request{UUIDs: []string{u[0], u[2]}}); err != nil {
		t.Fatal(err)
	}
	l, err := a.Acquire(t.Context(), "b", Request{Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := l.UUIDs(), []string{u[1], u[3]}; !slices.Equal(got, want) {
		t.Errorf("leased %v, want %v", got, want)
	}
}

func TestAcquireErrors(t *testing.T) {
	srv := dgx(t)
	u := uuidsOf(srv)
	a := NewAllocator(New(srv, quiet))
	if _, err := a.Acquire(t.Context(), "holder", Request{UUIDs: []string{u[0]}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		jobID string
		req   Request
		want  error
	}{
		{"no selector", "j", Request{}, ErrInvalidRequest},
		{"two selectors", "j", Request{Count: 1, All: true}, ErrInvalidRequest},
		{"uuids and indices", "j", Request{UUIDs: []string{u[1]}, Indices: []int{1}}, ErrInvalidRequest},
		{"negative count", "j", Request{Count: -1}, ErrInvalidRequest},
		{"negative wait", "j", Request{Count: 1, Wait: -time.Second}, ErrInvalidRequest},
		{"duplicate uuid", "j", Request{UUIDs: []string{u[1], u[1]}}, ErrInvalidRequest},
		{"duplicate index", "j", Request{Indices: []int{1, 1}}, ErrInvalidRequest},
		{"more than the host has", "j", Request{Count: 9, Wait: time.Hour}, ErrInvalidRequest},
		{"empty job id", "", Request{Count: 1}, ErrInvalidRequest},
		{"unknown uuid", "j", Request{UUIDs: []string{"GPU-nope"}}, ErrUnknownDevice},
		{"unknown index", "j", Request{Indices: []int{8}}, ErrUnknownDevice},
		{"negative index", "j", Request{Indices: []int{-1}}, ErrUnknownDevice},
		{"busy uuid", "j", Request{UUIDs: []string{u[1], u[0]}}, ErrUnavailable},
		{"busy index", "j", Request{Indices: []int{0}}, ErrUnavailable},
		{"busy count", "j", Request{Count: 8}, ErrUnavailable},
		{"busy all", "j", Request{All: true}, ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := a.Acquire(t.Context(), tt.jobID, tt.req)
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if l != nil {
				t.Errorf("got a lease %v with an error", l.UUIDs())
			}
		})
	}
	// A failed request leases nothing, not even the free part of it.
	if l, err := a.Acquire(t.Context(), "j", Request{Count: 7}); err != nil {
		t.Errorf("the 7 free GPUs: %v", err)
	} else if slices.Contains(l.UUIDs(), u[0]) {
		t.Errorf("leased the busy GPU: %v", l.UUIDs())
	}
}

func TestAcquireMIG(t *testing.T) {
	srv := dgx(t)
	u := uuidsOf(srv)
	migs := withMIG(t, srv, 7, 2)
	a := NewAllocator(New(srv, quiet))

	for name, req := range map[string]Request{
		"count over whole GPUs": {Count: 8},
		"MIG parent by uuid":    {UUIDs: []string{u[7]}},
		"MIG parent by index":   {Indices: []int{7}},
	} {
		if _, err := a.Acquire(t.Context(), "j", req); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("%s: err = %v, want ErrInvalidRequest", name, err)
		}
	}

	all, err := a.Acquire(t.Context(), "all", Request{All: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := all.UUIDs(); !slices.Equal(got, u[:7]) {
		t.Errorf("all = %v, want the 7 GPUs not in MIG mode", got)
	}
	mig, err := a.Acquire(t.Context(), "mig", Request{UUIDs: []string{migs[1]}})
	if err != nil {
		t.Fatal(err)
	}
	if d := mig.Devices[0]; d.UUID != migs[1] || d.ParentUUID != u[7] {
		t.Errorf("leased %+v", d)
	}
	if _, err := a.Acquire(t.Context(), "j", Request{UUIDs: []string{migs[1]}}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("second lease of a MIG instance: %v", err)
	}
	if _, err := a.Acquire(t.Context(), "j", Request{UUIDs: []string{migs[0]}}); err != nil {
		t.Errorf("the other MIG instance of the same GPU: %v", err)
	}
	if n := len(a.List()); n != 9 {
		t.Errorf("List has %d entries, want 7 GPUs + 2 MIG", n)
	}
}

func TestAcquireWaitsForRelease(t *testing.T) {
	a := NewAllocator(New(dgx(t), quiet))
	all, err := a.Acquire(t.Context(), "all", Request{All: true})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		l   *Lease
		err error
	}
	done := make(chan result)
	go func() {
		l, err := a.Acquire(t.Context(), "waiter", Request{Count: 2, Wait: time.Minute})
		done <- result{l, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("Acquire returned while every GPU was leased: %v", r.err)
	case <-time.After(50 * time.Millisecond):
	}
	all.Release()
	select {
	case r := <-done:
		if r.err != nil || len(r.l.Devices) != 2 {
			t.Fatalf("after Release: %v, %v", r.l, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Release did not wake the waiting Acquire")
	}
}

func TestAcquireWaitIsBounded(t *testing.T) {
	srv := dgx(t)
	a := NewAllocator(New(srv, quiet))
	if _, err := a.Acquire(t.Context(), "all", Request{All: true}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := a.Acquire(t.Context(), "j", Request{Count: 1, Wait: 50 * time.Millisecond})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want ErrUnavailable after the deadline", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("gave up after %s, before the 50ms wait", d)
	}

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(20*time.Millisecond, cancel)
	_, err = a.Acquire(ctx, "j", Request{UUIDs: uuidsOf(srv)[:1], Wait: time.Hour})
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want ErrUnavailable and context.Canceled", err)
	}
}

func TestReleaseIdempotent(t *testing.T) {
	srv := dgx(t)
	a := NewAllocator(New(srv, quiet))
	l1, err := a.Acquire(t.Context(), "one", Request{Indices: []int{0}})
	if err != nil {
		t.Fatal(err)
	}
	l1.Release()
	l2, err := a.Acquire(t.Context(), "two", Request{Indices: []int{0}})
	if err != nil {
		t.Fatal(err)
	}
	l1.Release() // must not free job two's GPU
	if _, err := a.Acquire(t.Context(), "three", Request{Indices: []int{0}}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("a stale Release freed another job's GPU: %v", err)
	}
	l2.Release()
	var nilLease *Lease
	nilLease.Release()
}

// Many jobs lease and release at once; no GPU may ever be held twice.
// Run with -race.
func TestAcquireConcurrent(t *testing.T) {
	srv := dgx(t)
	migs := withMIG(t, srv, 7, 3)
	a := NewAllocator(New(srv, quiet))
	var (
		mu      sync.Mutex
		holders = make(map[string]string)
		wg      sync.WaitGroup
	)
	for w := range 32 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range 40 {
				job := fmt.Sprintf("w%d-%d", w, i)
				req := Request{Count: 1 + r.IntN(3), Wait: time.Second}
				switch r.IntN(4) {
				case 0:
					req = Request{UUIDs: []string{migs[r.IntN(len(migs))]}, Wait: time.Second}
				case 1:
					req = Request{Indices: []int{r.IntN(7)}, Wait: time.Second}
				}
				l, err := a.Acquire(t.Context(), job, req)
				if errors.Is(err, ErrUnavailable) {
					continue // starved for a second: allowed, not a bug
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, u := range l.UUIDs() {
					if h, ok := holders[u]; ok {
						t.Errorf("%s leased to %s and %s", u, h, job)
					}
					holders[u] = job
				}
				mu.Unlock()
				time.Sleep(time.Duration(r.IntN(200)) * time.Microsecond)
				mu.Lock()
				for _, u := range l.UUIDs() {
					delete(holders, u)
				}
				mu.Unlock()
				l.Release()
				if r.IntN(2) == 0 {
					l.Release()
				}
			}
		})
	}
	wg.Wait()
	for _, s := range a.List() {
		if s.LeasedBy != "" {
			t.Errorf("%s still leased by %s", s.UUID, s.LeasedBy)
		}
	}
}
