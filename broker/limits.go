package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cimgo/cim/storage"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Guard rails: limits on what one client, one source address or everyone
// together may take, and rate-limited logs of connection events, so that
// a flood of connects, subscriptions, publishes or log lines cannot take
// the node down or fill its disk. Every refusal is counted in Stats.
//
//	OnOpen ─► count the socket (per transport, per source IP)
//	CONNECT ─► admitConnect: sockets over MaxConnections, or over
//	           MaxConnectionsPerIP from one address ─► CONNACK 0x97 (v3: 0x03)
//	SUBSCRIBE ─► subscriptionAllowed: a new filter past
//	           MaxSubscriptionsPerClient ─► SUBACK 0x97 (v3: 0x80)
//	PUBLISH ─► publishAllowed: token buckets (messages, bytes) on the
//	           loop ─► DISCONNECT 0x96 (v3: close)
//
// Limits are swapped whole by SetLimits (a reload): a new connect, filter
// or publish is judged by the limits in force at that moment.

// Limits are the guard rails. The zero value of a field means no limit
// (LogRate: its default).
type Limits struct {
	// MaxConnections bounds the open client sockets of this node, all
	// listeners together; a CONNECT beyond it is refused. 0: no limit.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP bounds the open sockets from one source address.
	// 0: no limit. Sockets opened while it was 0 are not counted.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// MaxSubscriptionsPerClient bounds the filters one session holds. 0: no limit.
	MaxSubscriptionsPerClient int `yaml:"max_subscriptions_per_client"`
	// MaxPublishRate bounds the PUBLISH packets per second one connection
	// sends, over one second's burst. 0: no limit.
	MaxPublishRate float64 `yaml:"max_publish_rate"`
	// MaxPublishBytesRate bounds the payload bytes per second one
	// connection publishes, over one second's burst (a single larger
	// message passes when the bucket is full). 0: no limit.
	MaxPublishBytesRate float64 `yaml:"max_publish_bytes_rate"`
	// LogRate bounds the info lines per second of each kind (client
	// connected, client disconnected, auth failed, refusals); past it lines
	// are counted and a "log lines suppressed" summary follows each second.
	// Default 50; negative: no bound.
	LogRate int `yaml:"log_rate"`
}

// ErrLimits is wrapped by Limits.Validate errors; the message names the
// YAML key.
var ErrLimits = errors.New("broker: invalid limits")

// EnsureDefaults fills unset fields with their defaults.
func (l *Limits) EnsureDefaults() {
	if l.LogRate == 0 {
		l.LogRate = 50
	}
}

// Validate reports the first bad field, by its YAML key.
func (l *Limits) Validate() error {
	bad := func(key string) error { return fmt.Errorf("%w: %s: want 0 (no limit) or more", ErrLimits, key) }
	switch {
	case l.MaxConnections < 0:
		return bad("max_connections")
	case l.MaxConnectionsPerIP < 0:
		return bad("max_connections_per_ip")
	case l.MaxSubscriptionsPerClient < 0:
		return bad("max_subscriptions_per_client")
	case l.MaxPublishRate < 0:
		return bad("max_publish_rate")
	case l.MaxPublishBytesRate < 0:
		return bad("max_publish_bytes_rate")
	}
	return nil
}

// SetLimits replaces the guard rails (at start or on a reload). Clients
// already over a new limit stay; the limit applies to what they do next.
// Any goroutine.
func (s *Server) SetLimits(l Limits) error {
	l.EnsureDefaults()
	if err := l.Validate(); err != nil {
		return err
	}
	s.guard.limits.Store(&l)
	s.guard.logs.setRate(l.LogRate)
	return nil
}

// Limits returns the guard rails in force. Any goroutine.
func (s *Server) Limits() Limits { return *s.guard.load() }

// guardRails is the Server's state for this file.
type guardRails struct {
	limits atomic.Pointer[Limits] // nil until SetLimits: no limits

	open     atomic.Int64                 // client sockets open
	byKind   [len(connKinds)]atomic.Int64 // ... per (protocol, transport)
	ipMu     sync.Mutex
	perIP    map[netip.Addr]int32 // REQUIRES: ipMu held. sockets per source address, while MaxConnectionsPerIP is set
	logs     logLimiter
	up       loopsUp // bridge.go
	noLimits Limits
}

func (g *guardRails) load() *Limits {
	if l := g.limits.Load(); l != nil {
		return l
	}
	return &g.noLimits
}

// connKinds are the (protocol, transport) pairs counted per listener.
var connKinds = [...]struct{ protocol, transport string }{
	{ProtocolMQTT, "tcp"}, {ProtocolMQTT, "tls"}, {ProtocolMQTT, "ws"}, {ProtocolMQTT, "wss"},
	{ProtocolNative, "tcp"}, {ProtocolNative, "tls"}, {ProtocolNative, "ws"}, {ProtocolNative, "wss"},
	{ProtocolMQTT, "bridge"}, {ProtocolNative, "bridge"},
}

func kindOf(proto byte, transport string) int {
	p := ProtocolMQTT
	if proto == storage.ProtocolNative {
		p = ProtocolNative
	}
	for i, k := range connKinds {
		if k.protocol == p && k.transport == transport {
			return i
		}
	}
	if p == ProtocolNative {
		return len(connKinds) - 1
	}
	return len(connKinds) - 2
}

// ConnectionCount is the open sockets of one protocol over one transport.
type ConnectionCount struct {
	Protocol  string // ProtocolMQTT, ProtocolNative
	Transport string // "tcp", "tls", "ws", "wss", "bridge"
	Open      int64
}

// ConnectionCounts lists the open sockets per protocol and transport
// (every pair, zeros included). Any goroutine.
func (s *Server) ConnectionCounts() []ConnectionCount {
	out := make([]ConnectionCount, len(connKinds))
	for i, k := range connKinds {
		out[i] = ConnectionCount{Protocol: k.protocol, Transport: k.transport, Open: s.guard.byKind[i].Load()}
	}
	return out
}

// ipOf is the source address a connection is counted under.
func ipOf(a net.Addr) (netip.Addr, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return ip.Unmap(), ok
	case nil:
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap(), err == nil
}

// opened counts a new socket and attaches what Bridge knew about it. It
// runs before the connection is visible to any other goroutine. OnOpen only.
func (s *Server) opened(t *transport, proto byte, br *BridgeInfo) {
	if br != nil {
		t.ext.Store(&connExt{bridge: br})
	}
	g := &s.guard
	g.open.Add(1)
	t.kind = uint8(kindOf(proto, t.transportName()))
	g.byKind[t.kind].Add(1)
	if g.load().MaxConnectionsPerIP > 0 {
		if ip, ok := ipOf(t.remoteAddr()); ok {
			g.ipMu.Lock()
			if g.perIP == nil {
				g.perIP = make(map[netip.Addr]int32)
			}
			g.perIP[ip]++
			g.ipMu.Unlock()
			t.set(fIPCounted, true)
		}
	}
}

// closed uncounts a socket. OnClose only.
func (s *Server) closed(t *transport) {
	g := &s.guard
	g.open.Add(-1)
	g.byKind[t.kind].Add(-1)
	if t.has(fIPCounted) {
		t.set(fIPCounted, false)
		if ip, ok := ipOf(t.remoteAddr()); ok {
			g.ipMu.Lock()
			if g.perIP[ip]--; g.perIP[ip] <= 0 {
				delete(g.perIP, ip)
			}
			g.ipMu.Unlock()
		}
	}
}

// admitConnect judges a CONNECT by the connection limits: ok, or the code
// to refuse it with (the caller maps it for v3). Loop only.
func (s *Server) admitConnect(t *transport) (packets.Code, bool) {
	l := s.guard.load()
	if l.MaxConnections > 0 && s.guard.open.Load() > int64(l.MaxConnections) {
		s.stats.RefusedConnections.Add(1)
		s.guard.logs.log(s, logRefused, "connection refused", "limit", "max_connections", "max", l.MaxConnections, "remote", t.remoteAddr().String())
		return packets.ErrQuotaExceeded, false
	}
	if l.MaxConnectionsPerIP > 0 && t.has(fIPCounted) {
		ip, _ := ipOf(t.remoteAddr())
		s.guard.ipMu.Lock()
		n := s.guard.perIP[ip]
		s.guard.ipMu.Unlock()
		if n > int32(l.MaxConnectionsPerIP) {
			s.stats.RefusedConnectionsPerIP.Add(1)
			s.guard.logs.log(s, logRefused, "connection refused", "limit", "max_connections_per_ip", "max", l.MaxConnectionsPerIP, "remote", t.remoteAddr().String())
			return packets.ErrQuotaExceeded, false
		}
	}
	return packets.CodeSuccess, true
}

// subscriptionAllowed reports whether s may hold filter: it already does,
// or it holds fewer than MaxSubscriptionsPerClient. Takes s.mu.
func (srv *Server) subscriptionAllowed(s *session, filter string) bool {
	max := srv.guard.load().MaxSubscriptionsPerClient
	if max <= 0 {
		return true
	}
	s.mu.Lock()
	n := len(s.subs)
	held := false
	for i := range s.subs {
		if s.subs[i].filter == filter {
			held = true
			break
		}
	}
	s.mu.Unlock()
	if held || n < max {
		return true
	}
	srv.stats.RefusedSubscriptions.Add(1)
	return false
}

// rateBucket holds a connection's publish tokens. Loop only.
type rateBucket struct {
	msgs, bytes float64
	last        time.Time
}

// publishAllowed spends the tokens of one PUBLISH of size payload bytes.
// A bucket may go into debt by one message (so a message larger than a
// second's bytes passes when the bucket is full); a PUBLISH arriving while
// it is in debt is refused. Loop only.
func (s *Server) publishAllowed(t *transport, size int) bool {
	l := s.guard.load()
	if l.MaxPublishRate <= 0 && l.MaxPublishBytesRate <= 0 {
		return true
	}
	x := t.extLocal()
	now := time.Now()
	b := x.rate
	if b == nil {
		b = &rateBucket{msgs: l.MaxPublishRate, bytes: l.MaxPublishBytesRate, last: now}
		x.rate = b
	}
	dt := now.Sub(b.last).Seconds()
	b.last = now
	ok := true
	if r := l.MaxPublishRate; r > 0 {
		b.msgs = min(b.msgs+dt*r, r)
		if b.msgs <= 0 {
			ok = false
		}
	}
	if r := l.MaxPublishBytesRate; r > 0 {
		b.bytes = min(b.bytes+dt*r, r)
		if b.bytes <= 0 {
			ok = false
		}
	}
	if !ok {
		s.stats.RateLimited.Add(1)
		s.guard.logs.log(s, logRefused, "publish rate exceeded", "remote", t.remoteAddr().String(),
			"max_publish_rate", l.MaxPublishRate, "max_publish_bytes_rate", l.MaxPublishBytesRate)
		return false
	}
	b.msgs--
	b.bytes -= float64(size)
	return true
}

// Kinds of rate-limited log lines.
const (
	logConnected = iota
	logDisconnected
	logAuthFailed
	logRefused
	logTLSFailed
	numLogKinds
)

var logKindNames = [numLogKinds]string{"client connected", "client disconnected", "auth failed", "refused", "tls handshake failed"}

// logLimiter is a token bucket per kind of log line. Any goroutine.
type logLimiter struct {
	mu    sync.Mutex
	rate  float64                  // REQUIRES: mu held. lines per second per kind; <= 0 unbounded
	kinds [numLogKinds]logBucketSt // REQUIRES: mu held
}

type logBucketSt struct {
	tokens     float64
	last       time.Time
	suppressed int64
}

func (ll *logLimiter) setRate(r int) {
	ll.mu.Lock()
	ll.rate = float64(r)
	ll.mu.Unlock()
}

// allow spends a token of kind.
func (ll *logLimiter) allow(kind int) bool {
	ll.mu.Lock()
	defer ll.mu.Unlock()
	if ll.rate == 0 {
		ll.rate = 50 // before SetLimits: the default
	}
	if ll.rate < 0 {
		return true
	}
	b := &ll.kinds[kind]
	now := time.Now()
	if b.last.IsZero() {
		b.tokens = ll.rate
	} else {
		b.tokens = min(b.tokens+now.Sub(b.last).Seconds()*ll.rate, ll.rate)
	}
	b.last = now
	if b.tokens < 1 {
		b.suppressed++
		return false
	}
	b.tokens--
	return true
}

// log writes an info line of kind unless its bucket is empty.
func (ll *logLimiter) log(s *Server, kind int, msg string, args ...any) {
	if ll.ok(s, kind) {
		s.log.Info(msg, args...)
	}
}

// ok reports whether an info line of kind is to be written now (spending
// its token); a suppressed one is counted. Lines logged at every connect
// ask first, so that a suppressed line costs no arguments (6 allocations
// per connect; TestIdleConnCost).
func (ll *logLimiter) ok(s *Server, kind int) bool {
	if !s.log.Enabled(context.Background(), slog.LevelInfo) {
		return false
	}
	if !ll.allow(kind) {
		s.stats.LogsSuppressed.Add(1)
		return false
	}
	return true
}

// flush writes one summary line per kind that had lines suppressed since
// the last flush. Called once a second (OnTick).
func (ll *logLimiter) flush(s *Server) {
	var counts [numLogKinds]int64
	ll.mu.Lock()
	for i := range ll.kinds {
		counts[i], ll.kinds[i].suppressed = ll.kinds[i].suppressed, 0
	}
	ll.mu.Unlock()
	for i, n := range counts {
		if n > 0 {
			s.log.Info("log lines suppressed", "kind", logKindNames[i], "suppressed", n)
		}
	}
}

// protocolName is how logs name an MQTT protocol level.
func mqttLevelName(v byte) string {
	switch v {
	case 3:
		return "mqtt/3.1"
	case 4:
		return "mqtt/3.1.1"
	case 5:
		return "mqtt/5"
	}
	return "mqtt"
}

// keepaliveOf recovers the keepalive (seconds) from the deadline span
// (1.5×, rounded up: ka + ceil(ka/2)); -1 means none.
func keepaliveOf(span int32) int {
	if span < 0 {
		return 0
	}
	return int(span) * 2 / 3
}

// logConnected is the info line of a client whose CONNECT succeeded. Loop only.
func (c *mqttConn) logConnected(clean bool) {
	s := c.loop.srv
	if !s.guard.logs.ok(s, logConnected) {
		return
	}
	s.log.Info("client connected", "client", c.clientID(), "user", c.user(),
		"remote", c.remoteAddr().String(), "protocol", mqttLevelName(c.version), "transport", c.transportName(),
		"keepalive", keepaliveOf(c.kaSpan), "clean_start", clean)
}

// logDisconnected is the info line of a connected client going away. Loop only.
func (c *mqttConn) logDisconnected() {
	reason := "connection lost"
	switch {
	case c.closedBy != 0:
		reason = closeReason(c.closedBy - 1).String()
	case c.normalEnd:
		reason = "client disconnected"
	}
	s := c.loop.srv
	if !s.guard.logs.ok(s, logDisconnected) {
		return
	}
	s.log.Info("client disconnected", "client", c.clientID(), "user", c.user(),
		"remote", c.remoteAddr().String(), "reason", reason)
}

// logAuthFailed counts and logs a refused login. Loop only.
func (c *mqttConn) logAuthFailed(clientID, user string, err error) {
	c.loop.srv.stats.AuthFailures.Add(1)
	c.loop.srv.guard.logs.log(c.loop.srv, logAuthFailed, "auth failed", "client", clientID, "user", user,
		"remote", c.remoteAddr().String(), "err", err)
}

// user is the logged-in user name, "" for an anonymous client.
func (c *mqttConn) user() string {
	if c.id == nil {
		return ""
	}
	return c.id.User
}
