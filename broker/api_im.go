package broker

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cimgo/cim/broker/topic"
	"github.com/cimgo/cim/broker/wire"
	"github.com/cimgo/cim/storage"
)

// The IM server's API, for the HTTP API and for the native protocol's
// requests: accounts, groups, presence, history, delayed messages and
// sending. Every method may block on the store (a commit, a read): call
// them from a handler goroutine, never from an event loop. Errors are the
// directory's (ErrBadName, ErrNoSuchUser, ...) or carry a wire.Code
// (wire.CodeOf) for the native protocol and cim's HTTP codes.

// commitWait commits what fill adds and waits for it. Off the loops.
func (s *Server) commitWait(ctx context.Context, fill func(*storage.Batch)) error {
	if s.store == nil {
		return ErrNoStore
	}
	b := s.store.NewBatch()
	fill(b)
	ch := make(chan error, 1)
	if err := s.store.Commit(b, func(err error) { ch <- err }); err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Register registers a user by name, or finds it: the same name always has
// the same id. A password (optional) protects the account; registering an
// existing name again leaves its password as it was. created reports a new
// account.
func (s *Server) Register(ctx context.Context, name, password string) (acct Account, created bool, err error) {
	if err := checkName("user name", name); err != nil {
		return Account{}, false, err
	}
	if a, ok := s.im.dir.accountByName(name); ok {
		return *a, false, nil
	}
	hash, err := hashPassword(password)
	if err != nil {
		return Account{}, false, err
	}
	if cn := s.clusterNode(); cn != nil {
		return cn.register(ctx, name, hash) // cluster hook (cluster_sync.go): the registrar decides
	}
	var r *storage.AccountResult
	if err := s.commitWait(ctx, func(b *storage.Batch) { r = b.Register(name, hash) }); err != nil {
		return Account{}, false, err
	}
	if r.Err != nil {
		return Account{}, false, r.Err
	}
	s.im.dir.mu.Lock()
	a := s.im.dir.putLocked(&r.Account)
	s.im.dir.mu.Unlock()
	s.imSession(a.ID) // its inbox exists from now on
	return *a, r.New, nil
}

// LookupAccount finds an account by id (if not 0) or name.
func (s *Server) LookupAccount(id uint64, name string) (Account, bool) {
	var a *Account
	var ok bool
	if id != 0 {
		a, ok = s.im.dir.account(id)
		if ok && name != "" && a.Name != name {
			return Account{}, false
		}
	} else {
		a, ok = s.im.dir.accountByName(name)
	}
	if !ok {
		return Account{}, false
	}
	return *a, true
}

// Online reports whether user has a connection to this node (in a
// cluster: to any node).
func (s *Server) Online(user uint64) bool { return s.userOnline(user) }

// OnlineUsers lists users online on this node (in a cluster: on any node)
// whose name starts with prefix (Unicode case folding), by name, at most
// limit (0: all).
func (s *Server) OnlineUsers(prefix string, limit int) (users []Account, more bool) {
	var list []*Account
	if cn := s.clusterNode(); cn != nil {
		list, more = cn.onlineUsers(prefix, limit) // cluster hook (cluster_sync.go)
	} else {
		list, more = s.im.dir.onlineUsers(prefix, limit)
	}
	for _, a := range list {
		users = append(users, *a)
	}
	return users, more
}

// GroupInfo describes a named group.
type GroupInfo struct {
	Name    string
	Owner   uint64
	Members int
	Created time.Time
}

func (s *Server) groupInfo(name string) (GroupInfo, bool) {
	d := s.im.dir
	d.mu.RLock()
	defer d.mu.RUnlock()
	g := d.groups[name]
	if g == nil {
		return GroupInfo{}, false
	}
	return GroupInfo{Name: g.Name, Owner: g.Owner, Members: len(g.members), Created: time.UnixMilli(g.Created)}, true
}

// CreateGroup creates a group owned by owner, who becomes its first member;
// an existing name is refused (ErrGroupExists).
func (s *Server) CreateGroup(ctx context.Context, name string, owner uint64) (GroupInfo, error) {
	if err := checkName("group name", name); err != nil {
		return GroupInfo{}, err
	}
	if _, ok := s.im.dir.account(owner); !ok {
		return GroupInfo{}, ErrNoSuchUser
	}
	if cn := s.clusterNode(); cn != nil {
		return cn.createGroup(ctx, name, owner) // cluster hook (cluster_sync.go): the registrar decides
	}
	var created, joined *storage.GroupResult
	if err := s.commitWait(ctx, func(b *storage.Batch) {
		created = b.CreateGroup(name, owner)
		joined = b.JoinGroup(name, owner)
	}); err != nil {
		return GroupInfo{}, err
	}
	if created.Err != nil {
		return GroupInfo{}, created.Err
	}
	if !created.Changed {
		return GroupInfo{}, fmt.Errorf("%w: %s", ErrGroupExists, name)
	}
	d := s.im.dir
	d.mu.Lock()
	d.groups[name] = &group{Group: created.Group, members: map[uint64]bool{}}
	if joined.Err == nil {
		d.joinLocked(name, owner)
	}
	d.mu.Unlock()
	s.groupSubscription(owner, name, true)
	g, _ := s.groupInfo(name)
	return g, nil
}

// JoinGroup makes user a member of an existing group.
func (s *Server) JoinGroup(ctx context.Context, name string, user uint64) (GroupInfo, error) {
	if _, ok := s.im.dir.account(user); !ok {
		return GroupInfo{}, ErrNoSuchUser
	}
	if cn := s.clusterNode(); cn != nil {
		return cn.joinGroup(ctx, name, user) // cluster hook (cluster_sync.go): the registrar decides
	}
	if _, ok := s.groupInfo(name); !ok {
		return GroupInfo{}, fmt.Errorf("%w: %s", ErrNoSuchGroup, name)
	}
	var r *storage.GroupResult
	if err := s.commitWait(ctx, func(b *storage.Batch) { r = b.JoinGroup(name, user) }); err != nil {
		return GroupInfo{}, err
	}
	if r.Err != nil {
		return GroupInfo{}, fmt.Errorf("%w: %s", ErrNoSuchGroup, name)
	}
	s.im.dir.mu.Lock()
	s.im.dir.joinLocked(name, user)
	s.im.dir.mu.Unlock()
	s.groupSubscription(user, name, true)
	g, _ := s.groupInfo(name)
	return g, nil
}

// LeaveGroup removes user from a group (ErrNotMember if not in it).
func (s *Server) LeaveGroup(ctx context.Context, name string, user uint64) error {
	if cn := s.clusterNode(); cn != nil {
		return cn.leaveGroup(ctx, name, user) // cluster hook (cluster_sync.go): the registrar decides
	}
	member, exists := s.im.dir.isMember(name, user)
	switch {
	case !exists:
		return fmt.Errorf("%w: %s", ErrNoSuchGroup, name)
	case !member:
		return fmt.Errorf("%w: %s", ErrNotMember, name)
	}
	if err := s.commitWait(ctx, func(b *storage.Batch) { b.LeaveGroup(name, user) }); err != nil {
		return err
	}
	d := s.im.dir
	d.mu.Lock()
	if g := d.groups[name]; g != nil {
		delete(g.members, user)
	}
	delete(d.mine[user], name)
	d.mu.Unlock()
	s.groupSubscription(user, name, false)
	return nil
}

// groupSubscription subscribes (or unsubscribes) the user's session, if it
// has one, to the group's topic.
func (s *Server) groupSubscription(user uint64, name string, join bool) {
	var ss *session
	if s.clusterNode() != nil {
		// Clustered: every node applies this; the one holding the session
		// (made at registration, or by a login) subscribes it.
		if ss = s.sessions.lookup(nativeKey(user)); ss == nil {
			return
		}
	} else {
		ss = s.imSession(user)
	}
	if join {
		s.subscribe(ss, groupTopic(name), topic.Subscription{QoS: 1, NoLocal: true})
	} else {
		s.unsubscribe(ss, groupTopic(name))
	}
	ss.save()
}

// GroupMembers lists a group's members, by id.
func (s *Server) GroupMembers(name string) ([]Account, error) {
	d := s.im.dir
	d.mu.RLock()
	defer d.mu.RUnlock()
	g := d.groups[name]
	if g == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoSuchGroup, name)
	}
	out := make([]Account, 0, len(g.members))
	for id := range g.members {
		if a := d.byID[id]; a != nil {
			out = append(out, *a)
		}
	}
	slices.SortFunc(out, func(a, b Account) int { return cmpUint(a.ID, b.ID) })
	return out, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// UserGroups lists the groups user is a member of, by name.
func (s *Server) UserGroups(user uint64) []GroupInfo {
	var out []GroupInfo
	for _, name := range s.im.dir.groupsOf(user) {
		if g, ok := s.groupInfo(name); ok {
			out = append(out, g)
		}
	}
	return out
}

// HistoryQuery asks for a page of history seen by User, newest first.
type HistoryQuery struct {
	User    uint64
	With    wire.Target // a user or a group; Kind 0: every conversation of User (with Keyword)
	Keyword string      // only messages containing it (Unicode case folding)
	Before  uint64      // a message id (the Next of the previous page); 0: from the newest
	Limit   int         // 0: 20
}

// HistoryPage is a page of history; Next continues it (0: the end).
type HistoryPage struct {
	Messages []wire.Deliver
	Next     uint64
}

// History reads a page of the conversations User may read. It reads the
// store (off the loops).
func (s *Server) History(q HistoryQuery) (HistoryPage, error) {
	if s.store == nil {
		return HistoryPage{}, ErrNoStore
	}
	var convs []string
	switch q.With.Kind {
	case wire.KindUser:
		convs = []string{privateConversation(q.User, q.With.User)}
	case wire.KindGroup:
		if member, _ := s.im.dir.isMember(q.With.Name, q.User); !member {
			return HistoryPage{}, fmt.Errorf("%w: %s", ErrNotMember, q.With.Name)
		}
		convs = []string{groupConversation(q.With.Name)}
	case wire.KindAll:
		convs = []string{allConversation}
	case 0:
		if q.Keyword == "" {
			return HistoryPage{}, fmt.Errorf("%w: a keyword is needed to search every conversation", wire.CodeBadArgument)
		}
		mine, err := s.store.UserConversations(q.User)
		if err != nil {
			return HistoryPage{}, err
		}
		convs = append(mine, allConversation)
		for _, g := range s.im.dir.groupsOf(q.User) {
			convs = append(convs, groupConversation(g))
		}
		if len(convs) > storage.MaxSearchConversations {
			convs = convs[:storage.MaxSearchConversations]
		}
	default:
		return HistoryPage{}, fmt.Errorf("%w: history of a topic is not kept", wire.CodeBadArgument)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 20
	}
	limit = min(limit, storage.MaxSearchLimit)
	res, err := s.store.SearchHistory(storage.SearchQuery{Conversations: convs, Keyword: q.Keyword, Before: q.Before,
		Limit: limit, MaxScan: 200_000})
	if err != nil {
		return HistoryPage{}, err
	}
	page := HistoryPage{Next: res.Next}
	for _, h := range res.Hits {
		m := loadMessage(h.Message)
		page.Messages = append(page.Messages, wire.Deliver{MsgID: m.ID, From: m.Sender, FromName: m.SenderName,
			Target: targetOf(m.Topic), Body: m.Payload, Time: idTime(m.ID).UnixMilli()})
	}
	return page, nil
}

// DelayedInfo is a delayed message not due yet.
type DelayedInfo struct {
	MsgID   uint64
	Target  wire.Target
	Body    []byte
	Due     time.Time
	Created time.Time
}

// Delayed lists user's delayed messages not yet due, soonest first, at
// most limit (0: 100). It scans the delayed messages of the whole node.
func (s *Server) Delayed(user uint64, limit int) ([]DelayedInfo, error) {
	if s.store == nil {
		return nil, ErrNoStore
	}
	if limit <= 0 {
		limit = 100
	}
	var out []DelayedInfo
	var after storage.Due
	for len(out) < limit {
		n, err := s.store.ReadDue(1<<62, after, 1024, func(d storage.Due, m *storage.Message) error {
			after = d
			if m.SenderID == user && len(out) < limit {
				out = append(out, DelayedInfo{MsgID: m.ID, Target: targetOf(m.Topic), Body: m.Payload,
					Due: time.UnixMilli(d.At), Created: time.UnixMilli(m.Created)})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if n < 1024 {
			break
		}
	}
	return out, nil
}

// SendOptions are the options of a message sent through the API.
type SendOptions struct {
	QoS      byte          // 1 (the default of the HTTP API): stored before the result returns
	Delay    time.Duration // route it later
	ClientID uint64        // the sender's id for the message (dedup); 0: none
}

// SendResult is the outcome of one message: its server id and code
// (wire.CodeOK; wire.CodeOffline: stored for an offline receiver; or a
// refusal).
type SendResult struct {
	MsgID uint64
	Code  wire.Code
	Text  string
}

// Send sends messages from user to a target as the native protocol would:
// the same routing, storage, ids, offline handling and MQTT visibility.
// Several bodies go in order. It returns once each is accepted (QoS 1:
// stored).
func (s *Server) Send(ctx context.Context, from uint64, to wire.Target, bodies [][]byte, o SendOptions) ([]SendResult, error) {
	acct, ok := s.im.dir.account(from)
	if !ok {
		return nil, fmt.Errorf("%w: %d", ErrNoSuchUser, from)
	}
	id := acct.ident
	sess := s.sessions.lookup(nativeKey(from))
	results := make([]SendResult, len(bodies))
	ch := make(chan struct{}, len(bodies))
	reqs := make([]*sendReq, len(bodies))
	for i, b := range bodies {
		reqs[i] = &sendReq{from: acct, sess: sess, id: id, target: to, body: b, qos: min(o.QoS, 1), delay: o.Delay} // (imSend copies b)
		if o.ClientID != 0 {
			reqs[i].cmid = o.ClientID + uint64(i)
		}
	}
	var known []sendResult
	if o.QoS > 0 && s.needsLookup(from, o.ClientID) {
		known = s.lookupSends(reqs) // maybe a resend
	}
	for i, r := range reqs {
		if known != nil && known[i].msgID != 0 {
			results[i] = SendResult{MsgID: known[i].msgID, Code: known[i].code}
			ch <- struct{}{}
			continue
		}
		s.imSend(r, sendFunc(func(_ uint64, res sendResult) {
			results[i] = SendResult{MsgID: res.msgID, Code: res.code, Text: res.text}
			ch <- struct{}{}
		}))
	}
	for range bodies {
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return results, nil
}

// TargetOf parses the targets of the HTTP API: "user:<id>", "group:<name>",
// "all" or "topic:<topic>".
func TargetOf(s string) (wire.Target, error) {
	kind, rest, _ := strings.Cut(s, ":")
	switch kind {
	case "user":
		id, err := strconv.ParseUint(rest, 10, 64)
		if err != nil {
			return wire.Target{}, fmt.Errorf("%w: target %q: user id", wire.CodeBadArgument, s)
		}
		return wire.ToUser(id), nil
	case "group":
		return wire.ToGroup(rest), nil
	case "topic":
		return wire.ToTopic(rest), nil
	case "all":
		return wire.ToAll(), nil
	}
	return wire.Target{}, fmt.Errorf("%w: target %q: want user:<id>, group:<name>, topic:<topic> or all", wire.CodeBadArgument, s)
}

// cursorOf and uintOfCursor carry a message id in the protocol's opaque
// cursors.
func cursorOf(id uint64) []byte {
	if id == 0 {
		return nil
	}
	return binary.BigEndian.AppendUint64(nil, id)
}

func uintOfCursor(c []byte) uint64 {
	if len(c) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(c)
}
