package chat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cimgo/cim/broker/wire"
	"github.com/cimgo/cim/client"
)

// Printer shows lines to the user: one call, one whole line (without its
// newline). It is called from several goroutines (commands and the SDK's
// callback goroutine) and must serialise them itself; it should not
// block for long.
type Printer interface {
	Println(line string)
}

// Errors of Start, each wrapping the cause; ExitCode maps them to exit
// statuses.
var (
	// ErrAuth: the server refused the account (wrong password, unknown
	// account with --addr, name and id disagree).
	ErrAuth = errors.New("chat: login refused")
	// ErrUnreachable: the API or the native listener could not be reached
	// within DialTimeout.
	ErrUnreachable = errors.New("chat: server unreachable")
)

// Exit statuses of cim chat.
const (
	ExitOK          = 0 // quit by :q!, end of input or a signal
	ExitFailure     = 1 // anything else (taken over by another login, kicked, ...)
	ExitUsage       = 2 // a bad flag or option
	ExitAuth        = 3 // wrong password or unknown account
	ExitUnreachable = 4 // the API or the server did not answer
)

// ExitCode is the exit status for an error of Start or Run.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrOptions):
		return ExitUsage
	case errors.Is(err, ErrAuth):
		return ExitAuth
	case errors.Is(err, ErrUnreachable):
		return ExitUnreachable
	}
	return ExitFailure
}

// Session is one logged-in user of cim chat: it runs commands (Handle)
// and shows what arrives. Safe for concurrent use.
type Session struct {
	opts Options
	out  Printer
	c    *client.Client
	log  *Log // nil: no local log
	me   client.Info

	ai      atomic.Bool
	echo    bool          // show what the user typed (a terminal erases the edited line)
	done    chan struct{} // closed when the session ended by itself (OnFatal)
	fatal   atomic.Pointer[error]
	endOnce sync.Once

	names struct {
		sync.Mutex
		byID   map[uint64]string
		byName map[string]uint64
	}
}

// Start registers the user (with APIURL), connects and logs in, within
// DialTimeout. Messages then arrive at out until Close; offline ones
// first, marked as such.
func Start(ctx context.Context, opts Options, out Printer) (*Session, error) {
	opts.Addrs = append([]string(nil), opts.Addrs...)
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Session{opts: opts, out: out, done: make(chan struct{})}
	s.names.byID = map[uint64]string{}
	s.names.byName = map[string]uint64{}
	ctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	defer cancel()

	co := client.Options{UserName: opts.User, Password: opts.Password, HTTPClient: opts.HTTPClient,
		RetryLimit: -1, Logger: opts.Logger, Version: "cim-chat/1",
		OnMessage: s.onMessage, OnStateChange: s.onState, OnFatal: s.onFatal}
	if opts.APIURL != "" {
		u, err := client.Register(ctx, opts.HTTPClient, opts.APIURL, opts.User, opts.Password)
		if err != nil {
			return nil, startError("registering "+opts.User+" at "+opts.APIURL, err)
		}
		co.UserID = u.ID
	}
	if len(opts.Addrs) > 0 {
		co.Addrs = opts.Addrs
	} else {
		co.APIURL = opts.APIURL
	}
	if opts.Client != nil {
		opts.Client(&co)
	}
	if opts.LogDir != "" {
		l, err := OpenLog(opts.LogDir, opts.User)
		if err != nil {
			return nil, err
		}
		s.log = l
	}
	c, err := client.Dial(ctx, co)
	if err != nil {
		if s.log != nil {
			s.log.Close()
		}
		return nil, startError("logging in as "+opts.User, err)
	}
	s.c = c
	s.me = c.Info()
	s.learn(s.me.UserID, s.me.UserName)
	return s, nil
}

// startError classifies a failure to start.
func startError(what string, err error) error {
	var ne net.Error
	var ue *url.Error
	switch {
	case errors.Is(err, client.ErrAccountMismatch), errors.Is(err, wire.CodeTokenExpired):
		return fmt.Errorf("%w: %s: wrong password, or no such account: %w", ErrAuth, what, err)
	case errors.Is(err, wire.CodeBadArgument), errors.Is(err, wire.CodeNameTooLong):
		return fmt.Errorf("%w: %s: %w", ErrOptions, what, err)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne), errors.As(err, &ue),
		errors.Is(err, client.ErrHTTP), errors.Is(err, wire.CodeReconnectFailed):
		return fmt.Errorf("%w: %s: %w", ErrUnreachable, what, err)
	}
	return fmt.Errorf("chat: %s: %w", what, err)
}

// Info is the login: user id and name, node, address.
func (s *Session) Info() client.Info { return s.c.Info() }

// Done is closed when the session has ended by itself (taken over by
// another login, kicked): Err says why.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is why the session ended by itself, or nil.
func (s *Session) Err() error {
	if p := s.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

// Close logs out and closes the local log. Delayed messages are already
// on the server.
func (s *Session) Close() error {
	err := s.c.Close()
	<-s.c.Done() // the last callbacks (messages, state) have run
	if s.log != nil {
		if e := s.log.Close(); err == nil {
			err = e
		}
	}
	return err
}

func (s *Session) printf(format string, a ...any) { s.out.Println(fmt.Sprintf(format, a...)) }

// info prints a line about the session (not a message): "* ...".
func (s *Session) info(format string, a ...any) { s.out.Println("* " + fmt.Sprintf(format, a...)) }

func (s *Session) errorf(format string, a ...any) {
	s.out.Println("error: " + fmt.Sprintf(format, a...))
}

func (s *Session) style(mark string) Style {
	return Style{Color: s.opts.Color, Emoji: !s.opts.NoEmoji, Mark: mark}
}

// onMessage shows and logs a delivered message (on the SDK's callback
// goroutine, one at a time).
func (s *Session) onMessage(m *client.Message) {
	s.learn(m.From, m.FromName)
	l := s.lineOf(m)
	s.out.Println(l.Render(s.style("")))
	s.logLine(l)
}

func (s *Session) logLine(l Line) {
	if s.log == nil {
		return
	}
	if err := s.log.Append(l); err != nil {
		s.errorf("%v", err)
	}
}

// lineOf is the display line of a message, received or from the history.
func (s *Session) lineOf(m *client.Message) Line {
	sender := m.FromName
	if sender == "" {
		sender = idString(m.From)
	}
	t := m.Time
	if t.IsZero() {
		t = time.Now()
	}
	return Line{Time: t, Sender: sender, Tag: tagOf(m.To, s.me.UserID, s.nameOf), Offline: m.Offline, Body: string(m.Body)}
}

func (s *Session) onState(from, to client.State) {
	switch {
	case to == client.Reconnecting:
		s.printf("warning: connection lost; reconnecting (messages you send now are sent once connected)")
	case to == client.Ready && from == client.Reconnecting:
		i := s.c.Info()
		s.info("reconnected to %s (node %s)", i.Addr, i.Node)
	}
}

func (s *Session) onFatal(err error) {
	s.fatal.Store(&err)
	switch {
	case errors.Is(err, client.ErrTakenOver):
		s.errorf("%s logged in elsewhere; this session is over", s.opts.User)
	case errors.Is(err, wire.CodeKicked):
		s.errorf("disconnected by an administrator")
	default:
		s.errorf("connection ended: %v", err)
	}
	s.endOnce.Do(func() { close(s.done) })
}

// learn remembers a user's name and id.
func (s *Session) learn(id uint64, name string) {
	if id == 0 || name == "" {
		return
	}
	s.names.Lock()
	s.names.byID[id] = name
	s.names.byName[name] = id
	s.names.Unlock()
}

// nameOf is a user's name if known, else the id.
func (s *Session) nameOf(id uint64) string {
	s.names.Lock()
	defer s.names.Unlock()
	if n, ok := s.names.byID[id]; ok {
		return n
	}
	return idString(id)
}
