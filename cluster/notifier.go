package cluster

import "sync"

// notifier runs callbacks in order on one goroutine (the "event
// goroutine"). Producers never block: memberlist calls us with its locks
// held, and ownership changes are computed under our locks, so delegate
// calls are queued here and made later with nothing held.
type notifier struct {
	mu     sync.Mutex
	q      []func() // REQUIRES: mu held
	closed bool     // REQUIRES: mu held
	wake   chan struct{}
	done   chan struct{}
}

func newNotifier() *notifier {
	n := &notifier{wake: make(chan struct{}, 1), done: make(chan struct{})}
	go n.run()
	return n
}

// post queues f; after stop it is dropped.
func (n *notifier) post(f func()) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.q = append(n.q, f)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *notifier) run() {
	defer close(n.done)
	var batch []func()
	for {
		n.mu.Lock()
		batch, n.q = n.q, batch[:0]
		closed := n.closed
		n.mu.Unlock()
		for i, f := range batch {
			f()
			batch[i] = nil
		}
		if closed && len(batch) == 0 {
			return
		}
		if len(batch) == 0 {
			<-n.wake
		}
	}
}

// stop runs what is queued, then ends the goroutine and waits for it.
func (n *notifier) stop() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
	<-n.done
}
