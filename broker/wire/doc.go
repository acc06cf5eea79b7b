// Package wire is the codec of cim's native protocol, the successor of cim's
// protobuf-over-TCP: what apps (the Go SDK in client/, cim chat, browsers
// over WebSocket) and the server say to each other. It does no I/O and
// imports only the standard library and github.com/vmihailenco/msgpack/v5.
// docs/native-protocol.md tells the protocol's story (login flow, acks,
// reconnect); this comment is the reference.
//
// # Frames
//
// A connection carries frames back to back. A frame is a length prefix (an
// unsigned LEB128 varint, the encoding of MQTT's remaining length and of
// Go's binary.Uvarint, 1 to 4 bytes, shortest form) counting the bytes
// after it, a frame type byte, and one msgpack value, always a map:
//
//	+----------------+--------+----------------------------------------+
//	| length L       | type   | body: msgpack map {key: value, ...}     |
//	| uvarint, 1-4 B | 1 byte | L-1 bytes                              |
//	+----------------+--------+----------------------------------------+
//
//	e.g. a ping:   02 03 80               L=2, type 0x03, empty map
//	a deliver ack: 05 08 81 a1 69 63      L=5, type 0x08, {"i": 99}
//
// Over WebSocket (the server's /ws) each binary message is one frame
// without its length prefix: the type byte and the body.
//
// Keys are short strings. A field at its zero value is left out; a
// missing key, or nil, means the zero value, except for the keys that
// "Keys derived when absent" lists, whose absence means a value the
// receiver derives. Integers may come in any
// msgpack width (Append writes the shortest); bodies are bin (str is
// accepted); strings must be UTF-8. A receiver skips keys it does not
// know, so a newer peer may add fields: that is how the protocol grows. It
// never changes what a key means. Times are unix milliseconds, durations
// milliseconds unless a table says seconds.
//
// # Frame types
//
// c: client, s: server. Types 0x40-0x7f are reserved for the cluster's
// node-to-node frames.
//
//	type  name         dir   meaning
//	0x01  login        c->s  first frame: who, and the proof
//	0x02  login-ack    s->c  the login's outcome; on failure the server closes
//	0x03  ping         both  are you there? (the client sends it when idle)
//	0x04  pong         both  answers ping
//	0x05  send         c->s  a message, or a batch, to a user, group, topic or everyone
//	0x06  send-ack     s->c  outcome of one message of a send
//	0x07  deliver      s->c  a message for the client
//	0x08  deliver-ack  c->s  the client has processed a QoS 1 deliver
//	0x09  subscribe    c->s  add topic filters
//	0x0a  sub-ack      s->c  one code per filter
//	0x0b  unsubscribe  c->s  remove topic filters
//	0x0c  unsub-ack    s->c  one code per filter
//	0x0d  request      c->s  a method call: online users, history, groups, delayed
//	0x0e  response     s->c  the call's code and result
//	0x0f  kick         s->c  why the server is closing the connection, then it closes
//	0x10  error        s->c  a frame the server could not take
//
// Fields of each type (Go field, key, msgpack type):
//
//	login (Login)                        login-ack (LoginAck)
//	  User      u  uint  user id           Code         c   uint  9000 or the refusal
//	  Name      n  str   user name         Text         m   str   why
//	  Password  p  str                     User         u   uint  user id
//	  Token     t  str   from a login-ack  Name         n   str   user name
//	  Version   v  str   client software   Token        t   str   for later logins
//	  Keepalive k  uint  seconds asked     TokenExpires e   int   unix ms
//	                                       Time         ts  int   server clock, unix ms
//	                                       Node         o   str   node name
//	                                       Keepalive    k   uint  seconds granted
//	                                       MaxFrame     x   uint  largest frame accepted
//
//	ping (Ping), pong (Pong): empty map
//
//	send (Send)                          send-ack (SendAck)
//	  ID     i  uint   client message id   ID     i   uint  the client message id acked
//	  Kind   k  uint   1 user 2 group      MsgID  s   uint  server message id
//	                   3 topic 4 all       Code   c   uint  9000, 7000 stored, or a failure
//	  User   u  uint   receiver (user)     Time   ts  int   accepted at, unix ms
//	  Name   t  str    group or topic      Text   m   str   why, on failure
//	  QoS    q  uint   0 or 1
//	  Delay  d  uint   ms to wait
//	  Body   b  bin    one message, or
//	  Batch  a  [bin]  several, in order; message k has id ID+k
//
//	deliver (Deliver)                    deliver-ack (DeliverAck)
//	  MsgID    i   uint  server message id   MsgID  i  uint  the deliver acked
//	  From     f   uint  sender's user id (0: an MQTT client)
//	  FromName n   str   sender's name (or MQTT client id)
//	  Kind     k   uint  where it was sent: 1 user, 2 group, 3 topic, 4 all
//	  User     u   uint  the receiver (Kind 1); absent: this connection's user
//	  Name     t   str   group or topic
//	  Body     b   bin
//	  Time     ts  int   accepted at, unix ms; absent: the time in i
//	  QoS      q   uint  1: answer with deliver-ack
//	  Offline  o   bool  waited in the offline store
//
//	subscribe (Subscribe)                sub-ack (SubAck), unsub-ack (UnsubAck)
//	  ID       i  uint   request id        ID     i  uint    the request id
//	  Filters  f  [str]  MQTT filters      Codes  c  [uint]  one per filter, in order
//	  QoS      q  uint   0 or 1
//	unsubscribe (Unsubscribe): ID i, Filters f
//
//	request (Request)                    response (Response)
//	  ID      i  uint  request id          ID      i  uint  the request id
//	  Method  m  str   see below           Code    c  uint  9000 or a failure
//	  Args    a  any   method's arguments  Text    m  str   why, on failure
//	                                       Result  r  any   method's result
//
//	kick (Kick), error (Error)
//	  Code  c  uint  the reason (table below)
//	  Text  m  str   for people
//
// # Keys derived when absent
//
// Two keys of a deliver map (the deliver frame, and each message of a
// history result) mean something other than zero when they are missing
// (or nil), so that the server need not send what the receiver already
// has:
//
//   - ts: the time in the message id i. A server message id's bits 63-23
//     are milliseconds since 2025-01-01T00:00:00Z (MsgIDTime), so the time
//     is (i >> 23) + 1735689600000, or 0 when i is absent. The server
//     leaves ts out when it is that time, which it always is for a message
//     of its own; a time that is not (0 next to an id included) is written.
//   - u, when k is 1: the user logged in on this connection. The server
//     leaves it out of a private message for the receiver itself; another
//     native client that may subscribe to the inbox's topic (cim/u/<id>)
//     gets it. Decode cannot know who is logged in and leaves Target.User
//     0 (Deliver's comment); the Go SDK fills it in, as should any client.
//
// In a 64-byte message to a topic from a native sender they are 12 of its
// 131 bytes (bench/native.sh's fan-in, 118 without); a private message
// saves another 3 to 11 bytes by u. History results carry both, as the
// msgpack library writes every non-zero field; decoders derive there all
// the same.
//
// Request methods (methods.go has the argument and result structs, keys in
// their tags):
//
//	method         args         result        what
//	online         OnlineArgs   OnlineResult  users online now, by name prefix
//	history        HistoryArgs  HistoryResult a page of a conversation, newest first; keyword search
//	group.create   GroupArgs    Group         create a group; the caller is owner and member
//	group.join     GroupArgs    Group         join it
//	group.leave    GroupArgs    -             leave it
//	group.members  GroupArgs    UsersResult   who is in it
//	group.mine     -            GroupsResult  groups the caller is in
//	delayed        DelayedArgs  DelayedResult the caller's delayed messages not yet due
//
// # Codes
//
// Code values implement error. cim's numbers keep cim's meaning; the new
// ones are 30xx (a frame or request refused), 50xx (why a connection
// ends) and 9101. "closes" marks codes after which the server closes the
// connection (Code.ClosesConnection).
//
//	code  name              closes  meaning
//	9000  OK                        success
//	3000  BadArgument               a missing or wrong field; the text names it
//	3001  UnknownFrame              unknown frame type; the frame is skipped
//	3002  FrameTooLarge     closes  frame over the receiver's maximum
//	3003  Malformed         closes  bad length prefix, invalid msgpack, a field of the wrong type
//	3004  NotLoggedIn       closes  a frame other than login or ping before the login ack
//	3005  UnknownReceiver           no such user
//	3006  EmptyBody                 a message with an empty body
//	3007  NameTooLong               user, group or topic name over the limit
//	3008  BadTopic                  invalid topic name or filter
//	3009  UnknownMethod             request with a method the server does not know
//	3010  Denied                    not allowed by the ACL
//	3011  UnknownGroup              no such group
//	3012  GroupExists               group.create of an existing name
//	3013  NotMember                 sending to or leaving a group one is not in
//	4000  Failure                   any other failure
//	5000  RepeatLogin               a second login on a logged-in connection
//	5001  LoginTimeout      closes  no login within the login deadline
//	5002  KeepaliveTimeout  closes  nothing heard for the keepalive interval
//	5003  TakenOver         closes  the same user logged in elsewhere (kick)
//	5004  Kicked            closes  an administrator disconnected the user (kick)
//	5005  ShuttingDown      closes  the server is stopping: reconnect, maybe elsewhere (kick)
//	5006  SlowConsumer      closes  the client did not read its deliveries (kick)
//	6000  RateLimited               too many requests
//	7000  Offline                   receiver offline: the message is stored, delivered at its next login
//	7100  NoServer                  no server available
//	7200  ReconnectFailed           the client gave up reconnecting (client side only)
//	9100  AccountMismatch   closes  unknown account, wrong password or token, id and name disagree
//	9101  TokenExpired      closes  a valid but expired token: log in with the password
//	9200  OfflineStore              storing an offline message failed
//	9201  OfflineFetch              fetching offline messages failed
//	9202  OfflineDelete             deleting offline messages failed
//
// # Decoding
//
// Decode is incremental: it decodes the frame at the front of a buffer or
// says ErrIncomplete, consuming nothing, so a server can decode straight
// from its socket's read buffer and leave a partial frame there. A frame
// over the receiver's limit is refused as soon as its length prefix shows
// it (even before the prefix is complete), before any body bytes are
// buffered. Errors carry codes: CodeFrameTooLarge and CodeMalformed (the
// stream cannot be trusted any more) and CodeUnknownFrame (framing is
// intact, the frame can be skipped).
//
// Decode fills a Frame, a union with one member per type, meant to be
// reused for every frame (no allocation per frame). Strings and byte slices
// in it may alias the buffer (they do for send, send-ack and deliver): a
// caller that keeps any of them after the buffer is reused calls
// Frame.Detach, or copies just what it keeps. Measured (BenchmarkDecode,
// 64-byte body, on a shared 2-core machine): a deliver decodes in 165 ns
// with no allocation aliased, 224 ns and one allocation detached; a send in
// 111 ns against 150 ns. The aliasing decode is the default because a
// server keeps only part of what it decodes.
//
// # Why some frames are encoded by hand
//
// Send, send-ack, deliver, deliver-ack, ping and pong, the frames of the
// message path, are encoded and decoded by hand (hot.go); the others go
// through the msgpack library's reflection after a validating scan (so the
// library never sees a length it could over-allocate for). Both produce
// the same bytes (TestHotMatchesLibrary). Measured with BenchmarkAppend and
// BenchmarkDecode (64-byte body, same run, shared 2-core machine, on a slow
// day; the usual forms of a send and of a server's deliver are read and
// written inline):
//
//	                   by hand               msgpack reflection
//	append send         57 ns, 0 allocs      1558 ns,  9 allocs   (27x)
//	append deliver      98 ns, 0 allocs      1682 ns, 11 allocs   (17x)
//	decode send         61 ns, 0 allocs      1162 ns,  3 allocs   (19x)
//	decode deliver     211 ns, 0 allocs      1664 ns,  5 allocs   (8x)
//
// (Earlier runs gave 21-28x and 6-9x.)
// At a million deliveries a second, reflection alone would take two
// cores.
package wire
