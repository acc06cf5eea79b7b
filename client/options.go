package client

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/cimgo/cim/broker/wire"
)

// Options configure a Client. The zero value of every field but the
// account and the server is a sensible default (EnsureDefaults fills them
// in; Dial calls it).
type Options struct {
	// The account: UserID or UserName (both: they must match), proved by
	// Password or Token. With both, the token is tried first and the
	// password when the server refuses the token. After a login the client
	// keeps the token the server returned and logs in with it again on
	// reconnect, so the server checks the password once.
	UserID   uint64
	UserName string
	Password string
	Token    string

	// Where: one or several native addresses (host:port), tried in turn,
	// or the base URL of the HTTP API (http://host:8083), whose POST /login
	// names the node to connect to for this user. One of the two.
	Addrs  []string
	APIURL string
	// Register makes Dial register UserName through POST /registerAccount
	// first (idempotent: an existing name gets its id back). Needs APIURL.
	Register bool
	// TLSConfig, when set, makes the native connection TLS (the server's
	// native_tls_addr, default :9443). A config without ServerName gets
	// the host of the address dialled.
	TLSConfig *tls.Config
	// HTTPClient makes the HTTP API calls; default: one with a timeout of
	// ConnectTimeout.
	HTTPClient *http.Client

	// ConnectTimeout bounds one connection attempt: route lookup, TCP
	// connect, login and its ack. Default 5 s.
	ConnectTimeout time.Duration
	// Keepalive is asked of the server at login (whole seconds): it closes
	// a connection it hears nothing from for that long; the client pings
	// after a third of it without writing. The server's answer wins.
	// Default 30 s.
	Keepalive time.Duration
	// RequestTimeout bounds a call (Send, Publish, OnlineUsers, ...) whose
	// context has no deadline, including the wait for a connection while
	// reconnecting. Default 30 s.
	RequestTimeout time.Duration
	// RetryLimit is how many connection attempts in a row may fail before
	// the client gives up (Dial returns the error; after Dial the state
	// becomes Failed and OnFatal is called). Default 10; negative: retry
	// forever.
	RetryLimit int
	// Backoff spaces the attempts. Default ExponentialBackoff{} (250 ms
	// doubling to 30 s, half of it random).
	Backoff Backoff
	// MaxInflight bounds the sends (a batch counts once) that wait for
	// their ack; PublishAsync blocks while it is reached. Default 1024.
	MaxInflight int
	// MaxFrameSize bounds a frame from the server. Default 16 MiB.
	MaxFrameSize int
	// MessageBuffer bounds the QoS 0 messages waiting for OnMessage;
	// beyond it new QoS 0 messages are dropped (counted in Dropped). QoS 1
	// messages are never dropped (the server bounds how many it has in
	// flight). Default 10,000.
	MessageBuffer int
	// Version is sent at login as the client's software. Default
	// "cim-go/1".
	Version string

	// Callbacks, all called one at a time, in order, from one goroutine
	// of the client (never concurrently with each other). A callback may
	// call any method of the Client, including Close and a synchronous
	// Send; while it runs, later messages wait (reading from the server
	// goes on).
	//
	// OnMessage receives every delivered message. For QoS 1 the client
	// acknowledges the message to the server after OnMessage returns, and
	// a message delivered again after a reconnect (already passed to
	// OnMessage, ack lost) is acknowledged without a second call for the
	// last 4096 message ids. Nil: messages are acknowledged and dropped.
	OnMessage func(*Message)
	// OnStateChange reports every state transition.
	OnStateChange func(from, to State)
	// OnFatal is called once when the client gives up after Dial returned
	// (state Failed): retries exhausted (ErrReconnectFailed), credentials
	// refused (ErrAccountMismatch), taken over (ErrTakenOver) or kicked.
	OnFatal func(error)
	// Logger receives the client's events (connects, losses, retries,
	// refusals, dropped messages). Default: discard.
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultKeepalive      = 30 * time.Second
	DefaultRequestTimeout = 30 * time.Second
	DefaultRetryLimit     = 10
	DefaultMaxInflight    = 1024
	DefaultMaxFrameSize   = 16 << 20
	DefaultMessageBuffer  = 10000
	DefaultVersion        = "cim-go/1"
)

// EnsureDefaults fills in every zero field that has a default.
func (o *Options) EnsureDefaults() {
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.Keepalive == 0 {
		o.Keepalive = DefaultKeepalive
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.RetryLimit == 0 {
		o.RetryLimit = DefaultRetryLimit
	}
	if o.Backoff == nil {
		o.Backoff = ExponentialBackoff{}
	}
	if o.MaxInflight == 0 {
		o.MaxInflight = DefaultMaxInflight
	}
	if o.MaxFrameSize == 0 {
		o.MaxFrameSize = DefaultMaxFrameSize
	}
	if o.MessageBuffer == 0 {
		o.MessageBuffer = DefaultMessageBuffer
	}
	if o.Version == "" {
		o.Version = DefaultVersion
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: o.ConnectTimeout}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidOptions, field, fmt.Sprintf(format, args...))
}

// Validate checks the options (after EnsureDefaults) and names the first
// bad field.
func (o *Options) Validate() error {
	switch {
	case o.UserID == 0 && o.UserName == "":
		return invalid("UserID", "set UserID or UserName")
	case len(o.Addrs) == 0 && o.APIURL == "":
		return invalid("Addrs", "set Addrs or APIURL")
	case len(o.Addrs) > 0 && o.APIURL != "":
		return invalid("APIURL", "set Addrs or APIURL, not both")
	case o.Register && o.APIURL == "":
		return invalid("Register", "needs APIURL")
	case o.Register && o.UserName == "":
		return invalid("Register", "needs UserName")
	case o.ConnectTimeout < 0:
		return invalid("ConnectTimeout", "negative")
	case o.Keepalive < time.Second:
		return invalid("Keepalive", "%v is under a second", o.Keepalive)
	case o.Keepalive > 0xffff*time.Second:
		return invalid("Keepalive", "%v is over 65535 s", o.Keepalive)
	case o.RequestTimeout < 0:
		return invalid("RequestTimeout", "negative")
	case o.MaxInflight < 0:
		return invalid("MaxInflight", "negative")
	case o.MaxFrameSize < 0 || o.MaxFrameSize > wire.MaxFrameSize:
		return invalid("MaxFrameSize", "%d is not in 0..%d", o.MaxFrameSize, wire.MaxFrameSize)
	case o.MessageBuffer < 0:
		return invalid("MessageBuffer", "negative")
	}
	for i, a := range o.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return invalid(fmt.Sprintf("Addrs[%d]", i), "%q: %v", a, err)
		}
	}
	if o.APIURL != "" {
		u, err := url.Parse(o.APIURL)
		if err != nil {
			return invalid("APIURL", "%v", err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return invalid("APIURL", "%q is not an http(s)://host URL", o.APIURL)
		}
	}
	return nil
}
