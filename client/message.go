package client

import (
	"time"

	"github.com/cimgo/cim/broker/wire"
)

// Target is where a message goes; build one with User, Group, Topic or
// Everyone.
type Target = wire.Target

// User addresses a private message to a user id (topic cim/u/<id>).
func User(id uint64) Target { return wire.ToUser(id) }

// Group addresses a named group (topic cim/g/<name>).
func Group(name string) Target { return wire.ToGroup(name) }

// Topic addresses any topic, shared with MQTT clients subscribed to it.
func Topic(topic string) Target { return wire.ToTopic(topic) }

// Everyone addresses every online user but the sender (cim's group chat).
func Everyone() Target { return wire.ToAll() }

// Message is a message delivered to the client. It is the listener's to
// keep: nothing in it is reused.
type Message struct {
	ID       uint64    // server message id
	From     uint64    // sender's user id; 0 for an MQTT publisher
	FromName string    // sender's name (an MQTT publisher's client id)
	To       Target    // where it was sent: User(me), a Group, a Topic or Everyone
	Body     []byte    //
	Time     time.Time // when the server accepted it
	QoS      byte      // 1: acknowledged to the server after the listener returned
	Offline  bool      // it waited in the server's offline store
}

// Publish is a message (Body) or an ordered batch (Batch) to send.
type Publish struct {
	To    Target
	Body  []byte   // one message, or
	Batch [][]byte // several, delivered in this order, each with its own Ack
	// AtMostOnce sends at QoS 0: the server does not store the message
	// before acknowledging it and does not deliver it again; a connection
	// lost before the ack fails it with ErrConnectionLost. The default is
	// QoS 1: the ack means the message is stored, and an unacknowledged
	// message is sent again on the next connection (the server drops the
	// duplicate by its client message id).
	AtMostOnce bool
	// Delay asks the server to deliver the message this long after it
	// accepted it (stored server-side: it survives the client exiting and
	// the server restarting). Millisecond precision.
	Delay time.Duration
}

// Ack is the server's answer to one message.
type Ack struct {
	ID    uint64    // client message id
	MsgID uint64    // server message id; 0 if refused
	Code  wire.Code // wire.CodeOK, wire.CodeOffline (stored), or why it was refused
	Time  time.Time // when the server accepted it
	Text  string    // the server's explanation of a refusal
}

// Err is nil for CodeOK and the code (an error) otherwise; ErrOffline for a
// message stored for an offline receiver.
func (a Ack) Err() error {
	if a.Code == wire.CodeOK {
		return nil
	}
	return a.Code
}
