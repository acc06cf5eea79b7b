package chat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cimgo/cim/broker/wire"
	"github.com/cimgo/cim/client"
)

// ErrUnknownUser: a name;;text receiver that is neither online nor known
// to the API.
var ErrUnknownUser = errors.New("chat: unknown user")

// Handle runs one input line and prints its outcome. It returns true for
// :q! (the caller then calls Close). Errors are printed, not returned:
// a bad line never ends the session.
func (s *Session) Handle(ctx context.Context, line string) (quit bool) {
	cmd, err := Parse(line)
	if err != nil {
		s.errorf("%v", strings.TrimPrefix(err.Error(), "chat: "))
		return false
	}
	if s.echo && cmd.Kind != KindNone && cmd.Kind != KindText && cmd.Kind != KindPrivate && cmd.Kind != KindGroup {
		s.out.Println(ansiDim + s.me.UserName + "> " + sanitize(line) + ansiReset)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.CommandTimeout)
	defer cancel()
	switch cmd.Kind {
	case KindNone:
	case KindQuit:
		return true
	case KindText, KindPrivate, KindGroup:
		if cmd.Kind == KindText && s.ai.Load() {
			if s.echo {
				s.out.Println(Line{Time: time.Now(), Sender: s.me.UserName, Body: cmd.Text}.Render(s.style("")))
			}
			s.out.Println(Line{Time: time.Now(), Sender: "AI", Body: AIAnswer(cmd.Text)}.Render(s.style("")))
			return false
		}
		s.send(ctx, cmd, 0)
	case KindDelay:
		s.send(ctx, *cmd.Inner, cmd.Delay)
	case KindAll:
		s.listCommands(false)
	case KindHelp:
		s.listCommands(true)
	case KindUnknown:
		s.errorf("unknown command %s; the commands are:", cmd.Text)
		s.listCommands(false)
	case KindOnline:
		s.online(ctx, "")
	case KindPrefix:
		s.online(ctx, cmd.Text)
	case KindSearch:
		s.search(ctx, cmd.Text)
	case KindHistory:
		s.history(ctx, cmd.To)
	case KindAIOn:
		s.ai.Store(true)
		s.info("AI mode on: a local bot answers your lines and nothing is sent to everyone (:qai ends it)")
	case KindAIOff:
		s.ai.Store(false)
		s.info("AI mode off")
	case KindInfo:
		s.showInfo()
	case KindEmoji:
		s.emoji(cmd.Page)
	case KindJoin:
		s.join(ctx, cmd.To)
	case KindLeave:
		if err := s.c.LeaveGroup(ctx, cmd.To); err != nil {
			s.errorf("leaving %s: %v", cmd.To, plain(err))
		} else {
			s.info("left %s", cmd.To)
		}
	case KindGroups:
		s.groups(ctx)
	}
	return false
}

// plain drops the SDK's "client: method: " prefixes from an error for
// people; the code's own text stays.
func plain(err error) string {
	msg := err.Error()
	for _, p := range []string{"client: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	return msg
}

// send sends a text, private or group message (held delay by the server
// if not 0) and logs it.
func (s *Session) send(ctx context.Context, cmd Command, delay time.Duration) {
	var to client.Target
	tag := ""
	switch cmd.Kind {
	case KindText:
		to = client.Everyone()
	case KindGroup:
		to, tag = client.Group(strings.TrimPrefix(cmd.To, "@")), "to @"+strings.TrimPrefix(cmd.To, "@")
	case KindPrivate:
		id, name, err := s.resolve(ctx, cmd.To)
		if err != nil {
			s.errorf("%v", strings.TrimPrefix(err.Error(), "chat: "))
			return
		}
		to, tag = client.User(id), "to "+name
	}
	acks, err := s.c.Publish(ctx, client.Publish{To: to, Body: []byte(cmd.Text), Delay: delay})
	if !client.Accepted(err) {
		s.sendError(cmd, err)
		return
	}
	ack := client.Ack{Time: time.Now()}
	if len(acks) > 0 {
		ack = acks[0]
	}
	if ack.Time.IsZero() {
		ack.Time = time.Now()
	}
	if delay > 0 {
		due := ack.Time.Add(delay)
		s.info("delayed message %d accepted: the server sends it at %s, even if you quit", ack.MsgID, due.Format(TimeLayout))
		return
	}
	l := Line{Time: ack.Time, Sender: s.me.UserName, Tag: tag, Body: cmd.Text}
	if s.echo {
		s.out.Println(l.Render(s.style("")))
	}
	if errors.Is(err, client.ErrOffline) {
		s.info("%s is offline: the message is stored and delivered at their next login", strings.TrimPrefix(tag, "to "))
	}
	s.logLine(l)
}

func (s *Session) sendError(cmd Command, err error) {
	var code wire.Code
	errors.As(err, &code)
	switch code {
	case wire.CodeNotMember:
		s.errorf("you are not in group %s (:join %s)", cmd.To, cmd.To)
	case wire.CodeUnknownGroup:
		s.errorf("no group %s (:join %s creates it)", cmd.To, cmd.To)
	case wire.CodeUnknownReceiver:
		s.errorf("no user %s", cmd.To)
	case wire.CodeEmptyBody:
		s.errorf("empty message")
	default:
		s.errorf("not sent: %v", plain(err))
	}
}

// resolve finds the user a private message goes to: a number is a user
// id (cim's form); a name is looked up among the users seen, then online
// users, then through the API (which knows offline users too).
func (s *Session) resolve(ctx context.Context, to string) (uint64, string, error) {
	if id, err := strconv.ParseUint(to, 10, 64); err == nil && id > 0 {
		return id, s.nameOf(id), nil
	}
	s.names.Lock()
	id, ok := s.names.byName[to]
	s.names.Unlock()
	if ok {
		return id, to, nil
	}
	users, err := s.c.OnlineUsers(ctx, to, 50)
	if err == nil {
		for _, u := range users {
			if u.Name == to {
				s.learn(u.ID, u.Name)
				return u.ID, u.Name, nil
			}
		}
	}
	if s.opts.APIURL != "" {
		if u, err := lookupUser(ctx, s.opts.HTTPClient, s.opts.APIURL, to); err == nil {
			s.learn(u.ID, u.Name)
			return u.ID, u.Name, nil
		} else if !errors.Is(err, wire.CodeAccountMismatch) {
			return 0, "", fmt.Errorf("looking up %s: %w", to, err)
		}
	}
	return 0, "", fmt.Errorf("%w %q (not online and not registered; use the user id: id;;text)", ErrUnknownUser, to)
}

func (s *Session) listCommands(examples bool) {
	for _, c := range Commands {
		s.printf("  %-24s %s", c.Syntax, c.What)
	}
	if examples {
		s.printf("examples:")
		for _, e := range []string{
			"hello everyone          to everyone online",
			"bob;;hi bob             private, to bob (offline: stored for him)",
			"42;;hi                  private, to user 42",
			":join ops               then  :g ops;;deploy done",
			":delay :g ops;;stand-up in 5 300",
			":q invoice              search your messages for \"invoice\"",
			"I am :smile:            shown as I am 😄",
		} {
			s.printf("  %s", e)
		}
	}
}

func (s *Session) online(ctx context.Context, prefix string) {
	users, err := s.c.OnlineUsers(ctx, prefix, 0)
	if err != nil {
		s.errorf("online users: %v", plain(err))
		return
	}
	// The server matches with Unicode case folding already; the same
	// rule here keeps the list right against an older server.
	users = slices.DeleteFunc(users, func(u client.UserInfo) bool { return !HasPrefixFold(u.Name, prefix) })
	if prefix == "" {
		s.info("%d online", len(users))
	} else {
		s.info("%d online with a name starting with %q", len(users), prefix)
	}
	for _, u := range users {
		s.learn(u.ID, u.Name)
		name := sanitize(u.Name)
		if prefix != "" {
			if end, ok := matchFoldAt(name, 0, prefix); ok {
				name = Highlight(name[:end], name[:end], s.opts.Color) + name[end:]
			}
		}
		me := ""
		if u.ID == s.me.UserID {
			me = " (you)"
		}
		s.printf("  %-8d %s%s", u.ID, name, me)
	}
}

// search looks for kw in the local log and the server's history of all
// the user's conversations, and prints the union, oldest first.
func (s *Session) search(ctx context.Context, kw string) {
	var local []Line
	if s.log != nil {
		var err error
		if local, err = s.log.Search(kw, 200); err != nil {
			s.errorf("%v", err)
		}
	}
	var remote []Line
	msgs, err := s.c.Search(ctx, kw, s.opts.SearchLimit)
	if err != nil {
		s.errorf("server history: %v (showing the local log only)", plain(err))
	}
	for _, m := range msgs {
		remote = append(remote, s.lineOf(m))
	}
	hits := Merge(local, remote)
	s.info("%d messages with %q (local log %d, server %d)", len(hits), kw, len(local), len(remote))
	for _, l := range hits {
		s.out.Println(l.Render(s.style(kw)))
	}
}

// history prints the last messages of a conversation: "" everyone, "@g"
// (or a group name that is not a user) a group, a user id or name.
func (s *Session) history(ctx context.Context, with string) {
	var t client.Target
	switch {
	case with == "" || with == "all" || with == "everyone":
		t, with = client.Everyone(), "everyone"
	case strings.HasPrefix(with, "@"):
		t = client.Group(with[1:])
	default:
		id, _, err := s.resolve(ctx, with)
		if err != nil {
			t = client.Group(with) // not a user: maybe a group
		} else {
			t = client.User(id)
		}
	}
	page, err := s.c.History(ctx, client.HistoryQuery{With: t, Limit: s.opts.HistoryLimit})
	if err != nil {
		s.errorf("history of %s: %v", with, plain(err))
		return
	}
	s.info("last %d messages with %s", len(page.Messages), with)
	for i := len(page.Messages) - 1; i >= 0; i-- {
		s.out.Println(s.lineOf(page.Messages[i]).Render(s.style("")))
	}
}

func (s *Session) showInfo() {
	i := s.c.Info()
	s.info("user %d %s, node %s at %s, %s, keepalive %v", i.UserID, i.UserName, i.Node, i.Addr, s.c.State(), i.Keepalive)
	if s.log != nil {
		s.info("local log in %s", s.log.Dir())
	}
	if s.ai.Load() {
		s.info("AI mode is on")
	}
}

func (s *Session) emoji(page int) {
	list := EmojiPage(page)
	if list == nil {
		s.errorf("no emoji page %d (1 to %d)", page, EmojiPages())
		return
	}
	s.info("emoji page %d of %d (type the alias in a message)", page, EmojiPages())
	for _, e := range list {
		if s.opts.NoEmoji {
			s.printf("  %s", e.Alias)
		} else {
			s.printf("  %-28s %s", e.Alias, e.Char)
		}
	}
}

func (s *Session) join(ctx context.Context, name string) {
	g, err := s.c.JoinGroup(ctx, name)
	if errors.Is(err, wire.CodeUnknownGroup) {
		if g, err = s.c.CreateGroup(ctx, name); err == nil {
			s.info("created group %s; you are its first member (send with :g %s;;text)", g.Name, g.Name)
			return
		}
	}
	if err != nil {
		s.errorf("joining %s: %v", name, plain(err))
		return
	}
	s.info("joined %s (%d members; send with :g %s;;text)", g.Name, g.Members, g.Name)
}

func (s *Session) groups(ctx context.Context) {
	gs, err := s.c.MyGroups(ctx)
	if err != nil {
		s.errorf("groups: %v", plain(err))
		return
	}
	s.info("you are in %d groups", len(gs))
	for _, g := range gs {
		owner := ""
		if g.Owner == s.me.UserID {
			owner = ", yours"
		}
		s.printf("  %-20s %d members%s", g.Name, g.Members, owner)
	}
}
