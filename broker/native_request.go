package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cimgo/cim/broker/topic"
	"github.com/cimgo/cim/broker/wire"
)

// Requests (online users, history, groups, delayed messages) may read or
// write the store, so each runs on a goroutine of its own and answers when
// done; the connection goes on meanwhile (a response carries its request's
// id). Subscriptions are applied on the loop.

// handleRequest starts a request. Loop only.
func (c *nativeConn) handleRequest(r *wire.Request) {
	req := wire.Request{ID: r.ID, Method: strings.Clone(r.Method), Args: slices.Clone(r.Args)}
	user := c.acct
	srv := c.loop.srv
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		result, err := srv.request(ctx, user, &req)
		resp := wire.Response{ID: req.ID, Code: wire.CodeOK}
		if err != nil {
			resp.Code, resp.Text = codeOfIM(err), err.Error()
		} else if result != nil {
			raw, err := wire.MarshalRaw(result)
			if err != nil {
				resp.Code, resp.Text = wire.CodeFailure, err.Error()
			} else {
				resp.Result = raw
			}
		}
		c.appendFrame(&resp)
	}()
}

// codeOfIM is the native code of an IM API error.
func codeOfIM(err error) wire.Code {
	switch {
	case errors.Is(err, ErrBadName):
		if strings.Contains(err.Error(), "longer") {
			return wire.CodeNameTooLong
		}
		return wire.CodeBadArgument
	case errors.Is(err, ErrNoSuchUser):
		return wire.CodeUnknownReceiver
	case errors.Is(err, ErrNoSuchGroup):
		return wire.CodeUnknownGroup
	case errors.Is(err, ErrGroupExists):
		return wire.CodeGroupExists
	case errors.Is(err, ErrNotMember):
		return wire.CodeNotMember
	}
	return wire.CodeOf(err)
}

// badArgs is a request's 3000, its text naming the arguments the method
// takes (keys of broker/wire/methods.go) and what was wrong, if known.
func badArgs(method, want string, err error) error {
	if err != nil {
		return fmt.Errorf("%w: %s: a: want %s: %v", wire.CodeBadArgument, method, want, err)
	}
	return fmt.Errorf("%w: %s: a: want %s", wire.CodeBadArgument, method, want)
}

// request runs one method for user. Off the loops.
func (srv *Server) request(ctx context.Context, user *Account, r *wire.Request) (any, error) {
	switch r.Method {
	case wire.MethodOnline:
		var a wire.OnlineArgs
		if err := r.Args.Unmarshal(&a); err != nil {
			return nil, badArgs(r.Method, "{p: name prefix, l: limit}", err)
		}
		limit := int(a.Limit)
		if limit <= 0 || limit > 1000 {
			limit = 1000
		}
		users, more := srv.OnlineUsers(a.Prefix, limit)
		res := wire.OnlineResult{More: more}
		for _, u := range users {
			res.Users = append(res.Users, wire.User{ID: u.ID, Name: u.Name})
		}
		return res, nil
	case wire.MethodHistory:
		var a wire.HistoryArgs
		if err := r.Args.Unmarshal(&a); err != nil {
			return nil, badArgs(r.Method, "{k, u or t: the conversation, q: keyword, b: before, c: cursor, l: limit}", err)
		}
		q := HistoryQuery{User: user.ID, With: a.Target, Keyword: a.Keyword, Before: uintOfCursor(a.Cursor), Limit: int(a.Limit)}
		if q.Before == 0 && a.Before > 0 {
			q.Before = uint64(a.Before-idEpochMs) << wire.MsgIDTimeShift // ids are time-ordered
		}
		page, err := srv.History(q)
		if err != nil {
			return nil, err
		}
		return wire.HistoryResult{Messages: page.Messages, Next: cursorOf(page.Next)}, nil
	case wire.MethodGroupCreate, wire.MethodGroupJoin, wire.MethodGroupLeave, wire.MethodGroupMembers:
		var a wire.GroupArgs
		if err := r.Args.Unmarshal(&a); err != nil || a.Name == "" {
			return nil, badArgs(r.Method, "{n: group name}", err)
		}
		switch r.Method {
		case wire.MethodGroupCreate:
			g, err := srv.CreateGroup(ctx, a.Name, user.ID)
			return wireGroup(g), err
		case wire.MethodGroupJoin:
			g, err := srv.JoinGroup(ctx, a.Name, user.ID)
			return wireGroup(g), err
		case wire.MethodGroupLeave:
			return nil, srv.LeaveGroup(ctx, a.Name, user.ID)
		default:
			members, err := srv.GroupMembers(a.Name)
			if err != nil {
				return nil, err
			}
			var res wire.UsersResult
			for _, m := range members {
				res.Users = append(res.Users, wire.User{ID: m.ID, Name: m.Name})
			}
			return res, nil
		}
	case wire.MethodGroupsMine:
		var res wire.GroupsResult
		for _, g := range srv.UserGroups(user.ID) {
			res.Groups = append(res.Groups, wireGroup(g))
		}
		return res, nil
	case wire.MethodDelayed:
		var a wire.DelayedArgs
		if err := r.Args.Unmarshal(&a); err != nil {
			return nil, badArgs(r.Method, "{c: cursor, l: limit}", err)
		}
		list, err := srv.Delayed(user.ID, int(a.Limit))
		if err != nil {
			return nil, err
		}
		var res wire.DelayedResult
		for _, d := range list {
			res.Messages = append(res.Messages, wire.Delayed{MsgID: d.MsgID, Target: d.Target, QoS: 1, Body: d.Body,
				Due: d.Due.UnixMilli(), Created: d.Created.UnixMilli()})
		}
		return res, nil
	}
	return nil, wire.CodeUnknownMethod
}

func wireGroup(g GroupInfo) wire.Group {
	return wire.Group{Name: g.Name, Owner: g.Owner, Members: uint32(g.Members), Created: g.Created.UnixMilli()}
}

// handleSubscribe adds MQTT topic filters to the user's session, each
// judged by the ACL, and answers one code per filter. Loop only.
func (c *nativeConn) handleSubscribe(f *wire.Subscribe) {
	srv := c.loop.srv
	a := srv.auth.Load()
	codes := make([]wire.Code, len(f.Filters))
	changed := false
	for i, raw := range f.Filters {
		filter := strings.Clone(raw)
		_, inner, _ := topic.ParseShare(filter)
		switch {
		case topic.ValidFilter(filter) != nil:
			codes[i] = wire.CodeBadTopic
		case a.Denied(filter) || !a.Allowed(c.id, c.sess.key.id, inner, AccessRead):
			codes[i] = wire.CodeDenied
		default:
			srv.subscribe(c.sess, filter, topic.Subscription{QoS: min(f.QoS, 1)})
			codes[i] = wire.CodeOK
			changed = true
		}
	}
	if changed {
		c.sess.save()
	}
	c.appendFrame(&wire.SubAck{ID: f.ID, Codes: codes})
}

// handleUnsubscribe removes topic filters. Loop only.
func (c *nativeConn) handleUnsubscribe(f *wire.Unsubscribe) {
	srv := c.loop.srv
	codes := make([]wire.Code, len(f.Filters))
	changed := false
	for i, filter := range f.Filters {
		if srv.unsubscribe(c.sess, filter) {
			codes[i] = wire.CodeOK
			changed = true
		} else {
			codes[i] = wire.CodeBadArgument // not subscribed
		}
	}
	if changed {
		c.sess.save()
	}
	c.appendFrame(&wire.UnsubAck{ID: f.ID, Codes: codes})
}
