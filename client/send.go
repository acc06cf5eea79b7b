package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cimgo/cim/broker/wire"
)

// Sending. Every message gets a client message id: the ids start at the
// clock's nanoseconds when the client is made and count up, so they do not
// repeat across restarts of the process, and the server can drop a
// message sent again after a reconnect by (sender, id). A send is pending
// until the server has answered each of its messages; while it is, the
// client sends it again on every new connection (QoS 1), in id order,
// before anything newer.

// Sent is a send in flight: a future of its acks.
type Sent struct {
	c     *Client
	first uint64 // client message id of the first message
	qos0  bool
	frame []byte // the encoded Send, for sending again
	cb    func([]Ack, error)
	done  chan struct{}

	// Guarded by c.mu:
	conn     *conn // where it was last written; nil: not yet
	acks     []Ack
	left     int
	finished bool
	err      error
}

// Done is closed when every message of the send has been answered or the
// send has failed.
func (s *Sent) Done() <-chan struct{} { return s.done }

// Wait waits for Done or for ctx. It returns the acks (one per message, in
// order) and the send's error: nil if every message was delivered or
// routed; ErrOffline (7000) if all were accepted and some were stored for
// an offline receiver (see Accepted); otherwise the first refusal (a
// wire.Code), ErrClosed, ErrFailed, ErrConnectionLost (QoS 0), or ctx's
// error (the send goes on: it may still be delivered).
func (s *Sent) Wait(ctx context.Context) ([]Ack, error) {
	select {
	case <-s.done:
		return s.Result()
	case <-ctx.Done():
		return nil, fmt.Errorf("client: waiting for the ack: %w", ctx.Err())
	}
}

// Result is Wait's answer once Done is closed (before, it is nil,
// ErrPending).
func (s *Sent) Result() ([]Ack, error) {
	select {
	case <-s.done:
	default:
		return nil, ErrPending
	}
	return s.acks, s.err
}

// ErrPending: Result was called before Done.
var ErrPending = errors.New("client: send still pending")

// finish completes the send (once): err, or the acks' verdict.
func (s *Sent) finish(err error) {
	c := s.c
	c.mu.Lock()
	if s.finished {
		c.mu.Unlock()
		return
	}
	s.finished = true
	if err == nil {
		err = verdict(s.acks)
	}
	s.err = err
	acks := s.acks
	if cb := s.cb; cb != nil {
		c.ev.push(func() { cb(acks, err) })
	}
	c.mu.Unlock()
	close(s.done)
	<-c.slots
}

// verdict sums up a send's acks: the first refusal, else ErrOffline if
// any message was stored, else nil.
func verdict(acks []Ack) error {
	stored := false
	for _, a := range acks {
		switch a.Code {
		case wire.CodeOK:
		case wire.CodeOffline:
			stored = true
		default:
			if a.Text != "" {
				return fmt.Errorf("client: message %d refused: %s: %w", a.ID, a.Text, a.Code)
			}
			return a.Code
		}
	}
	if stored {
		return ErrOffline
	}
	return nil
}

// Send sends body to one target at QoS 1 and waits for the server's ack.
// An error of ErrOffline means the message was stored for an offline
// receiver: it is not lost (see Accepted).
func (c *Client) Send(ctx context.Context, to Target, body []byte) (Ack, error) {
	acks, err := c.Publish(ctx, Publish{To: to, Body: body})
	if len(acks) == 1 {
		return acks[0], err
	}
	return Ack{}, err
}

// Publish sends p and waits for every ack (see Sent.Wait for the error).
func (c *Client) Publish(ctx context.Context, p Publish) ([]Ack, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	s, err := c.publish(ctx, p, nil)
	if err != nil {
		return nil, err
	}
	return s.Wait(ctx)
}

// PublishAsync sends p without waiting: done (if not nil) is called with
// the acks from the client's callback goroutine, and the returned Sent can
// be waited on. It blocks only while MaxInflight sends are unacknowledged.
// Sent while the client reconnects, p is sent once a connection is Ready.
// The error is an immediate refusal: a bad Publish or a closed client.
// p's bytes are copied before it returns.
func (c *Client) PublishAsync(p Publish, done func([]Ack, error)) (*Sent, error) {
	return c.publish(c.stopCtx, p, done)
}

func checkPublish(p *Publish) error {
	switch t := p.To; {
	case t.Kind == wire.KindUser && t.User == 0:
		return fmt.Errorf("client: user 0: %w", wire.CodeBadArgument)
	case (t.Kind == wire.KindGroup || t.Kind == wire.KindTopic) && t.Name == "":
		return fmt.Errorf("client: %v without a name: %w", t.Kind, wire.CodeBadArgument)
	case t.Kind < wire.KindUser || t.Kind > wire.KindAll:
		return fmt.Errorf("client: no target (use User, Group, Topic or Everyone): %w", wire.CodeBadArgument)
	case t.Kind == wire.KindTopic && strings.ContainsAny(t.Name, "+#"):
		return fmt.Errorf("client: topic %q has a wildcard: %w", t.Name, wire.CodeBadTopic)
	case len(p.Body) > 0 && len(p.Batch) > 0:
		return fmt.Errorf("client: Body and Batch both set: %w", wire.CodeBadArgument)
	case len(p.Body) == 0 && len(p.Batch) == 0:
		return fmt.Errorf("client: nothing to send: %w", wire.CodeEmptyBody)
	case p.Delay < 0:
		return fmt.Errorf("client: negative delay: %w", wire.CodeBadArgument)
	}
	for i, b := range p.Batch {
		if len(b) == 0 {
			return fmt.Errorf("client: batch message %d is empty: %w", i, wire.CodeEmptyBody)
		}
	}
	return nil
}

func (c *Client) publish(ctx context.Context, p Publish, done func([]Ack, error)) (*Sent, error) {
	if err := checkPublish(&p); err != nil {
		return nil, err
	}
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		if c.stopCtx.Err() != nil {
			return nil, c.closedErr()
		}
		return nil, fmt.Errorf("client: waiting for an in-flight slot: %w", ctx.Err())
	case <-c.stopCtx.Done():
		return nil, c.closedErr()
	}
	n := 1
	if len(p.Batch) > 0 {
		n = len(p.Batch)
	}
	first := c.nextID.Add(uint64(n)) - uint64(n) + 1
	w := wire.Send{ID: first, Target: p.To, QoS: 1, Delay: uint64(p.Delay / time.Millisecond),
		Body: p.Body, Batch: p.Batch}
	if p.AtMostOnce {
		w.QoS = 0
	}
	frame, err := wire.Append(nil, &w)
	if err != nil {
		<-c.slots
		return nil, fmt.Errorf("client: %w", err)
	}
	if max := c.maxFrame(); max > 0 && len(frame) > max {
		<-c.slots
		return nil, fmt.Errorf("client: a send of %d bytes is over the server's maximum of %d: %w", len(frame), max, wire.CodeFrameTooLarge)
	}
	s := &Sent{c: c, first: first, qos0: p.AtMostOnce, frame: frame, cb: done, done: make(chan struct{}),
		acks: make([]Ack, n), left: n}
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		<-c.slots
		return nil, c.closedErr()
	}
	for i := 0; i < n; i++ {
		s.acks[i].ID = first + uint64(i)
		c.mu.pending[first+uint64(i)] = s
	}
	if cn := c.mu.conn; cn != nil && cn.write(frame) {
		s.conn = cn
	}
	c.mu.Unlock()
	return s, nil
}

// maxFrame is the server's announced frame limit (0: unknown).
func (c *Client) maxFrame() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.conn == nil {
		return 0
	}
	return c.mu.conn.maxFrame
}

// acked records a SendAck, on the reader goroutine.
func (c *Client) acked(a *wire.SendAck) {
	c.mu.Lock()
	s := c.mu.pending[a.ID]
	if s == nil { // a duplicate ack, or one for a send already failed
		c.mu.Unlock()
		c.log.Debug("ack for no pending message", "id", a.ID, "code", int(a.Code))
		return
	}
	delete(c.mu.pending, a.ID)
	ack := &s.acks[a.ID-s.first]
	ack.MsgID, ack.Code, ack.Text = a.MsgID, a.Code, strings.Clone(a.Text)
	if a.Time != 0 {
		ack.Time = time.UnixMilli(a.Time)
	}
	s.left--
	last := s.left == 0
	c.mu.Unlock()
	if last {
		s.finish(nil)
	}
}

// Flush waits until every send made so far has been answered (or failed),
// or ctx ends.
func (c *Client) Flush(ctx context.Context) error {
	c.mu.Lock()
	pend := c.pendingLocked()
	c.mu.Unlock()
	for _, s := range pend {
		select {
		case <-s.done:
		case <-ctx.Done():
			return fmt.Errorf("client: flush: %w", ctx.Err())
		}
	}
	return nil
}
