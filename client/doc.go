// Package client is the Go SDK of cim's native protocol (broker/wire): what
// `cim chat` and Go apps use to log in, send and receive messages, and ask
// for online users, history, groups and delayed messages. It imports no
// other package of the project. docs/sdk.md shows it in use.
//
//	c, err := client.Dial(ctx, client.Options{
//		UserName: "alice", Password: "secret",
//		APIURL:   "http://127.0.0.1:8083",          // or Addrs: []string{"127.0.0.1:9000"}
//		OnMessage: func(m *client.Message) { ... },
//	})
//	ack, err := c.Send(ctx, client.User(42), []byte("hi"))   // err may be client.ErrOffline: stored
//	defer c.Close()
//
// # Connection
//
// Dial returns once the client is logged in (state Ready). From then on
// the client keeps a connection: when it breaks, the state goes to
// Reconnecting and the client makes connection attempts, spaced by
// Options.Backoff, each one: ask the HTTP API's POST /login for a node
// (with APIURL) or take the next of Options.Addrs, connect, log in (with
// the token of the last login, falling back to the password), subscribe
// again to what Subscribe added, send again every unacknowledged QoS 1
// message, Ready. The server delivers the messages stored while the user
// was away after every login. After RetryLimit failed attempts in a row
// the client gives up: state Failed, OnFatal(err wrapping
// ErrReconnectFailed and the last attempt's error). A refused login
// (ErrAccountMismatch), a takeover by another login of the same user
// (ErrTakenOver) or an administrator's kick also end in Failed, without
// retrying. Close ends in Closed. Keepalive: the client pings after a
// third of the server's keepalive without writing, and gives a connection
// up after a keepalive without hearing anything.
//
//	             Dial
//	Initialized ──────► Connecting ──ok──► Ready ◄───ok─── Reconnecting
//	                        │                │ lost ────────────► │
//	                  fails │     Close ─────┼───► Closed         │ retries exhausted,
//	                        ▼                │ kicked, taken over │ credentials refused
//	                   (Dial error)          └──────► Failed ◄────┘
//
// # Sending: acks, QoS and ErrOffline
//
// Every message has a client message id (counting up from the clock's
// nanoseconds at Dial, so unique across restarts) and gets one ack from
// the server: its server message id and a code. Send and Publish wait for
// the acks; PublishAsync returns a Sent at once (Wait on it, or pass a
// callback). At QoS 1 (the default) the ack means the server has stored
// the message; a message not yet acknowledged when a connection breaks is
// sent again, with the same id, on the next one, and the server drops the
// duplicate. At QoS 0 (Publish.AtMostOnce) a message in flight when the
// connection breaks fails with ErrConnectionLost and is not sent again.
//
// A receiver who is offline is not a failure: the server stores the
// message and delivers it at the receiver's next login, and the ack says
// 7000. Send returns that as the error ErrOffline (a wire.Code) together
// with a valid Ack (its MsgID is set), because some callers want to know
// ("bob is offline"); callers who only care that the message is safe use
// Accepted(err), true for nil and ErrOffline. Every other code is a
// refusal: the message was not taken (ErrUnknownReceiver, a wire.Code such
// as wire.CodeEmptyBody, ...). Errors wrap codes: errors.Is(err,
// wire.CodeX) and errors.As(err, &code) work.
//
// # Receiving
//
// OnMessage gets every delivered message, each with its server id, sender
// (id and name), target (User(me) for a private message, the Group, the
// Topic, or Everyone), time and offline flag. A QoS 1 message is
// acknowledged to the server after OnMessage returns; until then the
// server keeps it and delivers it again on the next connection (the
// client recognises the last 4096 ids it has passed on and acknowledges a
// repeat without calling OnMessage again).
//
// # Goroutines and callbacks
//
// A Client runs a goroutine that keeps it connected, a reader and a writer
// per connection, and one goroutine that runs the callbacks (OnMessage,
// OnStateChange, OnFatal, PublishAsync's done) one at a time, in order.
// The reader never waits for a callback, so a callback may call the
// client synchronously (reply to a message with Send, or Close). Close
// waits for the network goroutines; callbacks already queued still run
// afterwards, and Done is closed when the last one has returned. Several
// Clients in one process share nothing.
//
// What the client assumes of the server is listed in docs/sdk.md.
package client
