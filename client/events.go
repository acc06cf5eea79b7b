package client

import "sync"

// events runs the client's callbacks one at a time, in the order they were
// queued, on one goroutine. Queueing never blocks, so the goroutines that
// read from the server and keep the connection alive never wait for a
// callback, and a callback may make a synchronous call that needs them.
type events struct {
	mu struct {
		sync.Mutex
		q      []func()
		msgs   int  // queued QoS 0 messages (bounded by Options.MessageBuffer)
		closed bool // no more pushes; the loop ends when q is empty
	}
	wake chan struct{}
	done chan struct{} // closed when the loop has ended
}

func newEvents() *events {
	e := &events{wake: make(chan struct{}, 1), done: make(chan struct{})}
	go e.loop()
	return e
}

// push queues fn; false once the queue is closed. Safe from any goroutine.
func (e *events) push(fn func()) bool {
	e.mu.Lock()
	if e.mu.closed {
		e.mu.Unlock()
		return false
	}
	e.mu.q = append(e.mu.q, fn)
	e.mu.Unlock()
	e.signal()
	return true
}

// pushMessage queues a QoS 0 message unless max of them are already
// waiting.
func (e *events) pushMessage(fn func(), max int) bool {
	e.mu.Lock()
	if e.mu.closed || e.mu.msgs >= max {
		e.mu.Unlock()
		return false
	}
	e.mu.msgs++
	e.mu.q = append(e.mu.q, func() {
		e.mu.Lock()
		e.mu.msgs--
		e.mu.Unlock()
		fn()
	})
	e.mu.Unlock()
	e.signal()
	return true
}

func (e *events) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// close lets the loop end once what is queued has run. Idempotent.
func (e *events) close() {
	e.mu.Lock()
	e.mu.closed = true
	e.mu.Unlock()
	e.signal()
}

func (e *events) loop() {
	defer close(e.done)
	var batch []func()
	for {
		e.mu.Lock()
		batch, e.mu.q = e.mu.q, batch[:0]
		closed := e.mu.closed
		e.mu.Unlock()
		for i, fn := range batch {
			fn()
			batch[i] = nil
		}
		if len(batch) == 0 {
			if closed {
				return
			}
			<-e.wake
		}
	}
}
