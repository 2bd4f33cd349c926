package jobs

import (
	"sync"

	"github.com/sandboxd/sandboxd/sandbox"
)

// EventLog keeps a job's events (sandbox.Request.Events) so that readers can follow
// them at their own pace without ever blocking the engine: Add only appends. It holds
// at most what the engine sends, which the output caps bound (two streams of
// output_limit bytes, plus stage markers). A reader that joins late gets every event
// from the start.
type EventLog struct {
	mu     sync.Mutex
	events []sandbox.Event
	closed bool
	wake   chan struct{}
}

// NewEventLog returns an empty, open log.
func NewEventLog() *EventLog { return &EventLog{wake: make(chan struct{})} }

// Add appends ev; after Close it is dropped.
func (l *EventLog) Add(ev sandbox.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.events = append(l.events, ev)
	close(l.wake)
	l.wake = make(chan struct{})
}

// Close marks the end: no more events will come.
func (l *EventLog) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.wake)
	}
}

// Next returns the events from index i on, whether the log is closed (then they are
// the last), and a channel that is closed when there is more to read.
func (l *EventLog) Next(i int) (events []sandbox.Event, closed bool, more <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i < len(l.events) {
		events = l.events[i:len(l.events):len(l.events)]
	}
	return events, l.closed, l.wake
}
