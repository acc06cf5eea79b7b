package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cimgo/cim/broker/topic"
	"github.com/cimgo/cim/storage"
	"github.com/panjf2000/gnet/v2"
)

// Server is one broker node. Create it with New, start it with Start, stop
// it with Shutdown; the rest of its exported API is in api.go.
type Server struct {
	opts      Options
	log       *slog.Logger
	stats     Stats
	subs      *topic.Trie[*session]
	retained  *topic.Index[*Message]
	sessions  *registry
	deadlines deadlines
	filters   filterCounts
	async     asyncWriter
	auth      atomic.Pointer[Auth] // who may log in and what they may do; swapped by SetAuth
	im        *imState             // the IM server's state (im.go)
	store     *storage.DB          // nil: memory only

	clock   atomic.Int64 // unix seconds, refreshed every tick
	ids     idGen
	started time.Time
	// partialBytes is the buffer space of every conn's unfinished inbound
	// frame (input.go), bounded by MaxPartialBytes.
	partialBytes atomic.Int64
	storeFailing atomic.Bool // the last write to the store failed (persist.go)
	serving      atomic.Bool // Start bound the listeners and Shutdown has not begun (Ready, Bridge)
	guard        guardRails  // limits and per-listener counts (limits.go)

	loopsMu sync.Mutex
	loops   map[gnet.EventLoop]*loop // REQUIRES: loopsMu held

	// Held loop flushes (loop.go: holdFlushes).
	flushHold atomic.Int32
	heldMu    sync.Mutex
	held      []*loop // REQUIRES: heldMu held. loops dirty while held

	listeners []listener // fixed after New
	engine    gnet.Engine
	booted    chan error
	stopped   chan struct{}
	sysStop   chan struct{}
}

// listener is one TCP address of the engine and the protocol spoken there.
type listener struct {
	proto byte   // storage.ProtocolMQTT, storage.ProtocolNative
	addr  string // as configured, host:port
	bound net.Addr
}

// ErrServer is wrapped by errors starting or stopping a Server.
var ErrServer = errors.New("broker: server")

// New checks opts and builds a Server, recovering what its Store holds;
// nothing listens until Start.
func New(opts Options) (*Server, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		subs:     topic.NewTrie[*session](),
		retained: topic.NewIndex[*Message](),
		loops:    make(map[gnet.EventLoop]*loop),
		booted:   make(chan error, 1),
		stopped:  make(chan struct{}),
		sysStop:  make(chan struct{}),
		started:  opts.Now(),
	}
	s.sessions = newRegistry(s)
	s.async.srv = s
	s.ids.node = nodeBits(opts.NodeName)
	s.clock.Store(opts.Now().Unix())
	s.listeners = []listener{{proto: storage.ProtocolMQTT, addr: opts.MQTTAddr}}
	if opts.NativeAddr != "" {
		s.listeners = append(s.listeners, listener{proto: storage.ProtocolNative, addr: opts.NativeAddr})
	}
	s.im = &imState{dir: newDirectory(), tokens: newTokenSigner(opts.TokenKey, opts.TokenTTL), delayed: newDelayedSched(s)}
	auth := opts.Auth
	if auth == nil {
		a, err := NewAuth(AuthOptions{PasswordFile: opts.PasswordFile, ACL: opts.ACL, ACLDefault: opts.ACLDefault, DenyFilters: opts.DenyFilters})
		if err != nil {
			return nil, err
		}
		auth = a
	}
	s.auth.Store(auth)
	if opts.Store != nil {
		s.store = opts.Store
		if err := s.im.dir.load(s.store); err != nil {
			return nil, fmt.Errorf("%w: recover accounts and groups: %w", ErrServer, err)
		}
		if err := s.recover(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Start listens on every configured address and serves until Shutdown. It
// returns once the listeners are bound, or with the error that stopped
// one from binding (naming its address).
func (s *Server) Start() error {
	addrs := make([]string, len(s.listeners))
	for i := range s.listeners {
		l := &s.listeners[i]
		addr, err := checkBindable(l.addr)
		if err != nil {
			return err
		}
		l.addr = addr
		addrs[i] = "tcp://" + addr
	}
	go func() {
		err := gnet.Rotate(handler{s}, addrs,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(s.opts.Loops),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithTicker(true),
			gnet.WithReuseAddr(true),
			gnet.WithReusePort(true),
			gnet.WithLogger(gnetLogger{s.log}),
			// Bridge registers connections from other goroutines, which
			// round robin's unsynchronised counter does not allow.
			gnet.WithLoadBalancing(gnet.LeastConnections),
		)
		select {
		case s.booted <- fmt.Errorf("%w: %w", ErrServer, err):
		default:
		}
		if err != nil {
			s.log.Error("listeners stopped", "err", err)
		}
		close(s.stopped)
	}()
	if err := <-s.booted; err != nil {
		return err
	}
	if err := s.waitLoops(); err != nil { // bridge.go
		return err
	}
	s.serving.Store(true)
	if s.opts.SysInterval > 0 {
		go s.publishSys()
	}
	if s.store != nil {
		go s.im.delayed.run(s.sysStop)
	}
	for _, l := range s.listeners {
		s.log.Info(protoName(l.proto)+" listening", "addr", l.bound.String(), "loops", s.opts.Loops)
	}
	if cn := s.clusterNode(); cn != nil {
		cn.listening() // cluster hook (cluster.go): advertise the bound addresses
	}
	return nil
}

// checkBindable tries addr before gnet does, so that a port in use is
// reported with its address (gnet's error does not name it). A port 0 is
// resolved to the free port the kernel picked, so that several listeners
// asking for any port stay apart (gnet knows listeners by address).
func checkBindable(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("%w: cannot listen on %s: %w", ErrServer, addr, err)
	}
	defer ln.Close()
	if _, port, _ := net.SplitHostPort(addr); port == "0" {
		host, _, _ := net.SplitHostPort(addr)
		_, picked, _ := net.SplitHostPort(ln.Addr().String())
		return net.JoinHostPort(host, picked), nil
	}
	return addr, nil
}

func protoName(p byte) string {
	if p == storage.ProtocolNative {
		return "native"
	}
	return "mqtt"
}

// Shutdown stops accepting, tells clients the server is shutting down,
// flushes, and closes every connection (wills go out as for any abnormal
// end).
func (s *Server) Shutdown(ctx context.Context) error {
	select {
	case <-s.sysStop:
		return nil
	default:
		close(s.sysStop)
	}
	s.serving.Store(false)
	var eps []endpoint
	s.sessions.each(func(ss *session) {
		ss.mu.Lock()
		if ss.ep != nil {
			eps = append(eps, ss.ep)
		}
		ss.mu.Unlock()
	})
	for _, ep := range eps {
		ep.tr().kick(reasonShutdown) // MQTT 5: DISCONNECT 0x8B [MQTT-3.14.2-1]
	}
	err := s.engine.Stop(ctx)
	select {
	case <-s.stopped:
	case <-ctx.Done():
		return ctx.Err()
	}
	return err
}

// now is the coarse clock: unix seconds, refreshed once a second.
func (s *Server) now() int64 { return s.clock.Load() }

// secondUp is the clock's current second rounded up: a deadline d seconds
// after it has not passed before d seconds from now.
func (s *Server) secondUp() int64 {
	t := s.opts.Now()
	u := t.Unix()
	if t.After(time.Unix(u, 0)) {
		u++
	}
	return u
}

// newID is a new server message id (ids.go).
func (s *Server) newID() uint64 { return s.ids.next(s.opts.Now()) }

func (s *Server) loopOf(el gnet.EventLoop) *loop {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	l := s.loops[el]
	if l == nil {
		l = &loop{el: el, srv: s}
		l.wheel.last = s.now() // deadlines are due from now on, not from the first one added
		s.loops[el] = l
	}
	return l
}

// handler is the gnet event handler; its callbacks stay out of Server's
// exported API.
type handler struct{ s *Server }

func (h handler) OnShutdown(gnet.Engine) {}

// OnBoot records the engine and the bound addresses.
func (h handler) OnBoot(eng gnet.Engine) gnet.Action {
	s := h.s
	s.engine = eng
	for i := range s.listeners {
		addr, err := boundAddr(eng, s.listeners[i].addr)
		if err != nil {
			s.booted <- err
			return gnet.Shutdown
		}
		s.listeners[i].bound = addr
	}
	s.booted <- nil
	return gnet.None
}

// boundAddr asks the kernel which address the listener of addr got.
func boundAddr(eng gnet.Engine, addr string) (net.Addr, error) {
	fd, err := eng.DupListener("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: dup listener %s: %w", ErrServer, addr, err)
	}
	defer syscall.Close(fd)
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return nil, fmt.Errorf("%w: getsockname: %w", ErrServer, err)
	}
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}, nil
	case *syscall.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}, nil
	}
	return nil, fmt.Errorf("%w: unexpected listener address %T", ErrServer, sa)
}

// protoAt is the protocol of the listener gc arrived on. gnet reports the
// listener's configured address as the connection's local one, and Start
// resolved any port 0 before gnet bound it, so the port tells without a
// system call per connection.
func (s *Server) protoAt(gc gnet.Conn) byte {
	if len(s.listeners) == 1 {
		return s.listeners[0].proto
	}
	port := 0
	if a, ok := gc.LocalAddr().(*net.TCPAddr); ok {
		port = a.Port
	}
	for _, l := range s.listeners {
		if b, _ := l.bound.(*net.TCPAddr); b != nil && b.Port == port {
			return l.proto
		}
	}
	return storage.ProtocolMQTT
}

// OnOpen gives the socket an endpoint of its listener's protocol and a
// deadline for its login.
func (h handler) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	s := h.s
	l := s.loopOf(gc.EventLoop())
	br := bridgedOf(gc) // a TLS/WebSocket connection handed over by Bridge, or nil (bridge.go)
	proto := s.protoOf(gc, br)
	var ep endpoint
	switch proto {
	case storage.ProtocolNative:
		c := &nativeConn{}
		c.init(gc, l, c)
		ep = c
	default:
		c := &mqttConn{}
		c.init(gc, l, c)
		ep = c
	}
	gc.SetContext(ep.tr())
	s.opened(ep.tr(), proto, br) // counts, per-IP table (limits.go)
	s.stats.ClientsTotal.Add(1)
	return nil, gnet.None
}

// OnTraffic serves the connection's inbound bytes.
func (h handler) OnTraffic(gc gnet.Conn) gnet.Action {
	t, _ := gc.Context().(*transport)
	if t == nil {
		return gnet.Close
	}
	return t.onTraffic()
}

// OnClose lets the connection go: its buffers, its deadlines, its session.
func (h handler) OnClose(gc gnet.Conn, err error) gnet.Action {
	t, _ := gc.Context().(*transport)
	if t == nil {
		return gnet.None
	}
	t.mu.Lock()
	t.closed = true
	if t.out != nil {
		putOut(t.out)
		t.out = nil
	}
	if t.spare != nil {
		putOut(t.spare)
		t.spare = nil
	}
	t.mu.Unlock()
	t.loop.wheel.remove(t)
	t.dropPartial()
	t.state = stateClosing
	t.ep.release()
	h.s.closed(t) // limits.go
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		h.s.log.Debug("connection closed", "remote", t.remoteAddr(), "err", err)
	}
	return gnet.None
}

// OnTick refreshes the clock and runs each loop's deadlines and the
// sessions' deadlines, once a second, just after the second begins: what
// falls due in a second is seen as it starts, not up to a second later.
func (h handler) OnTick() (time.Duration, gnet.Action) {
	s := h.s
	s.loopsRunning() // bridge.go
	now := s.opts.Now().Unix()
	s.clock.Store(now)
	s.loopsMu.Lock()
	for _, l := range s.loops {
		_ = l.el.Execute(nilCtx, tickTask{l, now})
	}
	s.loopsMu.Unlock()
	s.deadlines.advance(now, func(ss *session, at int64) { s.sessions.timeout(ss, at, now) })
	s.guard.logs.flush(s) // "log lines suppressed" summaries (limits.go)
	wall := time.Now()    // the real clock, also when tests drive opts.Now
	return wall.Truncate(time.Second).Add(time.Second + 2*time.Millisecond).Sub(wall), gnet.None
}

// nilCtx is the context for loop tasks, which never wait on it.
var nilCtx = context.Background()

// runFunc adapts a func to gnet.Runnable.
type runFunc func()

func (f runFunc) Run(context.Context) error { f(); return nil }

// gnetLogger routes gnet's logs to slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) {
	g.l.Debug("gnet: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (g gnetLogger) Infof(f string, a ...any) {
	g.l.Debug("gnet: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (g gnetLogger) Warnf(f string, a ...any) {
	g.l.Warn("gnet: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (g gnetLogger) Errorf(f string, a ...any) {
	g.l.Error("gnet: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (g gnetLogger) Fatalf(f string, a ...any) {
	g.l.Error("gnet: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}
