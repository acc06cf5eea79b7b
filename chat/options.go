package chat

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/cimgo/cim/client"
)

// Options configure a chat session. Set the account (User, maybe
// Password) and where to connect (APIURL, Addrs, or both).
type Options struct {
	// User is the account's name; with APIURL it is registered on first
	// use (registering an existing name is a no-op that returns its id).
	User string
	// Password protects the account (set at registration, checked at
	// every login). Empty: a login by name, as in cim.
	Password string
	// APIURL is the HTTP API (http://host:8083): it registers the user
	// and its POST /login names the node to connect to.
	APIURL string
	// Addrs are native addresses (host:port) to connect to directly,
	// tried in turn. With APIURL too, the API only registers the user.
	Addrs []string

	// LogDir holds the local chat logs (LogDir/<user>/yyyy-MM-dd.log).
	// Empty: no local log.
	LogDir string
	// Color renders ANSI colours (set it for a terminal only).
	Color bool
	// NoEmoji shows :alias: text as it is instead of the emoji.
	NoEmoji bool

	// DialTimeout bounds registering, connecting and logging in at the
	// start. Default 10 s. After that the session reconnects by itself,
	// for as long as it runs.
	DialTimeout time.Duration
	// CommandTimeout bounds one command's calls to the server. Default
	// 15 s.
	CommandTimeout time.Duration
	// HistoryLimit is how many messages :history and :q ask the server
	// for. Default 20 and 50.
	HistoryLimit, SearchLimit int

	// HTTPClient calls the API. Default: one with a DialTimeout timeout.
	HTTPClient *http.Client
	// Logger receives the SDK's logs. Default: discard.
	Logger *slog.Logger
	// Client, if set, adjusts the SDK's options before Dial (tests use
	// it for short keepalives and backoffs).
	Client func(*client.Options)
}

// ErrOptions is wrapped by Validate's errors.
var ErrOptions = errors.New("chat: invalid options")

// EnsureDefaults fills in the zero fields that have defaults.
func (o *Options) EnsureDefaults() {
	if o.DialTimeout == 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.CommandTimeout == 0 {
		o.CommandTimeout = 15 * time.Second
	}
	if o.HistoryLimit == 0 {
		o.HistoryLimit = 20
	}
	if o.SearchLimit == 0 {
		o.SearchLimit = 50
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: o.DialTimeout}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate names the first bad field.
func (o *Options) Validate() error {
	bad := func(field, format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrOptions, field, fmt.Sprintf(format, a...))
	}
	switch {
	case o.User == "":
		return bad("User", "a user name is required")
	case o.APIURL == "" && len(o.Addrs) == 0:
		return bad("APIURL", "set APIURL or Addrs")
	case o.DialTimeout < 0:
		return bad("DialTimeout", "negative")
	case o.CommandTimeout < 0:
		return bad("CommandTimeout", "negative")
	case o.HistoryLimit < 0 || o.SearchLimit < 0:
		return bad("HistoryLimit", "negative")
	}
	if o.APIURL != "" {
		u, err := url.Parse(o.APIURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad("APIURL", "%q is not an http(s)://host:port URL", o.APIURL)
		}
	}
	for i, a := range o.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return bad(fmt.Sprintf("Addrs[%d]", i), "%q: %v", a, err)
		}
	}
	return nil
}
