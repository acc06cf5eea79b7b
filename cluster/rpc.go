package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Reply answers one request received by a RequestDelegate. It is a small
// value, safe to copy and to use from any goroutine; answer once.
type Reply struct {
	l  *link
	id uint64
}

// Respond sends body as the answer. The cluster holds body until it is
// written; the caller must not modify it afterwards. Answers are not
// bounded by the link's queue limits (they let the peer make progress),
// but fail with ErrPeerGone once the peer left.
func (r Reply) Respond(body []byte) error {
	if r.l == nil {
		return ErrUnknownPeer
	}
	if len(body)+64 > r.l.c.opts.Link.MaxFrameSize {
		_ = r.Fail(fmt.Errorf("response of %d bytes over the frame limit", len(body)))
		return ErrTooLarge
	}
	return r.l.enqueue(outFrame{typ: frameResponse, id: r.id, body: body, size: len(body) + 16}, false, true)
}

// Fail answers with an error; the requester gets a *RemoteError with its
// text.
func (r Reply) Fail(err error) error {
	if r.l == nil {
		return ErrUnknownPeer
	}
	msg := "error"
	if err != nil {
		msg = err.Error()
	}
	return r.l.enqueue(outFrame{typ: frameResponse, id: r.id, failed: true, errMsg: msg, size: len(msg) + 16}, false, true)
}

// Request sends body to peer's RequestDelegate and calls done exactly once
// with the answer or an error: a *RemoteError, ErrTimeout (none within
// timeout; 0 means Link.RequestTimeout), ErrLinkDown (written, then the
// connection broke), ErrPeerGone or ErrClosed. It never blocks; done runs
// on the link's reader goroutine (answers), a timer goroutine (timeouts)
// or the event goroutine (failures), and must not block. An error returned
// by Request itself (ErrUnknownPeer, ErrSelf, ErrQueueFull, ErrClosed)
// means done will not be called. The cluster holds body until it is
// written.
func (c *Cluster) Request(peer string, body []byte, timeout time.Duration, done func(resp []byte, err error)) error {
	if done == nil {
		return errors.New("cluster: Request needs a done func")
	}
	l, err := c.linkFor(peer)
	if err != nil {
		return err
	}
	if timeout <= 0 {
		timeout = c.opts.Link.RequestTimeout
	}
	if len(body)+64 > c.opts.Link.MaxFrameSize {
		return ErrTooLarge
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrPeerGone
	}
	l.nextID++
	id := l.nextID
	cl := &call{done: done}
	l.calls[id] = cl
	cl.timer = time.AfterFunc(timeout, func() {
		l.mu.Lock()
		if l.calls[id] != cl {
			l.mu.Unlock()
			return
		}
		delete(l.calls, id)
		l.mu.Unlock()
		l.st.timeouts.Add(1)
		done(nil, ErrTimeout)
	})
	l.mu.Unlock()
	if err := l.enqueue(outFrame{typ: frameRequest, id: id, body: body, size: len(body) + 16}, false, false); err != nil {
		l.mu.Lock()
		delete(l.calls, id)
		l.mu.Unlock()
		cl.timer.Stop()
		return err
	}
	l.st.requests.Add(1)
	return nil
}

// Call is Request for goroutines that may block (never an event loop): it
// waits for the answer, the context, or the timeout (the context's
// deadline, else Link.RequestTimeout).
func (c *Cluster) Call(ctx context.Context, peer string, body []byte) ([]byte, error) {
	timeout := c.opts.Link.RequestTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return nil, context.DeadlineExceeded
		}
	}
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	if err := c.Request(peer, body, timeout, func(b []byte, err error) { ch <- result{b, err} }); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r.b, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
