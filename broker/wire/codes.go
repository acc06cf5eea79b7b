package wire

import (
	"errors"
	"strconv"
)

// Code is a result or reason code. The numbers below 9000 that cim had keep
// cim's meaning (its HTTP API sends them as strings, "9000"); the rest are
// new and listed in the one table of the package doc. A Code is an error so
// that a failure travels as itself: errors.Is(err, wire.CodeOffline) and
// errors.As(err, &code) work through any %w wrapping. CodeOK is an error too
// (a Code is just a number); use Err to turn a code into nil-or-error.
type Code uint16

// cim's codes.
const (
	CodeOK              Code = 9000 // success
	CodeBadArgument     Code = 3000 // invalid argument: a missing or wrong field; the text names it
	CodeFailure         Code = 4000 // failure not covered by a more precise code
	CodeRepeatLogin     Code = 5000 // a second Login on a connection that is already logged in
	CodeRateLimited     Code = 6000 // too many requests; try again later
	CodeOffline         Code = 7000 // receiver offline: the message is stored and delivered at its next login
	CodeNoServer        Code = 7100 // no server available for the user
	CodeReconnectFailed Code = 7200 // the client gave up reconnecting (client side only)
	CodeAccountMismatch Code = 9100 // unknown account, wrong password or token, or id and name that do not match
	CodeOfflineStore    Code = 9200 // storing an offline message failed
	CodeOfflineFetch    Code = 9201 // fetching offline messages failed
	CodeOfflineDelete   Code = 9202 // deleting offline messages failed
)

// New codes: 30xx a frame or request the server refuses, 50xx why a
// connection ends, 9101 an expired token.
const (
	CodeUnknownFrame     Code = 3001 // unknown frame type (the frame is skipped, the connection stays)
	CodeFrameTooLarge    Code = 3002 // frame larger than the peer's maximum (connection closed)
	CodeMalformed        Code = 3003 // bad length prefix, invalid msgpack or a field of the wrong type (connection closed)
	CodeNotLoggedIn      Code = 3004 // a frame other than Login or Ping before the login ack (connection closed)
	CodeUnknownReceiver  Code = 3005 // no such user
	CodeEmptyBody        Code = 3006 // a message with an empty body
	CodeNameTooLong      Code = 3007 // user, group or topic name over the server's limit
	CodeBadTopic         Code = 3008 // invalid topic name or filter
	CodeUnknownMethod    Code = 3009 // Request with a method the server does not know
	CodeDenied           Code = 3010 // not allowed by the ACL
	CodeUnknownGroup     Code = 3011 // no such group
	CodeGroupExists      Code = 3012 // group.create of a name that exists
	CodeNotMember        Code = 3013 // sending to or leaving a group one is not a member of
	CodeLoginTimeout     Code = 5001 // no Login within the server's login deadline
	CodeKeepaliveTimeout Code = 5002 // nothing heard for the keepalive interval
	CodeTakenOver        Code = 5003 // the same user logged in on another connection
	CodeKicked           Code = 5004 // disconnected by an administrator
	CodeShuttingDown     Code = 5005 // the server is shutting down; reconnect (to another node)
	CodeSlowConsumer     Code = 5006 // the connection did not read its deliveries fast enough
	CodeTokenExpired     Code = 9101 // the token's signature is good but it has expired; log in with a password
)

var codeText = map[Code]string{
	CodeOK:               "ok",
	CodeBadArgument:      "bad argument",
	CodeFailure:          "failure",
	CodeRepeatLogin:      "repeat login",
	CodeRateLimited:      "rate limited",
	CodeOffline:          "receiver offline, message stored",
	CodeNoServer:         "no server available",
	CodeReconnectFailed:  "reconnect failed",
	CodeAccountMismatch:  "account mismatch",
	CodeOfflineStore:     "offline message store error",
	CodeOfflineFetch:     "offline message fetch error",
	CodeOfflineDelete:    "offline message delete error",
	CodeUnknownFrame:     "unknown frame type",
	CodeFrameTooLarge:    "frame too large",
	CodeMalformed:        "malformed frame",
	CodeNotLoggedIn:      "not logged in",
	CodeUnknownReceiver:  "unknown receiver",
	CodeEmptyBody:        "empty body",
	CodeNameTooLong:      "name too long",
	CodeBadTopic:         "bad topic",
	CodeUnknownMethod:    "unknown method",
	CodeDenied:           "denied",
	CodeUnknownGroup:     "unknown group",
	CodeGroupExists:      "group exists",
	CodeNotMember:        "not a member",
	CodeLoginTimeout:     "login timeout",
	CodeKeepaliveTimeout: "keepalive timeout",
	CodeTakenOver:        "taken over by another login",
	CodeKicked:           "kicked by an administrator",
	CodeShuttingDown:     "server shutting down",
	CodeSlowConsumer:     "slow consumer",
	CodeTokenExpired:     "token expired",
}

// Codes lists every code this package defines, in numeric order.
func Codes() []Code {
	return []Code{
		CodeBadArgument, CodeUnknownFrame, CodeFrameTooLarge, CodeMalformed,
		CodeNotLoggedIn, CodeUnknownReceiver, CodeEmptyBody, CodeNameTooLong,
		CodeBadTopic, CodeUnknownMethod, CodeDenied, CodeUnknownGroup,
		CodeGroupExists, CodeNotMember, CodeFailure, CodeRepeatLogin,
		CodeLoginTimeout, CodeKeepaliveTimeout, CodeTakenOver, CodeKicked,
		CodeShuttingDown, CodeSlowConsumer, CodeRateLimited, CodeOffline,
		CodeNoServer, CodeReconnectFailed, CodeOK, CodeAccountMismatch,
		CodeTokenExpired, CodeOfflineStore, CodeOfflineFetch, CodeOfflineDelete,
	}
}

// String is the code's short description ("receiver offline, message
// stored"), or "code N" for a number this version does not know.
func (c Code) String() string {
	if s, ok := codeText[c]; ok {
		return s
	}
	return "code " + strconv.Itoa(int(c))
}

// Error reads "wire: 7000 receiver offline, message stored".
func (c Code) Error() string {
	return "wire: " + strconv.Itoa(int(c)) + " " + c.String()
}

// Err is nil for CodeOK and the code itself otherwise.
func (c Code) Err() error {
	if c == CodeOK {
		return nil
	}
	return c
}

// Known reports whether this version of the package defines c.
func (c Code) Known() bool {
	_, ok := codeText[c]
	return ok
}

// ClosesConnection reports whether the protocol says the server closes the
// connection after answering with c in an Error or LoginAck frame, or after
// a Kick with it.
func (c Code) ClosesConnection() bool {
	switch c {
	case CodeFrameTooLarge, CodeMalformed, CodeNotLoggedIn,
		CodeLoginTimeout, CodeKeepaliveTimeout, CodeTakenOver, CodeKicked,
		CodeShuttingDown, CodeSlowConsumer, CodeAccountMismatch, CodeTokenExpired:
		return true
	}
	return false
}

// CodeOf returns the Code in err's chain: CodeOK for a nil error,
// CodeFailure for an error that carries none.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	var c Code
	if errors.As(err, &c) {
		return c
	}
	return CodeFailure
}
