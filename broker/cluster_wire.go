package broker

import (
	"errors"
	"fmt"

	"github.com/cimgo/cim/cluster"
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
		r := mpReader{b: e.toRaw}
		e.To = r.strs()
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
	b = mpUint(b, uint64(e.Version))
	b = mpBin(b, e.Props)
	b = mpUint(b, e.SenderID)
	b = mpStr(b, e.SenderName)
	b = mpStrs(b, e.Shares)
	b = mpStrs(b, e.Relay)
	if e.To == nil && len(e.toRaw) > 0 {
		b = append(b, e.toRaw...) // as decoded
	} else {
		b = mpStrs(b, e.To)
	}
	if e.Plain {
		return append(b, 0xc3)
	}
	return append(b, 0xc2)
}

func mpUint(b []byte, v uint64) []byte {
	switch {
	case v < 0x80:
		return append(b, byte(v))
	case v <= 0xff:
		return append(b, 0xcc, byte(v))
	case v <= 0xffff:
		return append(b, 0xcd, byte(v>>8), byte(v))
	case v <= 0xffffffff:
		return append(b, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return append(b, 0xcf, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func mpStr(b []byte, s string) []byte {
	n := len(s)
	switch {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n <= 0xff:
		b = append(b, 0xd9, byte(n))
	case n <= 0xffff:
		b = append(b, 0xda, byte(n>>8), byte(n))
	default:
		b = append(b, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, s...)
}

func mpBin(b []byte, p []byte) []byte {
	if p == nil {
		return append(b, 0xc0)
	}
	n := len(p)
	switch {
	case n <= 0xff:
		b = append(b, 0xc4, byte(n))
	case n <= 0xffff:
		b = append(b, 0xc5, byte(n>>8), byte(n))
	default:
		b = append(b, 0xc6, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, p...)
}

func mpStrs(b []byte, ss []string) []byte {
	n := len(ss)
	switch {
	case ss == nil:
		return append(b, 0xc0)
	case n < 16:
		b = append(b, 0x90|byte(n))
	case n <= 0xffff:
		b = append(b, 0xdc, byte(n>>8), byte(n))
	default:
		b = append(b, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	for _, s := range ss {
		b = mpStr(b, s)
	}
	return b
}

// mpReader reads the msgpack appendEnvelope writes (and what the msgpack
// library writes for the same struct). The first error sticks.
type mpReader struct {
	b   []byte
	err error
}

func (r *mpReader) fail() {
	if r.err == nil {
		r.err = fmt.Errorf("%w: envelope", errWire)
	}
	r.b = nil
}

func (r *mpReader) take(n int) []byte {
	if n < 0 || len(r.b) < n {
		r.fail()
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *mpReader) be(n int) uint64 {
	var v uint64
	for _, c := range r.take(n) {
		v = v<<8 | uint64(c)
	}
	return v
}

func (r *mpReader) code() byte {
	p := r.take(1)
	if p == nil {
		return 0xc1 // never used by msgpack: fails below
	}
	return p[0]
}

func (r *mpReader) uint() uint64 {
	switch c := r.code(); {
	case c < 0x80:
		return uint64(c)
	case c == 0xcc:
		return r.be(1)
	case c == 0xcd:
		return r.be(2)
	case c == 0xce:
		return r.be(4)
	case c == 0xcf:
		return r.be(8)
	}
	r.fail()
	return 0
}

// strLen reads a str or bin header; nil reports msgpack nil.
func (r *mpReader) strLen() (n int, isNil bool) {
	switch c := r.code(); {
	case c == 0xc0:
		return 0, true
	case c&0xe0 == 0xa0:
		return int(c & 0x1f), false
	case c == 0xd9 || c == 0xc4:
		return int(r.be(1)), false
	case c == 0xda || c == 0xc5:
		return int(r.be(2)), false
	case c == 0xdb || c == 0xc6:
		return int(r.be(4)), false
	}
	r.fail()
	return 0, true
}

// str and bin alias the buffer (decodeEnvelope's caller owns it and never
// changes it).
func (r *mpReader) str() string {
	n, _ := r.strLen()
	return unsafeString(r.take(n))
}

func (r *mpReader) bin() []byte {
	n, isNil := r.strLen()
	if isNil {
		return nil
	}
	p := r.take(n)
	return p[:len(p):len(p)]
}

func (r *mpReader) arrayLen() int {
	switch c := r.code(); {
	case c == 0xc0:
		return 0
	case c&0xf0 == 0x90:
		return int(c & 0x0f)
	case c == 0xdc:
		return int(r.be(2))
	case c == 0xdd:
		return int(r.be(4))
	}
	r.fail()
	return 0
}

func (r *mpReader) strs() []string {
	n := r.arrayLen()
	if n == 0 || n > len(r.b) { // each takes at least a byte
		if n > len(r.b) {
			r.fail()
		}
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = r.str()
	}
	return out
}

// skipStrs passes over a list of strings and returns its bytes.
func (r *mpReader) skipStrs() []byte {
	start := r.b
	n := r.arrayLen()
	if n > len(r.b) {
		r.fail()
		return nil
	}
	for range n {
		r.str()
	}
	if r.err != nil {
		return nil
	}
	return start[:len(start)-len(r.b)]
}

func (r *mpReader) bool() bool {
	switch r.code() {
	case 0xc3:
		return true
	case 0xc2, 0xc0:
		return false
	}
	r.fail()
	return false
}

// decodeEnvelope reads an envelope; fields a later version appends are
// ignored, fields an older one lacks are zero. Its strings and Props alias
// b, which must not change afterwards.
func decodeEnvelope(b []byte, e *fwdEnvelope) error {
	r := mpReader{b: b}
	n := r.arrayLen()
	if r.err != nil || n < 1 {
		return fmt.Errorf("%w: envelope", errWire)
	}
	for i := 0; i < n && r.err == nil; i++ {
		switch i {
		case 0:
			e.Version = int(r.uint())
		case 1:
			e.Props = r.bin()
		case 2:
			e.SenderID = r.uint()
		case 3:
			e.SenderName = r.str()
		case 4:
			e.Shares = r.strs()
		case 5:
			e.Relay = r.strs()
		case 6:
			e.toRaw = r.skipStrs() // (toList)
		case 7:
			e.Plain = r.bool()
		default:
			return r.err // a later version's fields: ignored (they end the envelope)
		}
	}
	return r.err
}
