package httpapi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cimgo/cim/broker"
	"github.com/gobwas/ws"
)

// WebSocket: the connection is upgraded here (github.com/gobwas/ws, chosen
// for the least memory per idle connection of the maintained libraries,
// see docs/operations.md), wrapped as a byte stream (wsConn) and handed to
// broker.Server.Bridge, which serves it on an event loop like a TCP
// socket.
//
//	WS frames in:  [hdr|bytes][hdr|bytes]...  ─ FramingStream ─▶ bytes... (MQTT: packets may span frames [MQTT-6.0.0-2])
//	               [hdr|msg][hdr|msg]...      ─ FramingUvarint ─▶ uvarint(len) msg uvarint(len) msg ...
//	stream out:    bytes...                   ─ FramingStream ─▶ one binary message per chunk the broker wrote
//	               uvarint(len) msg ...       ─ FramingUvarint ─▶ one binary message per frame, prefix removed
//
// FramingUvarint is for the native protocol, whose frames are uvarint
// length prefixed: a browser sends and receives one frame per WebSocket
// message. Client frames must be masked; text frames are refused (MQTT:
// close 1003 [MQTT-6.0.0-1]); extensions are not negotiated.

// Framing says how WebSocket messages map to the broker's byte stream.
type Framing uint8

// Framings.
const (
	// FramingStream concatenates message payloads (MQTT over WebSocket).
	FramingStream Framing = iota
	// FramingUvarint carries one uvarint-length-prefixed frame per message,
	// without its prefix (the native protocol from a browser).
	FramingUvarint
)

// maxWSMessage bounds a FramingUvarint message (and a fragmented one
// being assembled).
const maxWSMessage = 1 << 20

func (a *API) webSocketRoutes() {
	a.Handle(http.MethodGet, "/mqtt", a.WebSocketHandler(broker.ProtocolMQTT, FramingStream, "mqtt", "mqttv3.1"))
	a.Handle(http.MethodGet, "/ws", a.WebSocketHandler(broker.ProtocolNative, FramingUvarint))
}

// WebSocketHandler upgrades a request to a WebSocket speaking protocol
// (broker.ProtocolMQTT or broker.ProtocolNative) with framing, and bridges
// it into the broker. The client must offer one of subprotocols (none
// given: any or none); the first it offers is selected.
func (a *API) WebSocketHandler(protocol string, framing Framing, subprotocols ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			writeError(w, http.StatusBadRequest, "bad_request", "want a WebSocket upgrade (Upgrade: websocket)")
			return
		}
		offered := offeredProtocols(r)
		if len(subprotocols) > 0 && !slices.ContainsFunc(offered, func(p string) bool { return slices.Contains(subprotocols, p) }) {
			writeError(w, http.StatusBadRequest, "bad_subprotocol", "offer the WebSocket subprotocol "+strings.Join(subprotocols, " or ")+" (Sec-WebSocket-Protocol)")
			return
		}
		u := ws.HTTPUpgrader{Timeout: 10 * time.Second}
		if len(subprotocols) > 0 {
			u.Protocol = func(p string) bool { return slices.Contains(subprotocols, p) }
		}
		conn, rw, _, err := u.Upgrade(r, w)
		if err != nil {
			a.log.Debug("websocket upgrade", "remote", r.RemoteAddr, "err", err) // the upgrader answered
			return
		}
		_ = conn.SetDeadline(time.Time{}) // the HTTP server's deadlines do not apply any more
		c := &wsConn{Conn: conn, src: conn, framing: framing}
		if n := rw.Reader.Buffered(); n > 0 { // sent right behind the handshake
			b, _ := rw.Reader.Peek(n)
			c.src = io.MultiReader(bytes.NewReader(bytes.Clone(b)), conn)
		}
		info := broker.BridgeInfo{Protocol: protocol, Transport: "ws", Remote: remoteOf(r, conn, a.opts.TrustedProxies)}
		if r.TLS != nil {
			info.Transport = "wss"
			info.Identity = broker.CertIdentity(r.TLS)
			info.IdentityAsUser = a.opts.WebSocketIdentityAsUser
		}
		if err := a.srv.Bridge(c, info); err != nil {
			a.log.Debug("websocket bridge", "remote", r.RemoteAddr, "err", err)
		}
	})
}

func offeredProtocols(r *http.Request) []string {
	var out []string
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func remoteOf(r *http.Request, conn net.Conn, trusted []netip.Prefix) net.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return conn.RemoteAddr()
	}
	if !inPrefixes(ap.Addr(), trusted) {
		return net.TCPAddrFromAddrPort(ap)
	}
	// Through our proxies: the rightmost hop they did not add.
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break // garbled: stop at the last hop we can trust
		}
		if !inPrefixes(a, trusted) {
			return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a.Unmap(), 0))
		}
	}
	return net.TCPAddrFromAddrPort(ap)
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ErrWebSocket is wrapped by a WebSocket stream's protocol errors.
var ErrWebSocket = errors.New("httpapi: websocket")

// wsConn is a server-side WebSocket as a byte stream (net.Conn). Read is
// called by one goroutine (the bridge's up pump), Write and CloseWrite by
// another (the down pump); control frames Read answers go out under wmu.
type wsConn struct {
	net.Conn
	src     io.Reader
	framing Framing

	// Read side.
	remaining int64   // payload bytes of the current frame still to read
	mask      [4]byte // its mask
	maskAt    int     // bytes of it unmasked so far
	inMessage bool    // a data message is open: continuation frames follow
	pending   []byte  // FramingUvarint: bytes to hand out before reading on
	assembly  []byte  // FramingUvarint: a fragmented message being put together
	readErr   error
	hdr       [ws.MaxHeaderSize - 2]byte // header scratch (ws.ReadHeaderBuffer)

	// Write side.
	wmu       sync.Mutex
	closeSent bool   // REQUIRES: wmu held
	out       []byte // FramingUvarint: outbound bytes not yet a whole frame (down pump only)
}

// Read returns payload bytes (FramingStream) or re-framed messages
// (FramingUvarint).
func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if len(c.pending) > 0 {
			n := copy(p, c.pending)
			c.pending = c.pending[n:]
			if len(c.pending) == 0 {
				c.pending = nil
			}
			return n, nil
		}
		if c.remaining > 0 && c.assembly == nil {
			n := int(min(int64(len(p)), c.remaining))
			n, err := c.src.Read(p[:n])
			ws.Cipher(p[:n], c.mask, c.maskAt)
			c.maskAt += n
			c.remaining -= int64(n)
			if err == io.EOF && c.remaining > 0 {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		if c.readErr != nil {
			return 0, c.readErr
		}
		if err := c.nextFrame(); err != nil {
			c.readErr = err
			return 0, err
		}
	}
}

// WaitRead blocks until Read has bytes (or an error) to return: it reads
// frame headers, and answers control frames, without a data buffer
// (broker.ReadWaiter). Up pump only.
func (c *wsConn) WaitRead() error {
	for len(c.pending) == 0 && (c.remaining == 0 || c.assembly != nil) {
		if c.readErr != nil {
			return c.readErr
		}
		if err := c.nextFrame(); err != nil {
			c.readErr = err
			return err
		}
	}
	return nil
}

// nextFrame reads frame headers (and control frames) until data is due.
func (c *wsConn) nextFrame() error {
	h, err := ws.ReadHeaderBuffer(c.src, c.hdr[:])
	if err != nil {
		return err
	}
	switch {
	case !h.Masked:
		return c.fail(ws.StatusProtocolError, "client frames must be masked")
	case h.Rsv != 0:
		return c.fail(ws.StatusProtocolError, "no extension was negotiated")
	case h.OpCode.IsReserved():
		return c.fail(ws.StatusProtocolError, "reserved opcode")
	case h.OpCode.IsControl() && (h.Length > 125 || !h.Fin):
		return c.fail(ws.StatusProtocolError, "bad control frame")
	}
	if h.OpCode.IsControl() {
		body := make([]byte, h.Length)
		if _, err := io.ReadFull(c.src, body); err != nil {
			return err
		}
		ws.Cipher(body, h.Mask, 0)
		switch h.OpCode {
		case ws.OpPing:
			return c.writeFrame(ws.OpPong, body)
		case ws.OpClose:
			code := ws.StatusNormalClosure
			if len(body) >= 2 {
				code = ws.StatusCode(binary.BigEndian.Uint16(body))
			}
			_ = c.sendClose(code, "")
			return io.EOF
		}
		return nil // pong: nothing to do
	}
	switch h.OpCode {
	case ws.OpText:
		return c.fail(ws.StatusUnsupportedData, "binary frames only") // [MQTT-6.0.0-1]
	case ws.OpBinary:
		if c.inMessage {
			return c.fail(ws.StatusProtocolError, "new message inside a fragmented one")
		}
	case ws.OpContinuation:
		if !c.inMessage {
			return c.fail(ws.StatusProtocolError, "continuation without a message")
		}
	}
	c.inMessage = !h.Fin
	c.remaining, c.mask, c.maskAt = h.Length, h.Mask, 0
	if c.framing == FramingStream {
		return nil
	}
	// FramingUvarint: a whole message gets its length in front.
	if h.Length > maxWSMessage || int64(len(c.assembly))+h.Length > maxWSMessage {
		return c.fail(ws.StatusMessageTooBig, fmt.Sprintf("message over %d bytes", maxWSMessage))
	}
	if h.Fin && c.assembly == nil {
		c.pending = binary.AppendUvarint(nil, uint64(h.Length))
		return nil
	}
	// Fragmented: gather the message, then hand it out whole.
	start := len(c.assembly)
	c.assembly = append(c.assembly, make([]byte, h.Length)...)
	if _, err := io.ReadFull(c.src, c.assembly[start:]); err != nil {
		return err
	}
	ws.Cipher(c.assembly[start:], h.Mask, 0)
	c.remaining = 0
	if h.Fin {
		c.pending = append(binary.AppendUvarint(nil, uint64(len(c.assembly))), c.assembly...)
		c.assembly = nil
	} else if c.assembly == nil {
		c.assembly = []byte{}
	}
	return nil
}

// fail closes the stream with a WebSocket close code.
func (c *wsConn) fail(code ws.StatusCode, why string) error {
	_ = c.sendClose(code, why)
	return fmt.Errorf("%w: %s", ErrWebSocket, why)
}

// Write sends p: one binary message (FramingStream), or one message per
// whole uvarint frame it completes (FramingUvarint).
func (c *wsConn) Write(p []byte) (int, error) {
	if c.framing == FramingStream {
		if err := c.writeFrame(ws.OpBinary, p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	c.out = append(c.out, p...)
	for {
		l, n := binary.Uvarint(c.out)
		if n == 0 {
			break // prefix incomplete
		}
		if n < 0 || l > maxWSMessage {
			return 0, fmt.Errorf("%w: outbound frame of %d bytes", ErrWebSocket, l)
		}
		if uint64(len(c.out)-n) < l {
			break
		}
		if err := c.writeFrame(ws.OpBinary, c.out[n:n+int(l)]); err != nil {
			return 0, err
		}
		c.out = c.out[n+int(l):]
	}
	if len(c.out) == 0 {
		c.out = nil // an idle connection holds no buffer
	}
	return len(p), nil
}

var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10+ws.MaxHeaderSize); return &b }}

// writeFrame writes one unmasked frame in one write (one TLS record for a
// small one).
func (c *wsConn) writeFrame(op ws.OpCode, payload []byte) error {
	bp := framePool.Get().(*[]byte)
	b := appendHeader((*bp)[:0], op, len(payload))
	b = append(b, payload...)
	c.wmu.Lock()
	var err error
	if c.closeSent {
		err = net.ErrClosed
	} else {
		_, err = c.Conn.Write(b)
	}
	c.wmu.Unlock()
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		framePool.Put(bp)
	}
	return err
}

func appendHeader(b []byte, op ws.OpCode, n int) []byte {
	b = append(b, 0x80|byte(op))
	switch {
	case n < 126:
		return append(b, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
}

// sendClose sends a close frame once; nothing is written after it.
func (c *wsConn) sendClose(code ws.StatusCode, reason string) error {
	body := ws.NewCloseFrameBody(code, reason)
	b := appendHeader(nil, ws.OpClose, len(body))
	b = append(b, body...)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return nil
	}
	c.closeSent = true
	_, err := c.Conn.Write(b)
	return err
}

// CloseWrite ends the stream towards the client with a normal close
// frame (the bridge calls it when the broker closed its side); reading
// goes on until the client answers or the bridge gives up.
func (c *wsConn) CloseWrite() error { return c.sendClose(ws.StatusNormalClosure, "") }
