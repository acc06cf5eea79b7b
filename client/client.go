package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cimgo/cim/broker/wire"
)

// Client is one user's connection to cim, kept up across losses. All its
// methods are safe for concurrent use. Clients share nothing: several in
// one process are independent.
type Client struct {
	opts Options
	log  *slog.Logger
	ev   *events
	// slots holds a token per send waiting for its ack (MaxInflight).
	slots chan struct{}
	// stopCtx is cancelled by Close and when the client fails; every wait
	// of the client watches it.
	stopCtx   context.Context
	cancelCtx context.CancelFunc
	wg        sync.WaitGroup // the run goroutine

	nextID  atomic.Uint64 // last client message id handed out
	nextReq atomic.Uint64 // last request id handed out
	dropped atomic.Uint64 // QoS 0 messages dropped for a full MessageBuffer

	recent recentIDs // QoS 1 message ids passed to OnMessage; callback goroutine only

	mu struct {
		sync.Mutex
		state   State
		conn    *conn         // the Ready connection; nil otherwise
		ready   chan struct{} // closed when a connection becomes Ready
		pending map[uint64]*Sent
		subs    map[string]struct{}
		info    Info
		token   string
		addrAt  int  // index into Options.Addrs of the next attempt
		closed  bool // Close was called or the client failed
		err     error
	}
}

// Info describes the current (or last) login.
type Info struct {
	UserID       uint64
	UserName     string
	Node         string        // the server node's name
	Addr         string        // the native address connected to
	Token        string        // what the client logs in with next time
	TokenExpires time.Time     // zero if the server did not say
	ServerTime   time.Time     // the server's clock at login
	Keepalive    time.Duration // as granted by the server
}

// Dial connects and logs in, retrying with backoff as Options say, and
// returns a Ready client, or the last attempt's error once RetryLimit
// attempts failed in a row, ctx ended, or the server refused the
// credentials (ErrAccountMismatch: no retry). The returned client keeps
// its connection up until Close.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	opts.Addrs = append([]string(nil), opts.Addrs...)
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	c := &Client{opts: opts, log: opts.Logger, slots: make(chan struct{}, opts.MaxInflight)}
	c.stopCtx, c.cancelCtx = context.WithCancel(context.Background())
	c.nextID.Store(uint64(time.Now().UnixNano()))
	c.mu.ready = make(chan struct{})
	c.mu.pending = make(map[uint64]*Sent)
	c.mu.subs = make(map[string]struct{})
	c.mu.info.UserID, c.mu.info.UserName = opts.UserID, opts.UserName
	c.mu.token = opts.Token
	c.ev = newEvents()

	c.mu.Lock()
	c.setStateLocked(Connecting)
	c.mu.Unlock()
	cn, err := c.connectRetrying(ctx)
	if err != nil {
		c.mu.Lock()
		c.mu.closed, c.mu.err = true, err
		c.setStateLocked(Failed)
		c.mu.Unlock()
		c.cancelCtx()
		c.ev.close()
		return nil, err
	}
	c.attach(cn)
	c.wg.Add(1)
	go c.run(cn)
	return c, nil
}

// setStateLocked moves to state s and queues the OnStateChange call.
// REQUIRES: c.mu held.
func (c *Client) setStateLocked(s State) {
	from := c.mu.state
	if from == s {
		return
	}
	c.mu.state = s
	c.log.Debug("state", "from", from, "to", s)
	if fn := c.opts.OnStateChange; fn != nil {
		c.ev.push(func() { fn(from, s) })
	}
}

// run keeps the client connected: it waits for the connection to end and
// reconnects, until Close or a failure.
func (c *Client) run(cn *conn) {
	defer c.wg.Done()
	for {
		select {
		case <-cn.done:
		case <-c.stopCtx.Done():
			cn.shutdown()
			t := time.NewTimer(time.Second) // bounded goodbye: flush, then close
			select {
			case <-cn.done:
			case <-t.C:
				cn.end(ErrClosed)
			}
			t.Stop()
			cn.wg.Wait()
			return
		}
		cn.wg.Wait()
		err := cn.err
		if !c.lost(cn) {
			return
		}
		if fatalLoss(err) {
			c.log.Warn("connection ended for good", "addr", cn.addr, "err", err)
			c.fail(err)
			return
		}
		c.log.Info("connection lost; reconnecting", "addr", cn.addr, "err", err)
		if wire.CodeOf(err) == wire.CodeShuttingDown {
			c.skipAddr(cn.addr) // that node is stopping: another one first
		}
		next, err := c.connectRetrying(c.stopCtx)
		if err != nil {
			if c.stopCtx.Err() == nil {
				c.fail(err)
			}
			return
		}
		if !c.attach(next) {
			next.wg.Wait()
			return
		}
		cn = next
	}
}

// skipAddr makes the next attempt go to the address after addr, when
// addr is the one Options.Addrs would try next (the one that worked last).
func (c *Client) skipAddr(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.opts.Addrs); n > 1 && c.opts.Addrs[c.mu.addrAt%n] == addr {
		c.mu.addrAt++
	}
}

// fatalLoss: losses after which reconnecting would be wrong.
func fatalLoss(err error) bool {
	switch wire.CodeOf(err) {
	case wire.CodeTakenOver, wire.CodeKicked, wire.CodeAccountMismatch, wire.CodeTokenExpired:
		return true
	}
	return false
}

// fatalLogin: login refusals that no retry can fix.
func fatalLogin(err error) bool {
	if errors.Is(err, ErrInvalidOptions) {
		return true
	}
	switch wire.CodeOf(err) {
	case wire.CodeAccountMismatch, wire.CodeTokenExpired, wire.CodeBadArgument,
		wire.CodeNameTooLong, wire.CodeDenied:
		return true
	}
	return false
}

// connectRetrying makes connection attempts with backoff until one works,
// RetryLimit fail in a row, a refusal is final, or ctx or the client ends.
func (c *Client) connectRetrying(ctx context.Context) (*conn, error) {
	var last error
	for failures := 0; ; {
		cn, err := c.attempt(ctx)
		if err == nil {
			return cn, nil
		}
		if c.stopCtx.Err() != nil {
			return nil, c.closedErr()
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("client: connecting: %w (last attempt: %w)", ctx.Err(), err)
		}
		if fatalLogin(err) {
			return nil, err
		}
		last = err
		failures++
		if lim := c.opts.RetryLimit; lim >= 0 && failures >= lim {
			return nil, fmt.Errorf("client: %d connection attempts failed: %w; last: %w", failures, wire.CodeReconnectFailed, last)
		}
		d := c.opts.Backoff.Delay(failures)
		c.log.Warn("connection attempt failed", "attempt", failures, "retry_in", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("client: connecting: %w (last attempt: %w)", ctx.Err(), last)
		case <-c.stopCtx.Done():
			t.Stop()
			return nil, c.closedErr()
		}
	}
}

// attempt is one connection attempt: find the address, connect, log in.
// A refused token is retried at once with the password, if there is one.
func (c *Client) attempt(ctx context.Context) (cn *conn, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ConnectTimeout)
	defer cancel()
	defer context.AfterFunc(c.stopCtx, cancel)()

	c.mu.Lock()
	id, name, token := c.mu.info.UserID, c.mu.info.UserName, c.mu.token
	c.mu.Unlock()
	if c.opts.Register && id == 0 {
		u, err := Register(ctx, c.opts.HTTPClient, c.opts.APIURL, name, c.opts.Password)
		if err != nil {
			return nil, err
		}
		id = u.ID
		c.mu.Lock()
		c.mu.info.UserID = id
		c.mu.Unlock()
	}
	var addr string
	if c.opts.APIURL != "" {
		a, err := Route(ctx, c.opts.HTTPClient, c.opts.APIURL, id, name)
		if err != nil {
			return nil, err
		}
		addr = a
	} else {
		c.mu.Lock()
		i := c.mu.addrAt % len(c.opts.Addrs)
		c.mu.addrAt = i + 1 // a failure moves on; a success comes back here
		c.mu.Unlock()
		addr = c.opts.Addrs[i]
		defer func() {
			if cn != nil { // next time, this address first again
				c.mu.Lock()
				c.mu.addrAt = i
				c.mu.Unlock()
			}
		}()
	}
	login := wire.Login{User: id, Name: name, Version: c.opts.Version,
		Keepalive: uint32(c.opts.Keepalive / time.Second)}
	if token != "" {
		login.Token = token
	} else {
		login.Password = c.opts.Password
	}
	cn, err = c.login(ctx, addr, &login)
	if err != nil && token != "" && c.opts.Password != "" &&
		(errors.Is(err, wire.CodeAccountMismatch) || errors.Is(err, wire.CodeTokenExpired)) {
		c.log.Info("token refused; logging in with the password", "addr", addr, "err", err)
		c.mu.Lock()
		c.mu.token = ""
		c.mu.Unlock()
		login.Token, login.Password = "", c.opts.Password
		cn, err = c.login(ctx, addr, &login)
	}
	return cn, err
}

// login connects to addr and logs in; the connection's goroutines are not
// started yet.
func (c *Client) login(ctx context.Context, addr string, login *wire.Login) (*conn, error) {
	var nc net.Conn
	var err error
	if c.opts.TLSConfig != nil {
		d := tls.Dialer{Config: c.opts.TLSConfig}
		nc, err = d.DialContext(ctx, "tcp", addr) // ServerName defaults to addr's host
	} else {
		var d net.Dialer
		nc, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("client: connecting to %s: %w", addr, err)
	}
	// The context's end interrupts the login's reads and writes.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	cn := newConn(c, nc, addr)
	frame, err := wire.Append(nil, login)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("client: login: %w", err)
	}
	if _, err := nc.Write(frame); err != nil {
		nc.Close()
		return nil, fmt.Errorf("client: sending login to %s: %w", addr, err)
	}
	var f wire.Frame
	for {
		err := cn.fr.next(&f, 0)
		if err != nil && wire.CodeOf(err) == wire.CodeUnknownFrame {
			continue
		}
		if err != nil {
			nc.Close()
			var ne net.Error
			if ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout() {
				cause := ctx.Err()
				if cause == nil {
					cause = context.DeadlineExceeded
				}
				return nil, fmt.Errorf("client: no login ack from %s within %v: %w", addr, c.opts.ConnectTimeout, cause)
			}
			return nil, readError(addr, err)
		}
		switch f.Type {
		case wire.TypeLoginAck:
		case wire.TypeKick:
			nc.Close()
			return nil, fmt.Errorf("client: %s: kicked at login: %s: %w", addr, f.Kick.Text, f.Kick.Code)
		case wire.TypeError:
			nc.Close()
			return nil, fmt.Errorf("client: %s: login: %s: %w", addr, f.Error.Text, f.Error.Code)
		case wire.TypePing:
			nc.Write(pong)
			continue
		default:
			nc.Close()
			return nil, fmt.Errorf("client: %s sent %v before the login ack: %w", addr, f.Type, ErrProtocol)
		}
		break
	}
	ack := f.LoginAck
	if ack.Code != wire.CodeOK {
		nc.Close()
		if ack.Code == 0 {
			return nil, fmt.Errorf("client: %s: login ack without a code: %w", addr, ErrProtocol)
		}
		return nil, fmt.Errorf("client: %s refused the login: %s: %w", addr, ack.Text, ack.Code)
	}
	nc.SetDeadline(time.Time{})
	cn.keepalive = time.Duration(ack.Keepalive) * time.Second
	if cn.keepalive <= 0 {
		cn.keepalive = c.opts.Keepalive
	}
	cn.pingEvery = max(cn.keepalive/3, 40*time.Millisecond)
	cn.maxFrame = int(ack.MaxFrame)
	cn.lastWrite.Store(time.Now().UnixNano())

	c.mu.Lock()
	info := &c.mu.info
	if ack.User != 0 {
		info.UserID = ack.User
	}
	cn.user = info.UserID
	if ack.Name != "" {
		info.UserName = ack.Name
	}
	if ack.Token != "" {
		c.mu.token = ack.Token
		info.TokenExpires = time.Time{}
		if ack.TokenExpires != 0 {
			info.TokenExpires = time.UnixMilli(ack.TokenExpires)
		}
	}
	info.Token = c.mu.token
	info.Node, info.Addr, info.Keepalive = ack.Node, addr, cn.keepalive
	info.ServerTime = time.Time{}
	if ack.Time != 0 {
		info.ServerTime = time.UnixMilli(ack.Time)
	}
	c.mu.Unlock()
	c.log.Info("logged in", "addr", addr, "node", ack.Node, "user", ack.User, "keepalive", cn.keepalive)
	return cn, nil
}

var pong, _ = wire.Append(nil, &wire.Pong{})

// attach makes a logged-in connection the current one: it restores the
// subscriptions, sends again what is unacknowledged (in id order, before
// anything new), and goes Ready. False if the client was closed meanwhile.
func (c *Client) attach(cn *conn) bool {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		cn.end(ErrClosed)
		return false
	}
	if len(c.mu.subs) > 0 {
		filters := make([]string, 0, len(c.mu.subs))
		for f := range c.mu.subs {
			filters = append(filters, f)
		}
		sort.Strings(filters)
		id := c.nextReq.Add(1)
		cn.register(id, func(r reply, err error) { c.logRefusedFilters("resubscribe", filters, r.codes, err) })
		frame, _ := wire.Append(nil, &wire.Subscribe{ID: id, Filters: filters, QoS: 1})
		cn.write(frame)
	}
	resend := c.pendingLocked()
	for _, s := range resend {
		s.conn = cn
		cn.write(s.frame)
	}
	if len(resend) > 0 {
		c.log.Info("sending unacknowledged messages again", "sends", len(resend))
	}
	c.mu.conn = cn
	c.setStateLocked(Ready)
	close(c.mu.ready)
	c.mu.Unlock()
	cn.start()
	return true
}

// pendingLocked lists the distinct pending sends in id order.
// REQUIRES: c.mu held.
func (c *Client) pendingLocked() []*Sent {
	seen := make(map[*Sent]bool, len(c.mu.pending))
	var out []*Sent
	for _, s := range c.mu.pending {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].first < out[j].first })
	return out
}

// lost handles the end of connection cn: state Reconnecting, and QoS 0
// sends written on it fail (they may or may not have arrived; sending
// them again could deliver them twice). False if the client is closed.
func (c *Client) lost(cn *conn) bool {
	c.mu.Lock()
	if c.mu.conn == cn {
		c.mu.conn = nil
	}
	if c.mu.closed {
		c.mu.Unlock()
		return false
	}
	c.setStateLocked(Reconnecting)
	c.mu.ready = make(chan struct{})
	var failed []*Sent
	for _, s := range c.pendingLocked() {
		if s.qos0 && s.conn == cn {
			c.removeLocked(s)
			failed = append(failed, s)
		}
	}
	c.mu.Unlock()
	for _, s := range failed {
		s.finish(fmt.Errorf("client: QoS 0 send of message %d: %w", s.first, ErrConnectionLost))
	}
	return true
}

// removeLocked forgets every id of s. REQUIRES: c.mu held.
func (c *Client) removeLocked(s *Sent) {
	for i := range s.acks {
		if c.mu.pending[s.first+uint64(i)] == s {
			delete(c.mu.pending, s.first+uint64(i))
		}
	}
}

// fail ends the client for good: state Failed, pending calls fail, OnFatal.
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return
	}
	c.mu.closed, c.mu.err = true, err
	c.setStateLocked(Failed)
	pend := c.pendingLocked()
	c.mu.pending = map[uint64]*Sent{}
	if fn := c.opts.OnFatal; fn != nil {
		c.ev.push(func() { fn(err) })
	}
	c.mu.Unlock()
	c.cancelCtx()
	for _, s := range pend {
		s.finish(fmt.Errorf("%w: %w", ErrFailed, err))
	}
	c.ev.close()
}

// closedErr is what calls on a closed or failed client return.
func (c *Client) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.err != nil {
		return fmt.Errorf("%w: %w", ErrFailed, c.mu.err)
	}
	return ErrClosed
}

// Close ends the client: it stops reconnecting, writes what is queued
// (for at most a second) and closes the connection. Pending sends and
// calls fail with ErrClosed. It waits for the client's network goroutines
// but not for its callbacks, so it may be called from one: callbacks
// already queued (including the change to Closed) still run, after which
// Done is closed. Close is idempotent and returns nil.
func (c *Client) Close() error {
	c.mu.Lock()
	var pend []*Sent
	if !c.mu.closed {
		c.mu.closed = true
		c.setStateLocked(Closed)
		pend = c.pendingLocked()
		c.mu.pending = map[uint64]*Sent{}
	}
	c.mu.Unlock()
	c.cancelCtx()
	c.wg.Wait()
	for _, s := range pend {
		s.finish(ErrClosed)
	}
	c.ev.close()
	return nil
}

// Done is closed when the client has stopped for good (Close or Failed)
// and its last callback has returned.
func (c *Client) Done() <-chan struct{} { return c.ev.done }

// State is the client's state now.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.state
}

// Err is why the client failed (state Failed), nil otherwise.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.err
}

// Info describes the current or last login.
func (c *Client) Info() Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.info
}

// Dropped counts QoS 0 messages dropped because MessageBuffer of them were
// waiting for OnMessage.
func (c *Client) Dropped() uint64 { return c.dropped.Load() }

// waitReady returns the Ready connection, waiting for one while the client
// (re)connects, until ctx ends or the client does.
func (c *Client) waitReady(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		if c.mu.closed {
			c.mu.Unlock()
			return nil, c.closedErr()
		}
		if cn := c.mu.conn; cn != nil {
			c.mu.Unlock()
			return cn, nil
		}
		ready := c.mu.ready
		c.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("client: waiting for a connection: %w", ctx.Err())
		case <-c.stopCtx.Done():
		}
	}
}

// withTimeout applies RequestTimeout to a context without a deadline.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.opts.RequestTimeout)
}

// handle acts on one frame from the server, on the reader goroutine. The
// frame aliases the read buffer: whatever outlives the call is copied. An
// error ends the connection.
func (c *Client) handle(cn *conn, f *wire.Frame) error {
	switch f.Type {
	case wire.TypeSendAck:
		c.acked(&f.SendAck)
	case wire.TypeDeliver:
		c.delivered(cn, &f.Deliver)
	case wire.TypePing:
		cn.write(pong)
	case wire.TypePong:
		// Hearing anything renews the read deadline; nothing else to do.
	case wire.TypeResponse:
		cn.answer(f.Response.ID, reply{resp: f.Response})
	case wire.TypeSubAck:
		cn.answer(f.SubAck.ID, reply{codes: f.SubAck.Codes})
	case wire.TypeUnsubAck:
		cn.answer(f.UnsubAck.ID, reply{codes: f.UnsubAck.Codes})
	case wire.TypeKick:
		c.log.Warn("kicked by the server", "addr", cn.addr, "code", int(f.Kick.Code), "reason", f.Kick.Code.String(), "text", f.Kick.Text)
		cn.kicked.Store(f.Kick.Code)
		return fmt.Errorf("client: %s: kicked: %w", cn.addr, f.Kick.Code)
	case wire.TypeError:
		c.log.Warn("error from the server", "addr", cn.addr, "code", int(f.Error.Code), "reason", f.Error.Code.String(), "text", f.Error.Text)
		if f.Error.Code.ClosesConnection() {
			cn.kicked.Store(f.Error.Code)
		}
	default:
		return fmt.Errorf("client: %s sent a %v frame: %w", cn.addr, f.Type, ErrProtocol)
	}
	return nil
}

// delivered queues a message for OnMessage, copied out of the read buffer.
// Decode has taken a missing time from the id; a private message without a
// receiver is for the user logged in on cn (wire's "Keys derived when
// absent").
func (c *Client) delivered(cn *conn, d *wire.Deliver) {
	m := &Message{
		ID: d.MsgID, From: d.From, FromName: strings.Clone(d.FromName),
		To:   wire.Target{Kind: d.Kind, User: d.User, Name: strings.Clone(d.Name)},
		Body: append([]byte(nil), d.Body...), QoS: d.QoS, Offline: d.Offline,
	}
	if m.To.Kind == wire.KindUser && m.To.User == 0 {
		m.To.User = cn.user
	}
	if d.Time != 0 {
		m.Time = time.UnixMilli(d.Time)
	}
	if m.QoS == 0 {
		if !c.ev.pushMessage(func() { c.dispatch(m) }, c.opts.MessageBuffer) {
			if n := c.dropped.Add(1); n&(n-1) == 0 { // log at 1, 2, 4, 8, ... drops
				c.log.Warn("QoS 0 message dropped: MessageBuffer is full", "dropped", n)
			}
		}
		return
	}
	c.ev.push(func() { c.dispatch(m) })
}

// dispatch passes a message to OnMessage and acknowledges a QoS 1 one
// afterwards, on the callback goroutine.
func (c *Client) dispatch(m *Message) {
	if m.QoS > 0 && m.ID != 0 && c.recent.has(m.ID) {
		c.ackDelivery(m.ID) // delivered again after a lost ack
		return
	}
	if fn := c.opts.OnMessage; fn != nil {
		fn(m)
	}
	if m.QoS > 0 {
		if m.ID != 0 {
			c.recent.add(m.ID)
		}
		c.ackDelivery(m.ID)
	}
}

// ackDelivery sends a DeliverAck on the current connection; without one
// the server delivers the message again after the next login.
func (c *Client) ackDelivery(id uint64) {
	c.mu.Lock()
	cn := c.mu.conn
	c.mu.Unlock()
	if cn == nil {
		return
	}
	frame, _ := wire.Append(nil, &wire.DeliverAck{MsgID: id})
	cn.write(frame)
}

// recentIDs remembers the last len(ring) message ids.
type recentIDs struct {
	ring [4096]uint64
	at   int
	set  map[uint64]struct{}
}

func (r *recentIDs) has(id uint64) bool {
	_, ok := r.set[id]
	return ok
}

func (r *recentIDs) add(id uint64) {
	if r.set == nil {
		r.set = make(map[uint64]struct{}, len(r.ring))
	}
	if old := r.ring[r.at]; old != 0 {
		delete(r.set, old)
	}
	r.ring[r.at] = id
	r.set[id] = struct{}{}
	r.at = (r.at + 1) % len(r.ring)
}
