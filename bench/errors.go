package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// Sentinel errors. Protocol clients wrap them so the runner can count
// failures by kind (see errKind).
var (
	ErrUsage      = errors.New("bench: bad usage")
	ErrDial       = errors.New("bench: cannot reach broker")
	ErrAuth       = errors.New("bench: not authorized")
	ErrRefused    = errors.New("bench: connection refused by broker")
	ErrSubscribe  = errors.New("bench: subscription refused")
	ErrProtocol   = errors.New("bench: protocol error")
	ErrDisconnect = errors.New("bench: disconnected by broker")
	ErrPublish    = errors.New("bench: publish refused")
	ErrWorker     = errors.New("bench: worker failed")
	ErrStalled    = errors.New("bench: broker stalled")
	ErrAgent      = errors.New("bench: agent failed")
	ErrRegister   = errors.New("bench: registering accounts failed")
	errBadHist    = errors.New("bench: bad histogram from a runner")
)

// usageErr reports a bad option; the command exits with ExitUsage.
func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUsage}, args...)...)
}

// Exit codes of `cim bench`; scripts rely on them.
const (
	ExitOK        = 0 // the run completed without errors (loss at QoS 0 is not an error)
	ExitErrors    = 1 // errors during the run: some connections failed, the broker went away, ...
	ExitUsage     = 2 // bad flags
	ExitNoConnect = 3 // not a single connection could be established
	ExitAuth      = 4 // not a single connection: every one was refused as not authorized
)

// Error kinds, the keys of Report.Errors.
const (
	KindUnreachable = "unreachable"     // TCP connect refused / no route
	KindTimeout     = "connect_timeout" // dial or handshake took longer than --connect-timeout
	KindAuth        = "auth"            // CONNACK: bad user name or password / not authorized
	KindRefused     = "connack"         // CONNACK with another failure code
	KindSubscribe   = "subscribe"       // SUBACK failure
	KindClosed      = "closed"          // the broker closed the connection mid-run
	KindDisconnect  = "disconnect"      // the broker sent DISCONNECT
	KindProtocol    = "protocol"        // malformed or unexpected packet
	KindPublish     = "publish"         // PUBACK/PUBREC failure code
	KindIO          = "io"              // any other I/O failure
	KindWorker      = "worker"          // a worker process failed
	KindStalled     = "stalled"         // publishing made no progress for --drain
	KindAgent       = "agent"           // an agent failed or went away
	KindChurn       = "churn_timeout"   // churn: a client's own message did not come back in time
	KindRegister    = "register"        // native: the HTTP API did not register the run's accounts
)

// errKind maps an error to the kind it is counted under.
func errKind(err error) string {
	switch {
	case errors.Is(err, ErrAuth):
		return KindAuth
	case errors.Is(err, ErrRefused):
		return KindRefused
	case errors.Is(err, ErrSubscribe):
		return KindSubscribe
	case errors.Is(err, ErrDisconnect):
		return KindDisconnect
	case errors.Is(err, ErrProtocol):
		return KindProtocol
	case errors.Is(err, ErrPublish):
		return KindPublish
	case errors.Is(err, ErrWorker):
		return KindWorker
	case errors.Is(err, ErrStalled):
		return KindStalled
	case errors.Is(err, ErrAgent):
		return KindAgent
	case errors.Is(err, errChurnTimeout):
		return KindChurn
	case errors.Is(err, ErrRegister):
		return KindRegister
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		if errors.Is(err, ErrDial) {
			return KindTimeout
		}
		return KindIO
	case errors.Is(err, ErrDial):
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return KindTimeout
		}
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			// Accepted at TCP level, then dropped before CONNACK.
			return KindClosed
		}
		return KindUnreachable
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return KindClosed
	}
	return KindIO
}
