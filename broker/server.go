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
// it with Shutdown.
type Server struct {
	gnet.BuiltinEventEngine

	opts      Options
	log       *slog.Logger
	stats     Stats
	subs      *topic.Trie[*session]
	retained  *topic.Index[*Message]
	sessions  *registry
	passwords *passwords  // nil: anonymous
	store     *storage.DB // nil: memory only
	deny      []string    // DenyFilters

	clock atomic.Int64 // unix seconds, refreshed every tick
	// partialBytes is the buffer space of every conn's unfinished inbound
	// packet (input.go), bounded by MaxPartialBytes.
	partialBytes atomic.Int64
	ids          atomic.Uint64
	started      time.Time

	loopsMu sync.Mutex
	loops   map[gnet.EventLoop]*loop // REQUIRES: loopsMu held

	engine  gnet.Engine
	addr    net.Addr
	booted  chan error
	stopped chan struct{}
	sysStop chan struct{}
}

// ErrServer is wrapped by errors starting or stopping a Server.
var ErrServer = errors.New("broker: server")

// New checks opts and builds a Server; nothing listens until Start.
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
		started:  time.Now(),
	}
	s.sessions = newRegistry(s)
	s.clock.Store(time.Now().Unix())
	for _, f := range opts.DenyFilters {
		if err := topic.ValidFilter(f); err != nil {
			return nil, fmt.Errorf("%w: DenyFilters: %q: %w", ErrOptions, f, err)
		}
		s.deny = append(s.deny, f)
	}
	if opts.Store != nil {
		s.store = opts.Store
		if err := s.recover(); err != nil {
			return nil, err
		}
	}
	if opts.PasswordFile != "" {
		p, err := loadPasswords(opts.PasswordFile)
		if err != nil {
			return nil, err
		}
		s.passwords = p
	}
	return s, nil
}

// Start listens and serves until Shutdown. It returns once the listener is
// bound (or failed to bind).
func (s *Server) Start() error {
	go func() {
		err := gnet.Run(s, "tcp://"+s.opts.MQTTAddr,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(s.opts.Loops),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithTicker(true),
			gnet.WithReuseAddr(true),
			gnet.WithLogger(gnetLogger{s.log}),
		)
		select {
		case s.booted <- fmt.Errorf("%w: %w", ErrServer, err):
		default:
		}
		if err != nil {
			s.log.Error("mqtt listener stopped", "err", err)
		}
		close(s.stopped)
	}()
	if err := <-s.booted; err != nil {
		return err
	}
	if s.opts.SysInterval > 0 {
		go s.publishSys()
	}
	s.log.Info("mqtt listening", "addr", s.addr.String(), "loops", s.opts.Loops)
	return nil
}

// Addr is the MQTT listener's bound address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.addr }

// Stats returns the live counters.
func (s *Server) Stats() *Stats { return &s.stats }

// Shutdown stops accepting, tells v5 clients the server is shutting down,
// flushes, and closes every connection (wills go out as for any abnormal end).
func (s *Server) Shutdown(ctx context.Context) error {
	select {
	case <-s.sysStop:
		return nil
	default:
		close(s.sysStop)
	}
	var conns []*conn
	s.sessions.each(func(ss *session) {
		ss.mu.Lock()
		if ss.conn != nil {
			conns = append(conns, ss.conn)
		}
		ss.mu.Unlock()
	})
	for _, c := range conns {
		c.kick(errServerShuttingDown) // [MQTT-3.14.2-1] reason 0x8B
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

func (s *Server) nextID() uint64 { return s.ids.Add(1) }

// denied reports whether filter falls under a DenyFilters entry.
func (s *Server) denied(filter string) bool {
	for _, d := range s.deny {
		if d == filter || topic.Match(d, filter) {
			return true
		}
	}
	return false
}

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

// OnBoot records the engine and the bound address.
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.engine = eng
	addr, err := boundAddr(eng)
	if err != nil {
		s.booted <- err
		return gnet.Shutdown
	}
	s.addr = addr
	s.booted <- nil
	return gnet.None
}

// boundAddr asks the kernel which address the listener got.
func boundAddr(eng gnet.Engine) (net.Addr, error) {
	fd, err := eng.Dup()
	if err != nil {
		return nil, fmt.Errorf("%w: dup listener: %w", ErrServer, err)
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

// OnOpen gives the socket a conn and a deadline for its CONNECT.
func (s *Server) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	l := s.loopOf(gc.EventLoop())
	c := &conn{gc: gc, loop: l, srv: s}
	now := s.now()
	c.lastSeen = now
	c.kaSpan = int32(max(s.opts.ConnectTimeout/time.Second, 1))
	gc.SetContext(c)
	l.wheel.add(c, now+int64(c.kaSpan))
	s.stats.ClientsTotal.Add(1)
	return nil, gnet.None
}

// OnTraffic serves the conn's inbound bytes.
func (s *Server) OnTraffic(gc gnet.Conn) gnet.Action {
	c, _ := gc.Context().(*conn)
	if c == nil {
		return gnet.Close
	}
	return c.onTraffic()
}

// OnClose detaches the conn from its session.
func (s *Server) OnClose(gc gnet.Conn, err error) gnet.Action {
	c, _ := gc.Context().(*conn)
	if c == nil {
		return gnet.None
	}
	c.mu.Lock()
	c.closed = true
	if c.out != nil {
		putOut(c.out)
		c.out = nil
	}
	if c.spare != nil {
		putOut(c.spare)
		c.spare = nil
	}
	c.mu.Unlock()
	c.loop.wheel.remove(c)
	c.dropPartial()
	active := c.state == stateActive || c.sess != nil
	c.state = stateClosing
	if active {
		c.release()
	}
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		s.log.Debug("connection closed", "client", c.clientID, "err", err)
	}
	return gnet.None
}

// OnTick refreshes the clock and runs each loop's deadlines, once a second.
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	now := time.Now().Unix()
	s.clock.Store(now)
	s.loopsMu.Lock()
	for _, l := range s.loops {
		_ = l.el.Execute(nilCtx, tickTask{l, now})
	}
	s.loopsMu.Unlock()
	return time.Second, gnet.None
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
