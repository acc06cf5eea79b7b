package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cimgo/cim/broker/wire"
)

// The native client speaks cim's native protocol (broker/wire) with the
// codec's hot frames: wire.Append of a reused wire.Send and wire.DeliverAck
// and wire.Decode into a reused wire.Frame, so a message costs no
// allocation, as with the MQTT client. The run's concepts map onto it so:
//
//	client id          the account's user name (registered before the run, native_accounts.go)
//	publish to topic   a send to the topic (kind 3), or to a user for cim/u/<id or name>,
//	                   a group for cim/g/<name>, everyone for cim/all
//	QoS 0 / 1          a send without / with a client message id; with one the
//	                   send-ack is the publish's ack (7000, stored for an offline
//	                   receiver, counts as success)
//	subscribe          a subscribe frame (QoS 0 or 1); the inbox and cim/all are
//	                   subscribed at login already, so asking for them is a no-op
//	QoS 1 delivery     answered with a deliver-ack
//	clean session      a native session lasts as long as its account: a clean
//	                   client unsubscribes what it subscribed before it closes
//	keepalive          a ping after a third of the granted keepalive without writing

func init() { Register(nativeProto{}) }

// nativeProto dials native clients. The registered one has no run: it
// only prepares; Prepare returns one that dials.
type nativeProto struct {
	run *nativeRun
}

func (nativeProto) Name() string { return ProtoNative }

// Prepare registers the accounts and group memberships of a runner's share
// of the run (native_accounts.go).
func (nativeProto) Prepare(ctx context.Context, p *Preparation) (Proto, error) {
	run, err := prepareNative(ctx, p)
	if err != nil {
		return nil, err
	}
	return nativeProto{run: run}, nil
}

// Finish takes a clean run's clients out of the groups Prepare joined.
func (p nativeProto) Finish(ctx context.Context) error { return p.run.finish(ctx) }

// Topics of DESIGN.md's address space.
const (
	inboxPrefix = "cim/u/"
	groupPrefix = "cim/g/"
	allTopic    = "cim/all"
)

// codeOK is wire.CodeOK as the HTTP API writes it.
const codeOK = int(wire.CodeOK)

// nativeMaxFrame is the largest frame the client accepts: the format's
// maximum, since a run's --size is the user's to choose. A frame larger
// than the read buffer is read in growing steps, so a length prefix alone
// cannot make the client allocate.
const nativeMaxFrame = wire.MaxFrameSize

// nativeVersion goes in the login frame.
const nativeVersion = "cim-bench"

// nslot is one in-flight QoS 1 send.
type nslot struct {
	id atomic.Uint64 // client message id in flight here; 0: free
	at atomic.Int64  // when it was written, unix ns
}

// nstamp locates a buffered send: its body's offset in wbuf (the send time
// goes there) and its in-flight slot (-1 for QoS 0).
type nstamp struct {
	off  int
	slot int
}

type nativeClient struct {
	sock
	run   *nativeRun
	user  uint64 // our account id, from the login ack
	inbox string // cim/u/<user>
	clean bool

	cr  countingReader
	br  *bufio.Reader
	big []byte     // frames larger than br's buffer are read here
	f   wire.Frame // the reader's decoded frame, reused
	now int64      // reader goroutine: unix ns of the latest socket read

	keepAlive int64 // nanoseconds, as granted by the server
	lastWrite atomic.Int64

	mu      sync.Mutex // guards wbuf, stamps, werr, dirty, send, dack, next and writes to conn
	wbuf    []byte
	stamps  []nstamp
	werr    error
	dirty   bool // acks queued by the reader, not yet flushed
	flushAt int
	dack    wire.DeliverAck // encoded by the reader, reused

	// Publisher goroutine only: the last topic and where it goes.
	lastTopic  string
	lastTarget wire.Target
	tmpl       sendTemplate // REQUIRES: mu held

	// QoS 1 sends in flight. A token from window is a place in it; ring
	// holds the sends, message id base+k in slot k&mask (the ring is at
	// least twice the window, so a free slot is always near: next).
	window chan struct{}
	ring   []nslot
	mask   uint64
	base   uint64
	next   uint64

	// Subscribe and unsubscribe: one request at a time (reqMu); the reader
	// hands the answer whose id is pending to answer.
	reqMu   sync.Mutex
	reqID   uint64   // REQUIRES: reqMu held
	subs    []string // filters subscribed on this connection. REQUIRES: reqMu held
	pending atomic.Uint64
	answer  chan []wire.Code

	done chan struct{} // closed when the reader goroutine has returned
}

// idBase makes client message ids unique per account over connections and
// runs: the server deduplicates QoS 1 sends by (sender, id), so an id must
// never come back. A connection's ids start at the clock in nanoseconds,
// which no earlier connection of the same account can have reached (it
// would have sent a message per nanosecond since it started).
var idBase atomic.Uint64

func nextIDBase() uint64 {
	for {
		old, now := idBase.Load(), uint64(time.Now().UnixNano())
		b := max(now, old+1)
		if idBase.CompareAndSwap(old, b) {
			return b
		}
	}
}

func (p nativeProto) Dial(ctx context.Context, cfg *ClientConfig, h Handler) (Client, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	d := net.Dialer{}
	if cfg.LocalAddr != nil {
		d.LocalAddr = cfg.LocalAddr
		d.Control = bindNoPort
	}
	conn, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDial, err)
	}
	if p.run == nil {
		conn.Close()
		return nil, fmt.Errorf("%w: the native protocol dials only after Prepare", ErrUsage)
	}
	c := newNativeClient(conn, h, p.run, cfg)
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if err := c.login(cfg); err != nil {
		conn.Close()
		if ctx.Err() != nil && !isLoginRefusal(err) {
			err = fmt.Errorf("%w: %w", err, context.DeadlineExceeded)
		}
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	c.lastWrite.Store(time.Now().UnixNano())
	go c.readLoop()
	return c, nil
}

// newNativeClient sets a client up around conn, before the login.
func newNativeClient(conn net.Conn, h Handler, run *nativeRun, cfg *ClientConfig) *nativeClient {
	c := &nativeClient{
		sock: sock{conn: conn, h: h, dead: make(chan struct{})}, run: run, clean: cfg.Clean,
		keepAlive: int64(cfg.KeepAlive),
		flushAt:   max(cfg.WriteBuffer, 64),
		answer:    make(chan []wire.Code, 1),
		done:      make(chan struct{}),
	}
	c.cr.r = conn
	c.br = bufio.NewReaderSize(&c.cr, max(cfg.ReadBuffer, 64))
	if w := cfg.Inflight; w > 0 {
		size := 1 << bits.Len(uint(2*w-1)) // a power of two >= 2w
		c.window = make(chan struct{}, w)
		for range w {
			c.window <- struct{}{}
		}
		c.ring = make([]nslot, size)
		c.mask = uint64(size - 1)
		c.base = nextIDBase()
	}
	return c
}

// loginError is a login the server refused (login-ack, error or kick).
type loginError struct {
	code wire.Code
	text string
}

func (e *loginError) Error() string {
	return fmt.Sprintf("bench: login refused: code %d (%v): %s", uint16(e.code), e.code, e.text)
}

func (e *loginError) Unwrap() error {
	if e.code == wire.CodeAccountMismatch || e.code == wire.CodeTokenExpired {
		return ErrAuth
	}
	return ErrRefused
}

func isLoginRefusal(err error) bool {
	var le *loginError
	return errors.As(err, &le)
}

// login writes the login frame and reads the server's answer.
func (c *nativeClient) login(cfg *ClientConfig) error {
	l := wire.Login{Name: cfg.ClientID, Password: cfg.Password, Version: nativeVersion,
		Keepalive: uint32(min(cfg.KeepAlive/time.Second, 65535))}
	b, err := wire.Append(c.wbuf[:0], &l)
	if err != nil {
		return fmt.Errorf("%w: login frame: %w", ErrDial, err)
	}
	if _, err := c.conn.Write(b); err != nil {
		return fmt.Errorf("%w: %w", ErrDial, err)
	}
	c.wbuf = b[:0]
	frame, total, err := c.nextFrame()
	if err != nil {
		return fmt.Errorf("%w: waiting for the login ack: %w", ErrDial, err)
	}
	defer c.discard(total)
	if _, err := wire.Decode(frame, &c.f, nativeMaxFrame); err != nil {
		return fmt.Errorf("%w: %w: login ack: %v", ErrDial, ErrProtocol, err)
	}
	switch c.f.Type {
	case wire.TypeLoginAck:
		a := &c.f.LoginAck
		if a.Code != wire.CodeOK {
			return &loginError{a.Code, a.Text}
		}
		if a.User == 0 {
			return fmt.Errorf("%w: %w: login ack without a user id", ErrDial, ErrProtocol)
		}
		c.user = a.User
		c.inbox = inboxPrefix + strconv.FormatUint(a.User, 10)
		if a.Keepalive > 0 {
			c.keepAlive = int64(a.Keepalive) * int64(time.Second)
		}
	case wire.TypeError:
		return &loginError{c.f.Error.Code, c.f.Error.Text}
	case wire.TypeKick:
		return &loginError{c.f.Kick.Code, c.f.Kick.Text}
	default:
		return fmt.Errorf("%w: %w: want a login ack, got %v", ErrDial, ErrProtocol, c.f.Type)
	}
	return nil
}

// target is where a publish to topic goes, in the native protocol's terms.
func (run *nativeRun) target(topic string) (wire.Target, error) {
	switch {
	case topic == allTopic:
		return wire.ToAll(), nil
	case strings.HasPrefix(topic, inboxPrefix) && !strings.Contains(topic[len(inboxPrefix):], "/"):
		rest := topic[len(inboxPrefix):]
		if isDigits(rest) {
			id, err := strconv.ParseUint(rest, 10, 64)
			if err != nil || id == 0 {
				return wire.Target{}, fmt.Errorf("%w: topic %q: not a user id", ErrUsage, topic)
			}
			return wire.ToUser(id), nil
		}
		id, ok := run.ids[rest]
		if !ok {
			return wire.Target{}, fmt.Errorf("%w: topic %q: no account %q registered for this run (a name drawn with %%rand is not)", ErrUsage, topic, rest)
		}
		return wire.ToUser(id), nil
	case strings.HasPrefix(topic, groupPrefix) && !strings.Contains(topic[len(groupPrefix):], "/") && len(topic) > len(groupPrefix):
		return wire.ToGroup(topic[len(groupPrefix):]), nil
	}
	return wire.ToTopic(topic), nil
}

// filter is what a subscription to f asks of the server: cim/u/<name>
// becomes the account's inbox, cim/u/<id>. subscribed reports a filter the
// session has already: a group the run made the client a member of.
func (run *nativeRun) filter(f string) (filter string, subscribed bool, err error) {
	if g := groupName(f); g != "" && run.groups[g] {
		return f, true, nil
	}
	name := inboxName(f)
	if name == "" {
		return f, false, nil
	}
	id, ok := run.ids[name]
	if !ok {
		return "", false, fmt.Errorf("%w: %q: no account %q registered for this run", ErrSubscribe, f, name)
	}
	return inboxPrefix + strconv.FormatUint(id, 10), false, nil
}

func (c *nativeClient) Publish(ctx context.Context, topic string, payload []byte, qos byte) (int64, error) {
	if qos > 1 {
		return 0, fmt.Errorf("%w: QoS %d: the native protocol has QoS 0 and 1", ErrUsage, qos)
	}
	if topic != c.lastTopic || c.lastTopic == "" {
		t, err := c.run.target(topic)
		if err != nil {
			c.h.OnError(err) // the publisher stops on it: say why
			return 0, err
		}
		c.lastTopic, c.lastTarget = topic, t
	}
	if qos > 0 {
		if c.window == nil {
			return 0, fmt.Errorf("%w: QoS %d without an in-flight window", ErrUsage, qos)
		}
		select {
		case <-c.window:
		default:
			// Window full: send what is buffered so acks can come back.
			if err := c.Flush(); err != nil {
				return 0, err
			}
			select {
			case <-c.window:
			case <-c.dead:
				return 0, c.deadErr
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	slot := -1
	var id uint64
	if qos > 0 {
		for {
			k := c.next
			c.next++
			if s := &c.ring[k&c.mask]; s.id.Load() == 0 {
				id = c.base + k
				s.id.Store(id)
				slot = int(k & c.mask)
				break
			}
		}
	}
	out, err := c.tmpl.append(c.wbuf, c.lastTarget, qos, id, payload, topic)
	if err != nil {
		if slot >= 0 {
			c.ring[slot].id.Store(0)
			c.window <- struct{}{}
		}
		return 0, fmt.Errorf("%w: %w", ErrPublish, err)
	}
	c.wbuf = out
	c.stamps = append(c.stamps, nstamp{off: len(c.wbuf) - len(payload), slot: slot})
	if len(c.wbuf) >= c.flushAt {
		c.flushLocked()
	}
	return c.lastWrite.Load(), c.werr
}

func (c *nativeClient) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushLocked()
	return c.werr
}

// flushLocked writes the buffer out, first stamping the send time into the
// body of every buffered send (see mqttClient.flushLocked). REQUIRES: mu
// held.
func (c *nativeClient) flushLocked() {
	c.dirty = false
	if len(c.wbuf) == 0 || c.werr != nil {
		return
	}
	now := time.Now().UnixNano()
	for _, s := range c.stamps {
		binary.BigEndian.PutUint64(c.wbuf[s.off:], uint64(now))
		if s.slot >= 0 {
			c.ring[s.slot].at.Store(now)
		}
	}
	n := len(c.stamps)
	c.stamps = c.stamps[:0]
	_, err := c.conn.Write(c.wbuf)
	c.wbuf = c.wbuf[:0]
	c.lastWrite.Store(now)
	if n > 0 && err == nil {
		c.h.OnSent(n, now)
	}
	if err != nil {
		c.werr = err
		c.die(err) // die takes no lock, so calling it under mu is safe
	}
}

// release completes the QoS 1 send with client message id id.
func (c *nativeClient) release(id uint64) {
	if c.ring == nil || id < c.base {
		c.h.OnError(fmt.Errorf("%w: send-ack for unknown message id %d", ErrProtocol, id))
		return
	}
	s := &c.ring[(id-c.base)&c.mask]
	at := s.at.Load()
	if !s.id.CompareAndSwap(id, 0) {
		c.h.OnError(fmt.Errorf("%w: send-ack for message id %d not in flight", ErrProtocol, id))
		return
	}
	c.h.OnAck(time.Duration(c.now - at))
	c.window <- struct{}{} // cannot block: the token was taken for this send
}

func (c *nativeClient) Subscribe(ctx context.Context, filter string, qos byte) error {
	if qos > 1 {
		return fmt.Errorf("%w: QoS %d: the native protocol has QoS 0 and 1", ErrUsage, qos)
	}
	f, subscribed, err := c.run.filter(filter)
	if err != nil {
		return err
	}
	if subscribed || f == c.inbox || f == allTopic {
		return nil // subscribed at login; asking again would change its QoS, and a clean close would drop it
	}
	c.reqMu.Lock()
	defer c.reqMu.Unlock()
	c.reqID++
	codes, err := c.request(ctx, &wire.Subscribe{ID: c.reqID, Filters: []string{f}, QoS: qos}, c.reqID)
	if err != nil {
		return fmt.Errorf("%w: %q: %w", ErrSubscribe, filter, err)
	}
	if len(codes) != 1 {
		return fmt.Errorf("%w: %w: sub-ack with %d codes for 1 filter", ErrSubscribe, ErrProtocol, len(codes))
	}
	if codes[0] != wire.CodeOK {
		return fmt.Errorf("%w: %q code %d (%v)", ErrSubscribe, filter, uint16(codes[0]), codes[0])
	}
	c.subs = append(c.subs, f)
	return nil
}

// request writes a subscribe or unsubscribe frame and waits for its
// answer's codes. REQUIRES: reqMu held.
func (c *nativeClient) request(ctx context.Context, b wire.Body, id uint64) ([]wire.Code, error) {
	select {
	case <-c.answer: // a late answer to an abandoned request
	default:
	}
	c.pending.Store(id)
	defer c.pending.Store(0)
	c.mu.Lock()
	out, err := wire.Append(c.wbuf, b)
	if err == nil {
		c.wbuf = out
		c.flushLocked()
		err = c.werr
	}
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case codes := <-c.answer:
		return codes, nil
	case <-c.dead:
		return nil, c.deadErr
	case <-ctx.Done():
		return nil, fmt.Errorf("no answer: %w", ctx.Err())
	}
}

func (c *nativeClient) Ping(now time.Time) {
	if c.keepAlive <= 0 || now.UnixNano()-c.lastWrite.Load() < c.keepAlive/3 {
		return
	}
	c.mu.Lock()
	c.wbuf, _ = wire.Append(c.wbuf, &wire.Ping{})
	c.flushLocked()
	c.mu.Unlock()
}

// closeWait bounds the goodbye of Close: the unsubscribe of a clean client
// and the last write.
const closeWait = time.Second

func (c *nativeClient) Close() error {
	c.closing.Store(true)
	// A stalled broker must not hold Close (or a publisher blocked in Write
	// under mu) forever.
	_ = c.conn.SetWriteDeadline(time.Now().Add(closeWait))
	c.reqMu.Lock()
	if c.clean && len(c.subs) > 0 && !c.finished() {
		// The session outlives the connection: what this run subscribed
		// would otherwise keep collecting messages for an account nobody
		// logs in as again.
		ctx, cancel := context.WithTimeout(context.Background(), closeWait)
		c.reqID++
		_, _ = c.request(ctx, &wire.Unsubscribe{ID: c.reqID, Filters: c.subs}, c.reqID)
		cancel()
		c.subs = nil
	}
	c.reqMu.Unlock()
	c.mu.Lock()
	c.flushLocked() // deliver-acks still queued
	c.mu.Unlock()
	c.die(net.ErrClosed)
	<-c.done
	return nil
}

// sendTemplate is the encoding of a send frame up to its body, for sends
// that differ from the last only in their client message id and body
// bytes: the frame is that head, the id patched in, then the body. A run
// publishes the same shape over and over, and wire.Append's sizing and
// field-by-field encoding was most of the client's cost per publish
// (BenchmarkNativePublish: 64 ns against MQTT's 24).
type sendTemplate struct {
	made  bool // for topic, qos, size and whether there is an id
	topic string
	qos   byte
	size  int       // body length
	head  []byte    // the frame up to the body
	idAt  int       // where the id's 8 bytes sit in head; -1: no id
	s     wire.Send // scratch for a send the template does not fit
}

// append encodes a send (to topic) as wire.Append does. The send is a
// wire.Send only when the template does not fit: filling one per publish
// cost more than writing the frame (BenchmarkNativePublish).
func (t *sendTemplate) append(dst []byte, to wire.Target, qos byte, id uint64, body []byte, topic string) ([]byte, error) {
	if !t.made || t.topic != topic || t.qos != qos || t.size != len(body) || (id != 0) != (t.idAt >= 0) {
		t.make(wire.Send{ID: id, Target: to, QoS: qos, Body: body}, topic)
	}
	if t.head == nil || id != 0 && id < 1<<32 {
		// An id of another width, or no template.
		t.s = wire.Send{ID: id, Target: to, QoS: qos, Body: body}
		out, err := wire.Append(dst, &t.s)
		t.s = wire.Send{} // the caller owns body
		return out, err
	}
	at := len(dst)
	dst = append(dst, t.head...)
	if t.idAt >= 0 {
		binary.BigEndian.PutUint64(dst[at+t.idAt:], id)
	}
	return append(dst, body...), nil
}

// make builds the template of s's shape: its ids are uint64s in msgpack's
// 8-byte form (the ids of a run start at the clock in nanoseconds).
// A shape without one (an empty body, a batch) is encoded by wire.Append.
func (t *sendTemplate) make(s wire.Send, topic string) {
	idAt := -1
	if s.ID != 0 {
		idAt = 0
	}
	*t = sendTemplate{made: true, topic: topic, qos: s.QoS, size: len(s.Body), idAt: idAt}
	probe := s
	if probe.ID != 0 {
		probe.ID = 1 << 63
	}
	frame, err := wire.Append(nil, &probe)
	if err != nil || len(s.Body) == 0 || len(s.Batch) > 0 {
		return
	}
	head := frame[:len(frame)-len(s.Body)]
	if probe.ID != 0 {
		// The id is the first field: "i", then 0xcf and 8 bytes.
		at := bytes.Index(head, []byte{0xa1, 'i', 0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0})
		if at < 0 {
			return
		}
		t.idAt = at + 3
	}
	t.head = head
}
