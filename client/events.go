package client

import "sync"

// eventQueue delivers a consumer's events to Config.OnEvent in order, from
// one goroutine, so that a slow OnEvent never holds the consumer's lock.
// push may be called under that lock: the order of pushes is the order of
// delivery.
type eventQueue struct {
	deliver func(Event) // nil: events are dropped

	mu     sync.Mutex
	events []Event
	wake   chan struct{}
	out    chan struct{} // closed once every event was delivered
}

func newEventQueue(deliver func(Event)) *eventQueue {
	return &eventQueue{deliver: deliver, wake: make(chan struct{}, 1), out: make(chan struct{})}
}

func (q *eventQueue) push(e Event) {
	if q.deliver == nil {
		return
	}
	q.mu.Lock()
	q.events = append(q.events, e)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// flush delivers the queued events; it reports whether there were any.
func (q *eventQueue) flush() bool {
	q.mu.Lock()
	evs := q.events
	q.events = nil
	q.mu.Unlock()
	for _, e := range evs {
		q.deliver(e)
	}
	return len(evs) > 0
}

// run delivers events until done is closed; then it delivers what is
// queued, waits for settle (the handlers still returning, whose releases
// are events too), delivers those and closes out.
func (q *eventQueue) run(done <-chan struct{}, settle func()) {
	defer close(q.out)
	if q.deliver == nil {
		<-done
		settle()
		return
	}
	for {
		if q.flush() {
			continue
		}
		select {
		case <-q.wake:
		case <-done:
			q.flush()
			settle()
			q.flush()
			return
		}
	}
}

// delivered is closed once run delivered every event and returned.
func (q *eventQueue) delivered() <-chan struct{} { return q.out }
