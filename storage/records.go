package storage

import "fmt"

// Records are msgpack maps with one- to three-letter keys: short enough to
// cost little per queued message, named so a new field can be added without
// breaking old data (a missing key decodes as the zero value). omitempty keeps
// zero fields off disk. The struct tags are the schema: Session, Sub and
// Message are encoded and decoded by hand (encode.go, decode.go) to match
// them, Account and Group by the msgpack library.

// Protocol values of Session.Protocol and of the first byte of SessionKey.
const (
	ProtocolMQTT   byte = 1
	ProtocolNative byte = 2
)

// NeverExpire as Session.ExpiryInterval keeps a disconnected session forever.
const NeverExpire uint32 = 0xFFFFFFFF

// Session is a persistent session, stored at s␀<SessionKey(Protocol, ClientID)>.
type Session struct {
	// ClientID is the MQTT client id, or the native user id as a string.
	ClientID string `msgpack:"c"`
	Protocol byte   `msgpack:"p"` // ProtocolMQTT or ProtocolNative
	Version  byte   `msgpack:"v,omitempty"`
	Subs     []Sub  `msgpack:"s,omitempty"`
	// ExpiryInterval is in seconds from DisconnectedAt; NeverExpire never.
	// The broker times and enforces it (storage keeps it for recovery).
	ExpiryInterval uint32 `msgpack:"e,omitempty"`
	// DisconnectedAt is unix ms; 0 while connected.
	DisconnectedAt int64  `msgpack:"d,omitempty"`
	Node           string `msgpack:"n,omitempty"` // node that last owned the session
	NextSeq        uint64 `msgpack:"q,omitempty"` // next queue seq the broker will assign
	// Rx are the MQTT packet ids of inbound QoS 2 messages the session
	// accepted and whose PUBREL has not come yet: a resend of one after a
	// restart is known as a duplicate.
	Rx []uint16 `msgpack:"x,omitempty"`
}

// Key is the session's key: SessionKey(s.Protocol, s.ClientID).
func (s *Session) Key() string { return SessionKey(s.Protocol, s.ClientID) }

// Sub is one subscription of a Session.
type Sub struct {
	Filter            string `msgpack:"f"`
	QoS               byte   `msgpack:"q,omitempty"`
	NoLocal           bool   `msgpack:"nl,omitempty"`
	RetainAsPublished bool   `msgpack:"rap,omitempty"`
	RetainHandling    byte   `msgpack:"rh,omitempty"`
	ID                uint32 `msgpack:"i,omitempty"` // subscription identifier (MQTT 5)
}

// Message is a queued (o␀), retained (r␀), history (h␀) or delayed (d␀)
// message. Which fields a keyspace uses is the broker's business; storage
// reads Created and Expiry (TTLs), ID (the history and delayed keys) and
// Payload (history search).
type Message struct {
	// ID is the server message id. History and delayed messages are keyed by it.
	ID      uint64 `msgpack:"i,omitempty"`
	Topic   string `msgpack:"t"`
	Payload []byte `msgpack:"p,omitempty"`
	QoS     byte   `msgpack:"q,omitempty"`
	Retain  bool   `msgpack:"r,omitempty"`
	From    string `msgpack:"f,omitempty"`
	Created int64  `msgpack:"c,omitempty"` // unix ms
	Expiry  int64  `msgpack:"e,omitempty"` // unix ms; 0 none
	// Props are the encoded MQTT 5 properties; opaque here, owned by the broker.
	Props []byte `msgpack:"x,omitempty"`
	// PacketID and Sent record the in-flight state of a queued message: Sent
	// means it went out and is unacknowledged (for QoS 2: PUBREL stage).
	PacketID uint16 `msgpack:"k,omitempty"`
	Sent     bool   `msgpack:"s,omitempty"`
	// SenderID and SenderName identify a native sender (history, offline
	// and delayed messages carry them to the receiver).
	SenderID   uint64 `msgpack:"u,omitempty"`
	SenderName string `msgpack:"n,omitempty"`
	// ClientMsgID is the sender's own id for the message (native QoS 1).
	ClientMsgID string `msgpack:"m,omitempty"`
	// SubIDs are the MQTT 5 subscription identifiers a queued message is
	// delivered with.
	SubIDs []uint32 `msgpack:"si,omitempty"`
}

// Account is a registered user, stored at a␀<userID> (and n␀<Name> -> ID).
type Account struct {
	ID      uint64 `msgpack:"i"`
	Name    string `msgpack:"n"`
	Created int64  `msgpack:"c,omitempty"` // unix ms
	// Hash is the credential hash (the broker computes it, e.g. bcrypt);
	// storage keeps the bytes. Nil: no password.
	Hash []byte `msgpack:"h,omitempty"`
}

// Group is a named group, stored at g␀<Name>; its members at
// p␀<Name>␀<userID> and u␀<userID>␀<Name>.
type Group struct {
	Name    string `msgpack:"n"`
	Owner   uint64 `msgpack:"o,omitempty"` // user id of the creator
	Created int64  `msgpack:"c,omitempty"` // unix ms
}

// corrupt marks a record that failed to decode: every value in the store
// was written by this package, so one that does not decode was damaged.
func corrupt(key []byte, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: key %q: %w", ErrCorrupt, key, err)
}
