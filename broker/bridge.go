package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// Connections terminated outside gnet. The plain TCP listeners are gnet's
// (the scale path); a TLS or WebSocket connection is terminated in Go
// (crypto/tls, net/http) and bridged into the same core (DESIGN.md rule 8):
//
//	client ══TLS / WS══ net.Conn ◀── up pump ───▶ pair[1] ═╗ unix socketpair
//	                             ◀── down pump ─── pair[1] ═╝       ║
//	                                                        pair[0] ── gnet loop (Engine.Register)
//
// The loop serves pair[0] like any TCP socket: the same transport, endpoint,
// keepalive wheel, outbound bound and close path. Two goroutines pump bytes
// between the client's connection and pair[1]. The up pump (client to
// broker) blocks in the client connection's Read; the down pump waits for
// pair[1] to be readable without holding a buffer, so an idle bridged
// connection holds one small read buffer beside what TLS or WebSocket keep.
//
// Closing follows the socket: when the broker shuts its write side (close.go
// lingers to let the client read its last words), the down pump ends the
// client's write side too (TLS close_notify; a WebSocket close frame), and
// the up pump keeps feeding whatever the client still sends until either
// side is gone. When the client goes away the up pump half-closes pair[1],
// which the loop sees as end of stream.

// BridgeInfo describes a connection handed to Bridge.
type BridgeInfo struct {
	// Protocol is what the byte stream carries: ProtocolMQTT (default) or
	// ProtocolNative.
	Protocol string
	// Transport names what the protocol runs over, for logs, metrics and
	// Clients: "tls", "ws" or "wss". Default "bridge".
	Transport string
	// Remote is the client's real address (the socket gnet sees is one end
	// of a socketpair). Default conn.RemoteAddr().
	Remote net.Addr
	// Identity is the identity of the client's verified certificate
	// (CertIdentity), "" without one. It is shown in Clients and logs.
	Identity string
	// IdentityAsUser makes a client with an Identity log in as that user
	// name, without a password check: the certificate authenticated it
	// (Mosquitto's use_identity_as_username). The ACL then applies to it.
	IdentityAsUser bool
}

// ErrBridge is wrapped by Bridge's errors.
var ErrBridge = errors.New("broker: bridge")

// connExt is a connection's rare state, allocated only for the
// connections that need it (a pointer on transport): what Bridge knows
// about a bridged connection (immutable once the conn is open, readable
// from any goroutine) and the publish rate bucket (limits.go; loop only).
type connExt struct {
	bridge *BridgeInfo
	rate   *rateBucket
}

// bridgeCtx is what OnOpen finds in a bridged gnet.Conn's context.
type bridgeCtx struct{ info *BridgeInfo }

// bridgedOf returns the BridgeInfo of a connection handed over by Bridge,
// or nil for a socket accepted by gnet. OnOpen only (it reads the context
// Register set, before OnOpen replaces it).
func bridgedOf(gc gnet.Conn) *BridgeInfo {
	if b, ok := gc.Context().(bridgeCtx); ok {
		return b.info
	}
	return nil
}

// protoOf is the protocol of a new connection: the bridge's, or the
// listener's it arrived on. OnOpen only.
func (s *Server) protoOf(gc gnet.Conn, br *BridgeInfo) byte {
	if br != nil {
		p, _ := protoByte(br.Protocol)
		return p
	}
	return s.protoAt(gc)
}

// remoteAddr is the client's address: the real one for a bridged
// connection. Any goroutine.
func (t *transport) remoteAddr() net.Addr {
	if x := t.ext.Load(); x != nil && x.bridge != nil {
		return x.bridge.Remote
	}
	return t.gc.RemoteAddr()
}

// transportName is what the connection runs over: "tcp", or the bridge's.
// Any goroutine.
func (t *transport) transportName() string {
	if x := t.ext.Load(); x != nil && x.bridge != nil {
		return x.bridge.Transport
	}
	return "tcp"
}

// bridgeInfo returns the connection's BridgeInfo, nil if not bridged. Any
// goroutine; read-only.
func (t *transport) bridgeInfo() *BridgeInfo {
	if x := t.ext.Load(); x != nil {
		return x.bridge
	}
	return nil
}

// extLocal returns t's connExt, allocating it. Loop only (the only writer
// after OnOpen).
func (t *transport) extLocal() *connExt {
	x := t.ext.Load()
	if x == nil {
		x = &connExt{}
		t.ext.Store(x)
	}
	return x
}

// certIdentity is the identity a connection logs in as when its verified
// certificate is its credential (BridgeInfo.IdentityAsUser).
func (t *transport) certIdentity() (*Identity, bool) {
	br := t.bridgeInfo()
	if br == nil || !br.IdentityAsUser || br.Identity == "" {
		return nil, false
	}
	return &Identity{User: br.Identity, Method: AuthCertificate}, true
}

// CertIdentity is the identity a verified client certificate gives, usable
// as an MQTT user name: the subject's common name, else the first DNS
// name, e-mail address or URI among its subject alternative names. "" if
// the connection has no verified certificate.
func CertIdentity(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ""
	}
	return certName(cs.VerifiedChains[0][0])
}

func certName(c *x509.Certificate) string {
	switch {
	case c.Subject.CommonName != "":
		return c.Subject.CommonName
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	case len(c.EmailAddresses) > 0:
		return c.EmailAddresses[0]
	case len(c.URIs) > 0:
		return c.URIs[0].String()
	}
	return ""
}

// Bridge hands an established connection (a TLS or WebSocket byte stream)
// to the broker, which serves it like a TCP socket of info.Protocol. It
// takes ownership of conn: conn is closed when the broker or the client
// ends the connection, or at once if Bridge fails. It returns once the
// connection is registered with an event loop; the pumps run on two
// goroutines of their own. Any goroutine, after Start.
func (s *Server) Bridge(conn net.Conn, info BridgeInfo) error {
	if info.Protocol == "" {
		info.Protocol = ProtocolMQTT
	}
	if info.Transport == "" {
		info.Transport = "bridge"
	}
	if info.Remote == nil {
		info.Remote = conn.RemoteAddr()
	}
	fail := func(err error) error {
		_ = conn.Close()
		return fmt.Errorf("%w: %w", ErrBridge, err)
	}
	if _, ok := protoByte(info.Protocol); !ok {
		return fail(fmt.Errorf("unknown protocol %q", info.Protocol))
	}
	if !s.serving.Load() {
		return fail(errors.New("server not serving"))
	}
	loopEnd, pumpEnd, err := socketPair()
	if err != nil {
		return fail(err)
	}
	ctx := gnet.NewNetConnContext(gnet.NewContext(context.Background(), bridgeCtx{&info}), loopEnd)
	ch, err := s.engine.Register(ctx) // gnet dups loopEnd's fd and closes loopEnd
	if err != nil {
		loopEnd.Close()
		pumpEnd.Close()
		return fail(err)
	}
	select {
	case res := <-ch:
		if res.Err != nil {
			pumpEnd.Close()
			return fail(res.Err)
		}
	case <-s.stopped:
		pumpEnd.Close()
		return fail(errors.New("server stopped"))
	}
	p := &pump{conn: conn, pair: pumpEnd}
	go p.up()
	go p.down()
	return nil
}

// socketPair makes a connected pair of unix stream sockets as net.Conns.
func socketPair() (*net.UnixConn, *net.UnixConn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	a, err := fileConn(fds[0])
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	b, err := fileConn(fds[1])
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	return a, b, nil
}

func fileConn(fd int) (*net.UnixConn, error) {
	f := os.NewFile(uintptr(fd), "socketpair")
	c, err := net.FileConn(f) // dups fd
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	return c.(*net.UnixConn), nil
}

// pump moves bytes between a bridged client connection and its end of the
// socketpair.
type pump struct {
	conn net.Conn
	pair *net.UnixConn

	mu    sync.Mutex
	ended int // REQUIRES: mu held. pumps finished; the second closes both ends
}

// upBufSize is the up pump's read buffer: enough for a typical packet in
// one read; bigger packets take several.
const upBufSize = 2048

// downPool holds the pumps' buffers, taken only while bytes flow.
var downPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// ReadWaiter is a bridged connection that can wait for input without a
// buffer: WaitRead blocks until a Read would return data or an error
// without blocking long (a WebSocket frame header arrived). The up pump
// then takes a pooled buffer only while bytes flow, so an idle connection
// holds none. Called by the up pump only.
type ReadWaiter interface {
	WaitRead() error
}

// up copies the client's bytes to the broker; at the client's end of
// stream (or an error) it half-closes the pair, so the loop sees the end.
func (p *pump) up() {
	rw, waits := p.conn.(ReadWaiter)
	var own []byte
	if !waits {
		own = make([]byte, upBufSize) // held while blocked in Read
	}
	for {
		buf, bp := own, (*[]byte)(nil)
		if waits {
			if err := rw.WaitRead(); err != nil {
				break
			}
			bp = downPool.Get().(*[]byte)
			buf = *bp
		}
		n, err := p.conn.Read(buf)
		var werr error
		if n > 0 {
			_, werr = p.pair.Write(buf[:n])
		}
		if bp != nil {
			downPool.Put(bp)
		}
		if werr != nil || err != nil {
			break // the broker closed its end, or the client's
		}
	}
	_ = p.pair.CloseWrite()
	p.end()
}

// down copies the broker's bytes to the client. It waits for the pair to
// be readable before it takes a buffer, so an idle connection holds none.
// At the broker's end of stream it ends the client's write side (the
// client reads the last packet, then the end) and lets up run on.
func (p *pump) down() {
	rc, err := p.pair.SyscallConn()
	if err != nil {
		p.closeAll()
		return
	}
	for {
		var (
			bp   *[]byte
			n    int
			rerr error
		)
		err := rc.Read(func(fd uintptr) bool {
			bp = downPool.Get().(*[]byte)
			n, rerr = unix.Read(int(fd), *bp)
			if rerr == unix.EAGAIN {
				downPool.Put(bp)
				bp = nil
				return false // wait for readability, holding nothing
			}
			return true
		})
		if err == nil {
			err = rerr
		}
		if n > 0 {
			_, werr := p.conn.Write((*bp)[:n])
			downPool.Put(bp)
			if werr != nil {
				p.closeAll()
				return
			}
			continue
		}
		if bp != nil {
			downPool.Put(bp)
		}
		if err == unix.EINTR {
			continue
		}
		break // 0 bytes: the broker shut its side; or an error
	}
	if cw, ok := p.conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		// The client may never close: the broker closes its end within
		// its linger time, which ends up; bound the wait anyway.
		_ = p.conn.SetReadDeadline(time.Now().Add(lingerSeconds * 2 * time.Second))
	} else {
		p.closeAll()
	}
	p.end()
}

// end counts a finished pump; when both are done both ends close.
func (p *pump) end() {
	p.mu.Lock()
	p.ended++
	last := p.ended == 2
	p.mu.Unlock()
	if last {
		p.closeAll()
	}
}

// closeAll closes both ends, which ends both pumps. Idempotent.
func (p *pump) closeAll() {
	_ = p.conn.Close()
	_ = p.pair.Close()
}

// loopsUp is closed at the first tick: gnet calls OnBoot before it starts
// its loops, and Engine.Register needs them (and the happens-before edge
// of their creation).
type loopsUp struct {
	make, close sync.Once
	ch          chan struct{}
}

func (u *loopsUp) c() chan struct{} {
	u.make.Do(func() { u.ch = make(chan struct{}) })
	return u.ch
}

// loopsRunning marks the loops started. OnTick only.
func (s *Server) loopsRunning() { s.guard.up.close.Do(func() { close(s.guard.up.c()) }) }

// waitLoops waits for the loops to run. Start only.
func (s *Server) waitLoops() error {
	select {
	case <-s.guard.up.c():
		return nil
	case <-s.stopped:
		return fmt.Errorf("%w: event loops did not start", ErrServer)
	}
}

// ServeListener accepts connections from ln and bridges each as protocol
// (ProtocolMQTT or ProtocolNative) with the given transport name, until ln
// is closed (it then returns nil) or the server stops. A *tls.Conn has its
// handshake done first, within the connect timeout, and its verified
// client certificate's CertIdentity recorded (as the user name if
// identityAsUser). Any goroutine, after Start; blocks.
func (s *Server) ServeListener(ln net.Listener, protocol, transport string, identityAsUser bool) error {
	var tempDelay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) {
				// Out of file descriptors or similar: back off as net/http does.
				tempDelay = min(max(tempDelay*2, 5*time.Millisecond), time.Second)
				s.guard.logs.log(s, logRefused, "accept failed", "addr", ln.Addr().String(), "err", err)
				time.Sleep(tempDelay)
				continue
			}
			return fmt.Errorf("%w: accept on %s: %w", ErrBridge, ln.Addr(), err)
		}
		tempDelay = 0
		go s.serveAccepted(conn, protocol, transport, identityAsUser)
	}
}

func (s *Server) serveAccepted(conn net.Conn, protocol, transport string, identityAsUser bool) {
	info := BridgeInfo{Protocol: protocol, Transport: transport, Remote: conn.RemoteAddr(), IdentityAsUser: identityAsUser}
	if tc, ok := conn.(*tls.Conn); ok {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.ConnectTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			s.guard.logs.log(s, logTLSFailed, "tls handshake failed", "remote", info.Remote.String(), "err", err)
			s.stats.TLSHandshakeErrors.Add(1)
			_ = conn.Close()
			return
		}
		cs := tc.ConnectionState()
		info.Identity = CertIdentity(&cs)
	}
	if err := s.Bridge(conn, info); err != nil {
		s.log.Debug("bridge", "remote", info.Remote.String(), "err", err)
	}
}
