package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/cimgo/cim/broker/topic"
	"github.com/cimgo/cim/storage"
)

// The Server's API for the code around it (the HTTP API, the admin API, a
// cluster adapter). Every method is safe from any goroutine and never
// called from an event loop by the broker itself.

// Protocol names used by this API.
const (
	ProtocolMQTT   = "mqtt"
	ProtocolNative = "native"
)

// ErrNoSuchClient is returned for an unknown (protocol, id).
var ErrNoSuchClient = errors.New("broker: no such client")

func protoByte(name string) (byte, bool) {
	switch name {
	case ProtocolMQTT:
		return storage.ProtocolMQTT, true
	case ProtocolNative:
		return storage.ProtocolNative, true
	}
	return 0, false
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() StatsSnapshot { return s.stats.Snapshot() }

// Addr is the MQTT listener's bound address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.ListenerAddr(ProtocolMQTT) }

// ListenerAddr is the bound address of the listener of a protocol, or nil.
func (s *Server) ListenerAddr(protocol string) net.Addr {
	p, _ := protoByte(protocol)
	for _, l := range s.listeners {
		if l.proto == p {
			return l.bound
		}
	}
	return nil
}

// PublishOptions are the options of a message the server publishes itself.
type PublishOptions struct {
	QoS    byte
	Retain bool
	// From names the publisher in the message (native: the sender's id).
	From string
	// Expiry, if not zero, is the message's lifetime.
	Expiry time.Duration
}

// Publish routes a message as if a client had published it. With QoS 1/2
// it returns once the message is stored for every persistent subscriber
// (or ctx is done); it reports how many sessions it went to.
func (s *Server) Publish(ctx context.Context, name string, payload []byte, o PublishOptions) (int, error) {
	if err := topic.ValidName(name); err != nil {
		return 0, err
	}
	if o.QoS > 2 {
		return 0, errors.New("broker: QoS above 2")
	}
	now := s.now()
	m := &Message{ID: s.newID(), Topic: strings.Clone(name), Payload: slices.Clone(payload), From: o.From,
		Created: now, QoS: o.QoS, Retain: o.Retain}
	if o.Expiry > 0 {
		m.Expiry = now + int64(max(o.Expiry/time.Second, 1))
	}
	s.stats.MessagesIn.Add(1)
	if o.QoS == 0 {
		return s.route(m, nil, nil), nil
	}
	type result struct {
		n   int
		err error
	}
	ch := make(chan result, 1)
	s.route(m, nil, func(matched int, err error) { ch <- result{matched, err} })
	select {
	case r := <-ch:
		return r.n, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// ClientInfo describes one session: a connected client, or one kept while
// its client is away.
type ClientInfo struct {
	Protocol  string
	ID        string
	User      string
	Remote    string    // remote address while connected
	Connected bool      // a connection is attached
	Since     time.Time // when the connection opened (connected only)
	Inflight  int       // QoS 1/2 sent and not yet acknowledged
	Queued    int       // waiting in memory (plus what is on disk after a restart)
	Subs      int
	Transport string // what the connection runs over: "tcp", "tls", "ws", "wss" (connected only)
	Identity  string // the verified TLS client certificate's identity, if any (bridge.go)
}

// Clients lists every session, sorted by protocol and id.
func (s *Server) Clients() []ClientInfo {
	var out []ClientInfo
	s.sessions.each(func(ss *session) {
		ss.mu.Lock()
		ci := ClientInfo{Protocol: protoName(ss.key.proto), ID: ss.key.id,
			Inflight: len(ss.inflight), Queued: len(ss.queueLocked()), Subs: len(ss.subs)}
		if ss.ident != nil {
			ci.User = ss.ident.User
		}
		if ep := ss.ep; ep != nil {
			t := ep.tr()
			ci.Connected = true
			ci.Remote = t.remoteAddr().String() // the real one for a bridged conn
			ci.Since = time.Unix(int64(t.opened), 0)
			ci.Transport = t.transportName()
			if br := t.bridgeInfo(); br != nil {
				ci.Identity = br.Identity
			}
		}
		ss.mu.Unlock()
		out = append(out, ci)
	})
	slices.SortFunc(out, func(a, b ClientInfo) int {
		if c := strings.Compare(a.Protocol, b.Protocol); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// SubscriptionInfo is one subscription of a session.
type SubscriptionInfo struct {
	Filter            string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	ID                uint32 // subscription identifier (MQTT 5), 0 if none
}

// Subscriptions lists the subscriptions of the session (protocol, id).
func (s *Server) Subscriptions(protocol, id string) ([]SubscriptionInfo, error) {
	p, ok := protoByte(protocol)
	ss := s.sessions.lookup(skey{p, id})
	if !ok || ss == nil {
		return nil, ErrNoSuchClient
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	out := make([]SubscriptionInfo, len(ss.subs))
	for i, e := range ss.subs {
		out[i] = SubscriptionInfo{Filter: e.filter, QoS: e.sub.QoS, NoLocal: e.sub.NoLocal,
			RetainAsPublished: e.sub.RetainAsPublished, RetainHandling: e.sub.RetainHandling, ID: e.sub.ID}
	}
	return out, nil
}

// Kick closes the connection of the session (protocol, id), telling the
// client it was an administrative action (MQTT 5: DISCONNECT 0x98). The
// session itself stays (as for any disconnect). It reports
// ErrNoSuchClient if no such client is connected.
func (s *Server) Kick(protocol, id string) error {
	p, ok := protoByte(protocol)
	ss := s.sessions.lookup(skey{p, id})
	if !ok || ss == nil {
		return ErrNoSuchClient
	}
	ss.mu.Lock()
	ep := ss.ep
	ss.mu.Unlock()
	if ep == nil {
		return ErrNoSuchClient
	}
	ep.tr().kick(reasonKicked)
	return nil
}

// RetainedInfo is one retained message.
type RetainedInfo struct {
	Topic   string
	Payload []byte
	QoS     byte
	Created time.Time
}

// Retained lists the retained messages whose topic matches filter ("#" for
// all), sorted by topic.
func (s *Server) Retained(filter string) ([]RetainedInfo, error) {
	if err := topic.ValidFilter(filter); err != nil {
		return nil, err
	}
	var out []RetainedInfo
	s.retained.MatchFilter(filter, func(name string, m *Message) bool {
		out = append(out, RetainedInfo{Topic: name, Payload: slices.Clone(m.Payload), QoS: m.QoS, Created: time.Unix(m.Created, 0)})
		return true
	})
	slices.SortFunc(out, func(a, b RetainedInfo) int { return strings.Compare(a.Topic, b.Topic) })
	return out, nil
}

// DeleteRetained clears the retained message of a topic (from the store
// too). It reports whether there was one.
func (s *Server) DeleteRetained(name string) bool {
	if _, ok := s.retained.Get(name); !ok {
		return false
	}
	s.retain(&Message{Topic: name}) // an empty payload clears it
	if s.store != nil {
		lb := lazyBatch{db: s.store}
		lb.get().DeleteRetained(name)
		s.commit(&lb, nil)
	}
	return true
}

// LiveFilters lists the topic filters this node's sessions hold (a
// cluster's full interest state).
func (s *Server) LiveFilters() []string { return s.filters.filters() }

// ErrNotReady is wrapped by Ready's errors.
var ErrNotReady = errors.New("broker: not ready")

// Ready reports whether the server serves: recovered (New did that),
// listening (Start returned and Shutdown has not begun) and able to write
// to its store (no write failed since the last one that succeeded, and no
// sticky write failure). The error says which is missing.
func (s *Server) Ready() error {
	if !s.serving.Load() {
		return fmt.Errorf("%w: not listening", ErrNotReady)
	}
	if s.store != nil {
		if f := s.store.Stats().Failed; f != nil {
			return fmt.Errorf("%w: storage refuses writes: %w", ErrNotReady, f)
		}
	}
	if s.storeFailing.Load() {
		return fmt.Errorf("%w: the last storage write failed", ErrNotReady)
	}
	return nil
}

// Uptime is how long ago the server was created.
func (s *Server) Uptime() time.Duration { return s.opts.Now().Sub(s.started) }

// Store is the storage the server writes to, nil in memory mode (for
// metrics; the caller must not write to it).
func (s *Server) Store() *storage.DB { return s.store }

// SetAuth replaces who may log in and what clients may do (a reload):
// logins from now on use a; connected clients keep their identity, and
// their deliveries are judged by a's rules.
func (s *Server) SetAuth(a *Auth) { s.auth.Store(a) }

// NodeName is this node's name.
func (s *Server) NodeName() string { return s.opts.NodeName }
