package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cimgo/cim/broker/wire"
)

// Requests over the connection: online users, history, groups, delayed
// messages, subscriptions. Each waits for a Ready connection (while the
// client reconnects), then for the answer, within ctx (or RequestTimeout).
// A connection lost before the answer fails the call with
// ErrConnectionLost: calls are not sent again, since some (joining a
// group) are not idempotent.

// UserInfo is a user as the server lists it.
type UserInfo = wire.User

// GroupInfo describes a group (Created is unix ms).
type GroupInfo = wire.Group

// roundTrip sends the frame build makes for a fresh request id and waits
// for the answer.
func (c *Client) roundTrip(ctx context.Context, build func(id uint64) wire.Body) (reply, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	for {
		cn, err := c.waitReady(ctx)
		if err != nil {
			return reply{}, err
		}
		id := c.nextReq.Add(1)
		type answer struct {
			r   reply
			err error
		}
		ch := make(chan answer, 1)
		if !cn.register(id, func(r reply, err error) { ch <- answer{r, err} }) {
			continue // it ended just now; wait for the next one
		}
		frame, err := wire.Append(nil, build(id))
		if err != nil {
			cn.unregister(id)
			return reply{}, fmt.Errorf("client: %w", err)
		}
		cn.write(frame)
		select {
		case a := <-ch:
			if a.err != nil && c.stopCtx.Err() != nil {
				return reply{}, c.closedErr()
			}
			return a.r, a.err
		case <-ctx.Done():
			cn.unregister(id)
			return reply{}, fmt.Errorf("client: waiting for the answer: %w", ctx.Err())
		}
	}
}

// call makes a Request and decodes its result into result (if not nil).
func (c *Client) call(ctx context.Context, method string, args, result any) error {
	var raw wire.Raw
	if args != nil {
		var err error
		if raw, err = wire.MarshalRaw(args); err != nil {
			return fmt.Errorf("client: %s: %w", method, err)
		}
	}
	r, err := c.roundTrip(ctx, func(id uint64) wire.Body { return &wire.Request{ID: id, Method: method, Args: raw} })
	if err != nil {
		return fmt.Errorf("client: %s: %w", method, err)
	}
	if r.resp.Code != wire.CodeOK {
		if r.resp.Text != "" {
			return fmt.Errorf("client: %s: %s: %w", method, r.resp.Text, r.resp.Code)
		}
		return fmt.Errorf("client: %s: %w", method, r.resp.Code)
	}
	if result != nil {
		if err := r.resp.Result.Unmarshal(result); err != nil {
			return fmt.Errorf("client: %s result: %w", method, err)
		}
	}
	return nil
}

// OnlineUsers lists the users online now whose name starts with prefix
// (all of them if empty), at most limit (0: the server's default).
func (c *Client) OnlineUsers(ctx context.Context, prefix string, limit int) ([]UserInfo, error) {
	var res wire.OnlineResult
	err := c.call(ctx, wire.MethodOnline, &wire.OnlineArgs{Prefix: prefix, Limit: clampLimit(limit)}, &res)
	return res.Users, err
}

func clampLimit(n int) uint32 {
	if n <= 0 {
		return 0
	}
	return uint32(min(int64(n), 1<<31)) // int64: 1<<31 overflows a 32-bit int
}

// HistoryQuery selects stored messages, newest first.
type HistoryQuery struct {
	// With is the conversation: User(id) for the private one with that
	// user, Group(name) for a group. The zero Target means every
	// conversation of this user (only with Keyword).
	With Target
	// Keyword keeps the messages whose body contains it (Unicode case
	// folding).
	Keyword string
	// Before starts the page just before this time (zero: now); Cursor,
	// from a previous page, takes precedence.
	Before time.Time
	Cursor []byte
	// Limit bounds the page (0: the server's default).
	Limit int
}

// HistoryPage is one page of history, newest first. Next is the Cursor of
// the next (older) page; empty on the last page.
type HistoryPage struct {
	Messages []*Message
	Next     []byte
}

// History reads a page of stored messages.
func (c *Client) History(ctx context.Context, q HistoryQuery) (HistoryPage, error) {
	if q.With.Kind == 0 && q.Keyword == "" {
		return HistoryPage{}, fmt.Errorf("client: history of every conversation needs a Keyword: %w", wire.CodeBadArgument)
	}
	args := wire.HistoryArgs{Target: q.With, Keyword: q.Keyword, Cursor: q.Cursor, Limit: clampLimit(q.Limit)}
	if !q.Before.IsZero() {
		args.Before = q.Before.UnixMilli()
	}
	var res wire.HistoryResult
	if err := c.call(ctx, wire.MethodHistory, &args, &res); err != nil {
		return HistoryPage{}, err
	}
	page := HistoryPage{Next: res.Next, Messages: make([]*Message, len(res.Messages))}
	me := c.Info().UserID
	for i := range res.Messages {
		d := &res.Messages[i]
		m := &Message{ID: d.MsgID, From: d.From, FromName: d.FromName, To: d.Target, Body: d.Body, QoS: d.QoS, Offline: d.Offline}
		// The keys derived when absent (wire's doc.go): the server writes
		// them in history, but the protocol lets it leave them out.
		if d.Time == 0 {
			d.Time = wire.MsgIDTime(d.MsgID)
		}
		if m.To.Kind == wire.KindUser && m.To.User == 0 {
			m.To.User = me
		}
		if d.Time != 0 {
			m.Time = time.UnixMilli(d.Time)
		}
		page.Messages[i] = m
	}
	return page, nil
}

// Search returns the newest messages of all this user's conversations
// that contain keyword, at most limit (0: the server's default).
func (c *Client) Search(ctx context.Context, keyword string, limit int) ([]*Message, error) {
	if keyword == "" {
		return nil, fmt.Errorf("client: search for nothing: %w", wire.CodeBadArgument)
	}
	page, err := c.History(ctx, HistoryQuery{Keyword: keyword, Limit: limit})
	return page.Messages, err
}

// CreateGroup creates a group; this user owns it and is its first member.
func (c *Client) CreateGroup(ctx context.Context, name string) (GroupInfo, error) {
	var g GroupInfo
	err := c.call(ctx, wire.MethodGroupCreate, &wire.GroupArgs{Name: name}, &g)
	return g, err
}

// JoinGroup makes this user a member of the group: its messages are
// delivered from now on (and on every login).
func (c *Client) JoinGroup(ctx context.Context, name string) (GroupInfo, error) {
	var g GroupInfo
	err := c.call(ctx, wire.MethodGroupJoin, &wire.GroupArgs{Name: name}, &g)
	return g, err
}

// LeaveGroup ends this user's membership.
func (c *Client) LeaveGroup(ctx context.Context, name string) error {
	return c.call(ctx, wire.MethodGroupLeave, &wire.GroupArgs{Name: name}, nil)
}

// GroupMembers lists a group's members.
func (c *Client) GroupMembers(ctx context.Context, name string) ([]UserInfo, error) {
	var res wire.UsersResult
	err := c.call(ctx, wire.MethodGroupMembers, &wire.GroupArgs{Name: name}, &res)
	return res.Users, err
}

// MyGroups lists the groups this user is a member of.
func (c *Client) MyGroups(ctx context.Context) ([]GroupInfo, error) {
	var res wire.GroupsResult
	err := c.call(ctx, wire.MethodGroupsMine, nil, &res)
	return res.Groups, err
}

// Delayed is a message of this user's waiting for its time on the server.
type Delayed struct {
	MsgID   uint64
	To      Target
	Body    []byte
	QoS     byte
	Due     time.Time
	Created time.Time
}

// DelayedMessages lists this user's delayed messages that are not due yet,
// soonest first, a page at a time: pass the returned next cursor to get
// the following page (nil when there is none).
func (c *Client) DelayedMessages(ctx context.Context, cursor []byte, limit int) (msgs []Delayed, next []byte, err error) {
	var res wire.DelayedResult
	if err := c.call(ctx, wire.MethodDelayed, &wire.DelayedArgs{Cursor: cursor, Limit: clampLimit(limit)}, &res); err != nil {
		return nil, nil, err
	}
	msgs = make([]Delayed, len(res.Messages))
	for i, d := range res.Messages {
		msgs[i] = Delayed{MsgID: d.MsgID, To: d.Target, Body: d.Body, QoS: d.QoS}
		if d.Due != 0 {
			msgs[i].Due = time.UnixMilli(d.Due)
		}
		if d.Created != 0 {
			msgs[i].Created = time.UnixMilli(d.Created)
		}
	}
	return msgs, res.Next, nil
}

// Subscribe adds topic filters (MQTT syntax: + and # wildcards) at QoS 1;
// their messages arrive at OnMessage with To set to Topic(the topic). The
// client subscribes again after every reconnect. Filters the server
// refuses are named in the error (each wrapping its code); the others are
// subscribed.
func (c *Client) Subscribe(ctx context.Context, filters ...string) error {
	return c.subscription(ctx, true, filters)
}

// Unsubscribe removes topic filters.
func (c *Client) Unsubscribe(ctx context.Context, filters ...string) error {
	return c.subscription(ctx, false, filters)
}

func (c *Client) subscription(ctx context.Context, sub bool, filters []string) error {
	if len(filters) == 0 {
		return nil
	}
	filters = slices.Clone(filters)
	what := "unsubscribe"
	if sub {
		what = "subscribe"
	}
	r, err := c.roundTrip(ctx, func(id uint64) wire.Body {
		if sub {
			return &wire.Subscribe{ID: id, Filters: filters, QoS: 1}
		}
		return &wire.Unsubscribe{ID: id, Filters: filters}
	})
	if err != nil {
		return fmt.Errorf("client: %s: %w", what, err)
	}
	if len(r.codes) != len(filters) {
		return fmt.Errorf("client: %s: %d codes for %d filters: %w", what, len(r.codes), len(filters), ErrProtocol)
	}
	var errs []error
	c.mu.Lock()
	for i, f := range filters {
		switch {
		case r.codes[i] != wire.CodeOK:
			errs = append(errs, fmt.Errorf("client: %s %q: %w", what, f, r.codes[i]))
		case sub:
			c.mu.subs[f] = struct{}{}
		default:
			delete(c.mu.subs, f)
		}
	}
	c.mu.Unlock()
	return errors.Join(errs...)
}

// logRefusedFilters logs the filters a resubscription was refused.
func (c *Client) logRefusedFilters(what string, filters []string, codes []wire.Code, err error) {
	if err != nil {
		c.log.Warn(what+" failed", "err", err)
		return
	}
	for i, f := range filters {
		if i < len(codes) && codes[i] != wire.CodeOK {
			c.log.Warn(what+" refused", "filter", f, "code", int(codes[i]), "reason", codes[i].String())
		}
	}
}
