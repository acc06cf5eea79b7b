package broker

import (
	"errors"
	"fmt"

	"github.com/cimgo/cim/cluster"
	"github.com/cimgo/cim/internal/mp"
	"github.com/cimgo/cim/storage"
	"github.com/vmihailenco/msgpack/v5"
)

// What the broker puts in the cluster's opaque fields. Every body is
// msgpack; structs are encoded as arrays (fields by position), so a later
// version may append fields that an older node ignores.
//
// A forwarded publish (cluster.Publish) carries the broker's Message
// verbatim in its fields, and this envelope in Props:
//
//	[version, props bin, senderID uint, senderName str, shares [str], relay [str], to [str], plain bool]
//
// shares: the $share groups the receiving node serves for this message
// (every other shared group there skips it); relay: session store keys the
// message is for after a hand-off (cluster_owner.go): the receiver delivers
// to those sessions only, unless it also routes the message; to: every node
// the origin sent the message to (a relay's receiver skips a session that
// gets its own copy anyway); plain: the receiver holds a matching filter
// (it routes the message; a relay alone is delivered to its sessions only).
//
// A request body is one op byte and a msgpack body:
//
//	op 1 takeover  [proto, id]           -> 's' epoch snapshot, 'm' node (handed there), or empty (none)
//	op 2 merge     snapshot              -> empty
//	op 3 presence  [full, on, off]       -> empty
//	op 4 retained  [after]               -> [messages, more]
//	op 5 dir sync  [fromID]              -> [accounts, groups, more]
//	op 6 dir apply [ops]                 -> empty (the registrar's decisions, in order)
//	op 7 dir call  dirOp                 -> dirResult (to the registrar)
//	op 8 interest  [[filter, live], ...] -> empty (a hint ahead of the gossip)

const envelopeVersion = 1

type fwdEnvelope struct {
	_msgpack   struct{} `msgpack:",as_array"`
	Version    int
	Props      []byte
	SenderID   uint64
	SenderName string
	Shares     []string
	Relay      []string
	To         []string
	Plain      bool

	// toRaw is To as decodeEnvelope found it, decoded only when asked
	// (toList): most receivers never need it (not encoded).
	toRaw []byte
}

// toList is To, decoded from the envelope if that is where it is.
func (e *fwdEnvelope) toList() []string {
	if e.To == nil && len(e.toRaw) > 0 {
		r := mp.Reader{B: e.toRaw}
		e.To = r.Strs()
	}
	return e.To
}

// errWire: a body from a peer that does not decode.
var errWire = errors.New("broker: cluster: malformed peer message")

// envelopeSize bounds the encoded size of e.
func envelopeSize(e *fwdEnvelope) int {
	n := 40 + len(e.Props) + len(e.SenderName)
	for _, l := range [][]string{e.Shares, e.Relay, e.To} {
		for _, s := range l {
			n += 5 + len(s)
		}
	}
	return n
}

// fillFromPublish (the inverse of publishFor, cluster_forward.go) fills m
// from p and its decoded envelope env; m aliases p's bytes. A publish
// that names no origin came from the peer that sent it, from.
func fillFromPublish(m *Message, p *cluster.Publish, env *fwdEnvelope, from string) {
	*m = Message{ID: p.ID, Topic: p.Topic, Payload: p.Payload, Props: env.Props, From: p.Sender, Origin: p.Origin,
		Sender: env.SenderID, SenderName: env.SenderName, Created: p.Created, Expiry: p.Expiry, QoS: p.QoS, Retain: p.Retain}
	if len(m.Props) == 0 {
		m.Props = nil
	}
	if m.Origin == "" {
		m.Origin = from
	}
}

// Request ops.
const (
	opTakeover byte = 1 + iota
	opMerge
	opPresence
	opRetained
	opDirSync
	opDirApply
	opDirCall
	opInterestHint
)

// request encodes op and v as a request body.
func request(op byte, v any) ([]byte, error) {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append([]byte{op}, b...), nil
}

// decodeBody unmarshals a request or response body into v.
func decodeBody(b []byte, v any) error {
	if err := msgpack.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %w", errWire, err)
	}
	return nil
}

type takeoverReq struct {
	_msgpack struct{} `msgpack:",as_array"`
	Proto    byte
	ID       string
}

// wireSnapshot is a Snapshot on the wire (its queue read wholly into it).
type wireSnapshot struct {
	_msgpack struct{} `msgpack:",as_array"`
	Session  storage.Session
	Queue    []wireQueued
}

type wireQueued struct {
	_msgpack struct{} `msgpack:",as_array"`
	Seq      uint64
	Message  storage.Message
}

func encodeSnapshot(s *Snapshot) ([]byte, error) {
	w := wireSnapshot{Session: s.Session, Queue: make([]wireQueued, len(s.Queue))}
	for i, q := range s.Queue {
		w.Queue[i] = wireQueued{Seq: q.Seq, Message: q.Message}
	}
	return msgpack.Marshal(&w)
}

func decodeSnapshot(b []byte) (*Snapshot, error) {
	var w wireSnapshot
	if err := decodeBody(b, &w); err != nil {
		return nil, err
	}
	if w.Session.ClientID == "" {
		return nil, fmt.Errorf("%w: snapshot without a client id", errWire)
	}
	s := &Snapshot{Session: w.Session, Queue: make([]QueuedMessage, len(w.Queue))}
	for i, q := range w.Queue {
		s.Queue[i] = QueuedMessage{Seq: q.Seq, Message: q.Message}
	}
	return s, nil
}

type interestHint struct {
	_msgpack struct{} `msgpack:",as_array"`
	Filter   string
	Live     bool
}

type presenceMsg struct {
	_msgpack struct{} `msgpack:",as_array"`
	Full     bool
	On, Off  []uint64
}

type retainedReq struct {
	_msgpack struct{} `msgpack:",as_array"`
	After    string
}

type retainedResp struct {
	_msgpack struct{} `msgpack:",as_array"`
	Msgs     []storage.Message
	More     bool
	Cleared  []retainedClear // on the first page (cluster_sync.go)
}

// retainedClear is a tombstone: topic's retained message was cleared by
// the message with this id.
type retainedClear struct {
	_msgpack struct{} `msgpack:",as_array"`
	Topic    string
	ID       uint64
}

// dirOp is one change of the IM directory, decided by the registrar.
type dirOp struct {
	_msgpack struct{} `msgpack:",as_array"`
	Kind     byte     // dirRegister, dirCreateGroup, dirJoin, dirLeave
	ID       uint64   // the account's id (register; the registrar's answer)
	Name     string   // user name (register) or group name
	Hash     []byte   // credential hash (register)
	User     uint64   // owner (create) or member (join, leave)
	Created  int64    // unix ms, as the registrar stored it
}

const (
	dirRegister byte = 1 + iota
	dirCreateGroup
	dirJoin
	dirLeave
)

type dirResult struct {
	_msgpack struct{} `msgpack:",as_array"`
	Op       dirOp    // as decided (register: with the id)
	Err      string   // the directory error, by name (see dirErr)
	Created  bool     // register: a new account; create: a new group
}

type dirSyncReq struct {
	_msgpack struct{} `msgpack:",as_array"`
	FromID   uint64
}

type dirSyncResp struct {
	_msgpack struct{} `msgpack:",as_array"`
	Accounts []storage.Account
	Groups   []peerGroup
	More     bool
}

type peerGroup struct {
	_msgpack struct{} `msgpack:",as_array"`
	Group    storage.Group
	Members  []uint64
}

type dirApplyReq struct {
	_msgpack struct{} `msgpack:",as_array"`
	Ops      []dirOp
}

// The envelope is on every forwarded publish, so it is encoded and decoded
// by hand (the msgpack library's reflection cost a third of a forward);
// it stays plain msgpack, as drawn above.

// appendEnvelope appends e as msgpack.
func appendEnvelope(b []byte, e *fwdEnvelope) []byte {
	b = append(b, 0x98) // fixarray of 8
	b = mp.AppendUint(b, uint64(e.Version))
	b = mp.AppendBin(b, e.Props)
	b = mp.AppendUint(b, e.SenderID)
	b = mp.AppendStr(b, e.SenderName)
	b = mp.AppendStrs(b, e.Shares)
	b = mp.AppendStrs(b, e.Relay)
	if e.To == nil && len(e.toRaw) > 0 {
		b = append(b, e.toRaw...) // as decoded
	} else {
		b = mp.AppendStrs(b, e.To)
	}
	return mp.AppendBool(b, e.Plain)
}

// decodeEnvelope reads an envelope; fields a later version appends are
// ignored, fields an older one lacks are zero. Its strings and Props alias
// b, which must not change afterwards.
func decodeEnvelope(b []byte, e *fwdEnvelope) error {
	r := mp.Reader{B: b}
	n := r.ArrayLen()
	if r.Bad || n < 1 {
		return fmt.Errorf("%w: envelope", errWire)
	}
	for i := 0; i < n && !r.Bad; i++ {
		switch i {
		case 0:
			e.Version = int(r.Uint())
		case 1:
			e.Props = r.Raw()
		case 2:
			e.SenderID = r.Uint()
		case 3:
			e.SenderName = r.Str()
		case 4:
			e.Shares = r.Strs()
		case 5:
			e.Relay = r.Strs()
		case 6:
			e.toRaw = r.SkipStrs() // (toList)
		case 7:
			e.Plain = r.Bool()
		default:
			i = n // a later version's fields: ignored (they end the envelope)
		}
	}
	if r.Bad {
		return fmt.Errorf("%w: envelope", errWire)
	}
	return nil
}
