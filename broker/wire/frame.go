package wire

import "strconv"

// Type is a frame's first body byte.
type Type byte

// Frame types. 0x00 is never a frame; 0x40-0x7f are reserved for
// node-to-node frames of the cluster's peer links.
const (
	TypeLogin       Type = 0x01 // client -> server
	TypeLoginAck    Type = 0x02 // server -> client
	TypePing        Type = 0x03 // either way
	TypePong        Type = 0x04 // either way, answers Ping
	TypeSend        Type = 0x05 // client -> server
	TypeSendAck     Type = 0x06 // server -> client
	TypeDeliver     Type = 0x07 // server -> client
	TypeDeliverAck  Type = 0x08 // client -> server
	TypeSubscribe   Type = 0x09 // client -> server
	TypeSubAck      Type = 0x0a // server -> client
	TypeUnsubscribe Type = 0x0b // client -> server
	TypeUnsubAck    Type = 0x0c // server -> client
	TypeRequest     Type = 0x0d // client -> server
	TypeResponse    Type = 0x0e // server -> client
	TypeKick        Type = 0x0f // server -> client, then the server closes
	TypeError       Type = 0x10 // server -> client

	maxType = TypeError
)

var typeNames = [...]string{
	TypeLogin: "login", TypeLoginAck: "login-ack", TypePing: "ping", TypePong: "pong",
	TypeSend: "send", TypeSendAck: "send-ack", TypeDeliver: "deliver", TypeDeliverAck: "deliver-ack",
	TypeSubscribe: "subscribe", TypeSubAck: "sub-ack", TypeUnsubscribe: "unsubscribe",
	TypeUnsubAck: "unsub-ack", TypeRequest: "request", TypeResponse: "response",
	TypeKick: "kick", TypeError: "error",
}

func (t Type) String() string {
	if t >= 1 && t <= maxType {
		return typeNames[t]
	}
	return "type 0x" + strconv.FormatUint(uint64(t), 16)
}

// Kind says what a Target addresses.
type Kind uint8

const (
	KindUser  Kind = 1 // one user (topic cim/u/<User>)
	KindGroup Kind = 2 // a named group (topic cim/g/<Name>)
	KindTopic Kind = 3 // any topic (Name), shared with MQTT clients
	KindAll   Kind = 4 // everyone online but the sender (topic cim/all), cim's "group chat"
)

func (k Kind) String() string {
	switch k {
	case KindUser:
		return "user"
	case KindGroup:
		return "group"
	case KindTopic:
		return "topic"
	case KindAll:
		return "all"
	}
	return "kind " + strconv.Itoa(int(k))
}

// Target is where a message goes (Send) or went (Deliver). Its fields are
// inlined into the frame's map as keys k, u and t.
type Target struct {
	Kind Kind   `msgpack:"k,omitempty"`
	User uint64 `msgpack:"u,omitempty"` // KindUser: the user id
	Name string `msgpack:"t,omitempty"` // KindGroup: the group name; KindTopic: the topic
}

// ToUser, ToGroup, ToTopic and ToAll build Targets.
func ToUser(id uint64) Target     { return Target{Kind: KindUser, User: id} }
func ToGroup(name string) Target  { return Target{Kind: KindGroup, Name: name} }
func ToTopic(topic string) Target { return Target{Kind: KindTopic, Name: topic} }
func ToAll() Target               { return Target{Kind: KindAll} }

// Topic is the topic of DESIGN.md's address space the target stands for:
// cim/u/<id>, cim/g/<name>, the topic itself, or cim/all ("" for a Kind
// this version does not know).
func (t Target) Topic() string {
	switch t.Kind {
	case KindUser:
		return "cim/u/" + strconv.FormatUint(t.User, 10)
	case KindGroup:
		return "cim/g/" + t.Name
	case KindTopic:
		return t.Name
	case KindAll:
		return "cim/all"
	}
	return ""
}

// Body is the content of one frame: *Login, *LoginAck, *Ping, *Pong, *Send,
// *SendAck, *Deliver, *DeliverAck, *Subscribe, *SubAck, *Unsubscribe,
// *UnsubAck, *Request, *Response, *Kick or *Error. The set is closed.
type Body interface {
	// Type is the frame type the body is sent as.
	Type() Type
	body()
}

// Login is the first frame a client sends. It names the account by User or
// by Name (both: they must belong to the same account, else 9100) and
// proves it with Password or Token (a token from an earlier LoginAck).
type Login struct {
	User      uint64 `msgpack:"u,omitempty"`
	Name      string `msgpack:"n,omitempty"`
	Password  string `msgpack:"p,omitempty"`
	Token     string `msgpack:"t,omitempty"`
	Version   string `msgpack:"v,omitempty"` // client software, e.g. "cim-go/0.1"
	Keepalive uint32 `msgpack:"k,omitempty"` // seconds the client asks for; 0: the server's default
}

// LoginAck answers Login. Code is CodeOK or the reason for refusing, after
// which the server closes the connection.
type LoginAck struct {
	Code         Code   `msgpack:"c"`
	Text         string `msgpack:"m,omitempty"`
	User         uint64 `msgpack:"u,omitempty"`
	Name         string `msgpack:"n,omitempty"`
	Token        string `msgpack:"t,omitempty"`  // for later logins without the password
	TokenExpires int64  `msgpack:"e,omitempty"`  // unix ms
	Time         int64  `msgpack:"ts,omitempty"` // server clock, unix ms
	Node         string `msgpack:"o,omitempty"`  // the node's name
	Keepalive    uint32 `msgpack:"k,omitempty"`  // seconds of silence after which the server closes the connection
	MaxFrame     uint32 `msgpack:"x,omitempty"`  // the largest frame the server accepts, in bytes
}

// Ping asks the peer for a Pong. Either side may send it; a client sends it
// when it has written nothing for a third of the keepalive.
type Ping struct{}

// Pong answers Ping.
type Pong struct{}

// Send is a message (Body) or an ordered batch of them (Batch; then Body is
// empty) from the client. Message k of a batch has client message id ID+k;
// each message gets its own SendAck. ID 0 asks for no ack (QoS 0 only).
type Send struct {
	ID uint64 `msgpack:"i,omitempty"` // client message id; with the sender, the dedup key
	Target
	QoS   uint8    `msgpack:"q,omitempty"` // 0 at most once, 1 at least once
	Delay uint64   `msgpack:"d,omitempty"` // ms after the server accepts it; 0 now
	Body  []byte   `msgpack:"b,omitempty"`
	Batch [][]byte `msgpack:"a,omitempty"`
}

// SendAck answers one message of a Send: its client message id, the server
// message id it was given and the outcome (CodeOK; CodeOffline: stored for
// an offline receiver; or a failure).
type SendAck struct {
	ID    uint64 `msgpack:"i,omitempty"`
	MsgID uint64 `msgpack:"s,omitempty"`
	Code  Code   `msgpack:"c"`
	Time  int64  `msgpack:"ts,omitempty"` // when the server accepted it, unix ms
	Text  string `msgpack:"m,omitempty"`
}

// Deliver is a message for the client. Target is where it was sent; for a
// private message to the receiver itself Target.User is 0 on the wire and
// after Decode ("this connection's user", which only the client knows:
// the SDK fills it in). A QoS 1 delivery is sent again until the client
// answers DeliverAck.
type Deliver struct {
	MsgID    uint64 `msgpack:"i,omitempty"`
	From     uint64 `msgpack:"f,omitempty"` // sender's user id; 0 when not a native user (an MQTT client)
	FromName string `msgpack:"n,omitempty"` // sender's user name (or MQTT client id)
	Target
	Body []byte `msgpack:"b,omitempty"`
	// Time is when the server accepted it, unix ms. Append leaves it out
	// when it is MsgIDTime(MsgID), and Decode then sets it from the id.
	Time    int64 `msgpack:"ts,omitempty"`
	QoS     uint8 `msgpack:"q,omitempty"`
	Offline bool  `msgpack:"o,omitempty"` // it waited in the offline store
}

// DeliverAck acknowledges a QoS 1 Deliver.
type DeliverAck struct {
	MsgID uint64 `msgpack:"i,omitempty"`
}

// Subscribe adds topic filters (MQTT syntax) to the connection's user.
type Subscribe struct {
	ID      uint64   `msgpack:"i,omitempty"` // request id, echoed by SubAck
	Filters []string `msgpack:"f,omitempty"`
	QoS     uint8    `msgpack:"q,omitempty"`
}

// SubAck answers Subscribe with one code per filter, in order.
type SubAck struct {
	ID    uint64 `msgpack:"i,omitempty"`
	Codes []Code `msgpack:"c,omitempty"`
}

// Unsubscribe removes topic filters.
type Unsubscribe struct {
	ID      uint64   `msgpack:"i,omitempty"`
	Filters []string `msgpack:"f,omitempty"`
}

// UnsubAck answers Unsubscribe with one code per filter, in order.
type UnsubAck struct {
	ID    uint64 `msgpack:"i,omitempty"`
	Codes []Code `msgpack:"c,omitempty"`
}

// Request asks the server something the connection needs (methods.go):
// Args is the method's argument struct, msgpack-encoded.
type Request struct {
	ID     uint64 `msgpack:"i,omitempty"`
	Method string `msgpack:"m,omitempty"`
	Args   Raw    `msgpack:"a,omitempty"`
}

// Response answers the Request with the same ID: Code, and on CodeOK the
// method's result struct, msgpack-encoded.
type Response struct {
	ID     uint64 `msgpack:"i,omitempty"`
	Code   Code   `msgpack:"c"`
	Text   string `msgpack:"m,omitempty"`
	Result Raw    `msgpack:"r,omitempty"`
}

// Kick tells the client why the server is about to close its connection.
type Kick struct {
	Code Code   `msgpack:"c"`
	Text string `msgpack:"m,omitempty"`
}

// Error reports a frame the server could not take. Whether the connection
// stays open depends on the code (Code.ClosesConnection).
type Error struct {
	Code Code   `msgpack:"c"`
	Text string `msgpack:"m,omitempty"`
}

func (*Login) Type() Type       { return TypeLogin }
func (*LoginAck) Type() Type    { return TypeLoginAck }
func (*Ping) Type() Type        { return TypePing }
func (*Pong) Type() Type        { return TypePong }
func (*Send) Type() Type        { return TypeSend }
func (*SendAck) Type() Type     { return TypeSendAck }
func (*Deliver) Type() Type     { return TypeDeliver }
func (*DeliverAck) Type() Type  { return TypeDeliverAck }
func (*Subscribe) Type() Type   { return TypeSubscribe }
func (*SubAck) Type() Type      { return TypeSubAck }
func (*Unsubscribe) Type() Type { return TypeUnsubscribe }
func (*UnsubAck) Type() Type    { return TypeUnsubAck }
func (*Request) Type() Type     { return TypeRequest }
func (*Response) Type() Type    { return TypeResponse }
func (*Kick) Type() Type        { return TypeKick }
func (*Error) Type() Type       { return TypeError }

func (*Login) body()       {}
func (*LoginAck) body()    {}
func (*Ping) body()        {}
func (*Pong) body()        {}
func (*Send) body()        {}
func (*SendAck) body()     {}
func (*Deliver) body()     {}
func (*DeliverAck) body()  {}
func (*Subscribe) body()   {}
func (*SubAck) body()      {}
func (*Unsubscribe) body() {}
func (*UnsubAck) body()    {}
func (*Request) body()     {}
func (*Response) body()    {}
func (*Kick) body()        {}
func (*Error) body()       {}

// Frame is what Decode fills: Type names the one member that holds the
// decoded frame; the other members keep whatever earlier decodes left
// there. One Frame is meant to be reused for every frame of a buffer (the
// members keep the capacity of their slices), so decoding allocates
// nothing on the hot path.
type Frame struct {
	Type Type

	Login       Login
	LoginAck    LoginAck
	Ping        Ping
	Pong        Pong
	Send        Send
	SendAck     SendAck
	Deliver     Deliver
	DeliverAck  DeliverAck
	Subscribe   Subscribe
	SubAck      SubAck
	Unsubscribe Unsubscribe
	UnsubAck    UnsubAck
	Request     Request
	Response    Response
	Kick        Kick
	Error       Error
}

// Body returns a pointer to the member named by f.Type, or nil if f.Type is
// not a frame type.
func (f *Frame) Body() Body {
	switch f.Type {
	case TypeLogin:
		return &f.Login
	case TypeLoginAck:
		return &f.LoginAck
	case TypePing:
		return &f.Ping
	case TypePong:
		return &f.Pong
	case TypeSend:
		return &f.Send
	case TypeSendAck:
		return &f.SendAck
	case TypeDeliver:
		return &f.Deliver
	case TypeDeliverAck:
		return &f.DeliverAck
	case TypeSubscribe:
		return &f.Subscribe
	case TypeSubAck:
		return &f.SubAck
	case TypeUnsubscribe:
		return &f.Unsubscribe
	case TypeUnsubAck:
		return &f.UnsubAck
	case TypeRequest:
		return &f.Request
	case TypeResponse:
		return &f.Response
	case TypeKick:
		return &f.Kick
	case TypeError:
		return &f.Error
	}
	return nil
}
