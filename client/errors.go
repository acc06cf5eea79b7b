package client

import (
	"errors"

	"github.com/cimgo/cim/broker/wire"
)

var (
	// ErrClosed: the client was closed (before or while waiting).
	ErrClosed = errors.New("client: closed")
	// ErrFailed: the client gave up (state Failed); the error wraps why.
	ErrFailed = errors.New("client: failed")
	// ErrConnectionLost: the connection broke while a request or a QoS 0
	// send was in flight; it may or may not have reached the server.
	// (QoS 1 sends are sent again on the next connection instead.)
	ErrConnectionLost = errors.New("client: connection lost")
	// ErrInvalidOptions: Options.Validate refused a field (the error names it).
	ErrInvalidOptions = errors.New("client: invalid options")
	// ErrProtocol: the server sent something the protocol does not allow.
	ErrProtocol = errors.New("client: protocol violation by the server")
	// ErrHTTP: the HTTP API answered with a non-200 status or a body that
	// is not its JSON envelope.
	ErrHTTP = errors.New("client: http api")
)

// Server codes, as errors. Each is the wire.Code itself, so errors.Is works
// with either name and errors.As(err, &code) gets the number.
var (
	// ErrOffline (7000) is not a failure: the receiver is offline and the
	// server has stored the message, to be delivered at its next login.
	// Treat it as success unless you care whether the receiver is online
	// now; Accepted reports both cases as true.
	ErrOffline error = wire.CodeOffline
	// ErrAccountMismatch (9100): unknown user, wrong password or token.
	ErrAccountMismatch error = wire.CodeAccountMismatch
	// ErrTakenOver (5003): the same user logged in elsewhere.
	ErrTakenOver error = wire.CodeTakenOver
	// ErrUnknownReceiver (3005): no such user.
	ErrUnknownReceiver error = wire.CodeUnknownReceiver
	// ErrReconnectFailed (7200): the retry limit ran out; the error also
	// wraps the last attempt's error.
	ErrReconnectFailed error = wire.CodeReconnectFailed
)

// Accepted reports whether a send's error means the server took the
// message: nil (delivered or routed) or ErrOffline (stored for later).
func Accepted(err error) bool {
	return err == nil || errors.Is(err, wire.CodeOffline)
}
