package bench

import (
	"context"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"
)

// Proto dials client connections of one wire protocol. Implementations
// register themselves with Register from an init function.
type Proto interface {
	// Name is the value of --proto that selects this protocol.
	Name() string
	// Dial connects and completes the protocol handshake (MQTT: CONNECT and
	// CONNACK), then starts the connection's reader. It returns only after the
	// handshake, so the time it takes is the connect latency. h receives
	// everything that arrives afterwards, from the reader goroutine.
	Dial(ctx context.Context, cfg *ClientConfig, h Handler) (Client, error)
}

// Client is one connection under load. Publish and Flush are called from one
// goroutine (the publisher); Subscribe, Ping and Close may be called from
// others.
type Client interface {
	// Subscribe subscribes to one topic filter and waits for the broker's
	// answer; a refusal is an error wrapping ErrSubscribe.
	Subscribe(ctx context.Context, filter string, qos byte) error
	// Publish queues the message for sending. Bytes are batched: they go
	// out when the buffer fills, on Flush, or when Publish has to wait; at
	// that moment the client writes the send time (unix ns) into the first
	// 8 payload bytes of every message in the batch, so time spent in the
	// tool's own buffer is not latency. It may block while the in-flight
	// window (QoS > 0) is full, until ctx is done. payload is only read
	// during the call. sentAt is the time of the client's latest write, a
	// coarse clock for the caller's schedule.
	Publish(ctx context.Context, topic string, payload []byte, qos byte) (sentAt int64, err error)
	// Flush writes out whatever is buffered.
	Flush() error
	// Ping sends a keepalive if nothing was written for half the keepalive
	// interval. It is cheap when nothing is due; a runner calls it ~1/s.
	Ping(now time.Time)
	// Close says goodbye (MQTT DISCONNECT), closes the socket and waits for
	// the reader goroutine to end. No Handler call happens after Close.
	Close() error
	// Abort drops the connection at once, without goodbye and discarding
	// unsent bytes (TCP RST), for a broker that stopped reading: nothing a
	// stuck publisher queued reaches the broker after the run. It does not
	// wait; Close may follow.
	Abort()
}

// SessionPresenter may be implemented by a Client that can tell whether
// the broker resumed a stored session at connect (MQTT: CONNACK session
// present). The churn scenario counts it; without it every connect counts
// as a fresh session.
type SessionPresenter interface {
	// SessionPresent is fixed once Dial has returned; any goroutine may
	// call it, and it does not block.
	SessionPresent() bool
}

// Handler receives what a Client's reader goroutine sees. Calls for one
// client come from one goroutine and must not block.
type Handler interface {
	// OnMessage is called for each message delivered to the client. payload
	// is borrowed: it is valid only until OnMessage returns. now is the
	// receive time in unix nanoseconds.
	OnMessage(payload []byte, now int64)
	// OnSent reports that n publishes were written to the socket at time
	// at (unix ns), the send time stamped into them. It is called with the
	// client's write lock held, from whichever goroutine flushed: it must
	// be quick and must not call the Client.
	OnSent(n int, at int64)
	// OnAck is called when the broker completes one of our QoS > 0 publishes
	// (PUBACK, PUBCOMP), with the time from send to completion.
	OnAck(latency time.Duration)
	// OnError reports a failure that does not end the connection (for
	// example a PUBACK with a failure reason code).
	OnError(err error)
	// OnClose is called once if the connection ends without Close being
	// called (the broker closed it, disconnected us, or I/O failed).
	OnClose(err error)
}

// ClientConfig is what a Proto needs to open one connection.
type ClientConfig struct {
	Addr      string       // broker host:port
	LocalAddr *net.TCPAddr // source address to bind, nil for any
	ClientID  string
	Username  string
	Password  string
	// Clean starts a fresh session (MQTT clean session / clean start).
	Clean bool
	// SessionExpiry applies to persistent sessions (MQTT 5).
	SessionExpiry time.Duration
	KeepAlive     time.Duration
	// ConnectTimeout bounds dialing plus the handshake.
	ConnectTimeout time.Duration
	// Version is the protocol version (MQTT: 4 = 3.1.1, 5 = 5.0).
	Version byte
	// Inflight bounds unacknowledged QoS > 0 publishes; the broker may lower it.
	Inflight int
	// ReadBuffer and WriteBuffer size the connection's buffers. Idle
	// connections use small ones so that 10,000s of them stay cheap.
	ReadBuffer  int
	WriteBuffer int
	// Retain asks for every publish to be retained (MQTT retain flag). A
	// protocol without retained messages ignores it.
	Retain bool
	// UserProperties go with every publish (MQTT 5 user properties); a
	// protocol without them ignores them. Shared, read only.
	UserProperties []UserProperty
}

var protos struct {
	mu sync.Mutex // guards m
	m  map[string]Proto
}

// Register makes a protocol available to --proto. It panics on a duplicate
// name, which is a programming error.
func Register(p Proto) {
	protos.mu.Lock()
	defer protos.mu.Unlock()
	if protos.m == nil {
		protos.m = make(map[string]Proto)
	}
	if _, dup := protos.m[p.Name()]; dup {
		panic(fmt.Sprintf("bench: protocol %q registered twice", p.Name()))
	}
	protos.m[p.Name()] = p
}

// Protos lists the registered protocol names, sorted.
func Protos() []string {
	protos.mu.Lock()
	defer protos.mu.Unlock()
	var names []string
	for n := range protos.m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func lookupProto(name string) (Proto, bool) {
	protos.mu.Lock()
	defer protos.mu.Unlock()
	p, ok := protos.m[name]
	return p, ok
}
