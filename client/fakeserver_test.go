package client

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cimgo/cim/broker/wire"
)

// fakeServer is a small native-protocol server for the SDK's tests, on a
// real loopback listener: it logs users in (password or token "tok-<id>";
// a wrong one gets 9100 and a close), acks sends (7000 and a stored copy
// for offline users, 3005 for unknown ones, dedup by (sender, client id)),
// delivers to online users, answers pings and a few requests, and does
// what the test tells it: drop a connection, kick, push frames or garbage,
// go down (close every new connection), stop acking.
type fakeServer struct {
	t    *testing.T
	ln   net.Listener
	addr string
	wg   sync.WaitGroup

	mu struct {
		sync.Mutex
		users     map[uint64]string // id -> name; password is "pw-<name>"
		conns     map[uint64]*fakeConn
		all       map[*fakeConn]bool
		offline   map[uint64][]wire.Deliver
		dedup     map[[2]uint64]wire.SendAck
		groups    map[string][]uint64
		delayed   map[uint64][]wire.Delayed
		history   []wire.Deliver
		nextMsg   uint64
		logins    []wire.Login // every login received
		sends     []wire.Send  // every send received (detached)
		subs      []wire.Subscribe
		acked     []uint64 // deliver acks received
		pings     int
		down      bool // close new connections at once
		noAck     bool // swallow sends
		silent    bool // stop writing anything
		keepalive uint32
		maxFrame  uint32
	}
}

type fakeConn struct {
	s    *fakeServer
	nc   net.Conn
	user uint64
	wmu  sync.Mutex
	subs []string
}

func newFakeServer(t *testing.T, users ...string) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{t: t, ln: ln, addr: ln.Addr().String()}
	s.mu.users = map[uint64]string{}
	s.mu.conns = map[uint64]*fakeConn{}
	s.mu.all = map[*fakeConn]bool{}
	s.mu.offline = map[uint64][]wire.Deliver{}
	s.mu.dedup = map[[2]uint64]wire.SendAck{}
	s.mu.groups = map[string][]uint64{}
	s.mu.delayed = map[uint64][]wire.Delayed{}
	s.mu.keepalive = 30
	for i, u := range users {
		s.mu.users[uint64(i+1)] = u
	}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func (s *fakeServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.mu.all {
		c.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *fakeServer) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		down := s.mu.down
		c := &fakeConn{s: s, nc: nc}
		if !down {
			s.mu.all[c] = true
		}
		s.mu.Unlock()
		if down {
			nc.Close()
			continue
		}
		s.wg.Add(1)
		go c.serve()
	}
}

func (s *fakeServer) set(fn func(s *fakeServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s)
}

func (s *fakeServer) get(fn func(s *fakeServer)) { s.set(fn) }

func (s *fakeServer) id(name string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, n := range s.mu.users {
		if n == name {
			return id
		}
	}
	return 0
}

func (s *fakeServer) conn(user uint64) *fakeConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.conns[user]
}

// drop closes a user's connection without a word.
func (s *fakeServer) drop(user uint64) {
	if c := s.conn(user); c != nil {
		c.nc.Close()
	}
}

// push writes a frame to a user's connection.
func (s *fakeServer) push(user uint64, b wire.Body) {
	s.t.Helper()
	c := s.conn(user)
	if c == nil {
		s.t.Fatalf("user %d is not connected", user)
	}
	c.send(b)
}

// raw writes bytes to a user's connection.
func (s *fakeServer) raw(user uint64, b []byte) {
	s.t.Helper()
	c := s.conn(user)
	if c == nil {
		s.t.Fatalf("user %d is not connected", user)
	}
	c.wmu.Lock()
	c.nc.Write(b)
	c.wmu.Unlock()
}

func (c *fakeConn) send(b wire.Body) {
	c.s.mu.Lock()
	silent := c.s.mu.silent
	c.s.mu.Unlock()
	if silent {
		return
	}
	frame, err := wire.Append(nil, b)
	if err != nil {
		panic(err)
	}
	c.wmu.Lock()
	c.nc.Write(frame)
	c.wmu.Unlock()
}

func (c *fakeConn) serve() {
	s := c.s
	defer s.wg.Done()
	defer func() {
		c.nc.Close()
		s.mu.Lock()
		delete(s.mu.all, c)
		if s.mu.conns[c.user] == c {
			delete(s.mu.conns, c.user)
		}
		s.mu.Unlock()
	}()
	buf := make([]byte, 0, 4096)
	tmp := make([]byte, 4096)
	var f wire.Frame
	for {
		for {
			n, err := wire.Decode(buf, &f, 1<<20)
			if errors.Is(err, wire.ErrIncomplete) {
				break
			}
			if err != nil {
				c.send(&wire.Error{Code: wire.CodeOf(err), Text: err.Error()})
				return
			}
			f.Detach()
			buf = buf[n:]
			if !c.handle(&f) {
				return
			}
		}
		buf = append([]byte(nil), buf...)
		n, err := c.nc.Read(tmp)
		if err != nil {
			return
		}
		buf = append(buf, tmp[:n]...)
	}
}

// handle answers one frame; false closes the connection.
func (c *fakeConn) handle(f *wire.Frame) bool {
	s := c.s
	if c.user == 0 && f.Type != wire.TypeLogin {
		c.send(&wire.Error{Code: wire.CodeNotLoggedIn})
		return false
	}
	switch f.Type {
	case wire.TypeLogin:
		return c.login(&f.Login)
	case wire.TypePing:
		s.mu.Lock()
		s.mu.pings++
		s.mu.Unlock()
		c.send(&wire.Pong{})
	case wire.TypeSend:
		c.sendFrame(&f.Send)
	case wire.TypeDeliverAck:
		s.mu.Lock()
		s.mu.acked = append(s.mu.acked, f.DeliverAck.MsgID)
		s.mu.Unlock()
	case wire.TypeSubscribe:
		s.mu.Lock()
		s.mu.subs = append(s.mu.subs, f.Subscribe)
		codes := make([]wire.Code, len(f.Subscribe.Filters))
		for i, fl := range f.Subscribe.Filters {
			codes[i] = wire.CodeOK
			if strings.HasPrefix(fl, "denied") {
				codes[i] = wire.CodeDenied
			} else {
				c.subs = append(c.subs, fl)
			}
		}
		s.mu.Unlock()
		c.send(&wire.SubAck{ID: f.Subscribe.ID, Codes: codes})
	case wire.TypeUnsubscribe:
		codes := make([]wire.Code, len(f.Unsubscribe.Filters))
		for i := range codes {
			codes[i] = wire.CodeOK
		}
		c.send(&wire.UnsubAck{ID: f.Unsubscribe.ID, Codes: codes})
	case wire.TypeRequest:
		c.send(c.request(&f.Request))
	default:
		c.send(&wire.Error{Code: wire.CodeUnknownFrame})
	}
	return true
}

func (c *fakeConn) login(l *wire.Login) bool {
	s := c.s
	s.mu.Lock()
	s.mu.logins = append(s.mu.logins, *l)
	id, name := l.User, s.mu.users[l.User]
	if id == 0 {
		for uid, n := range s.mu.users {
			if n == l.Name {
				id, name = uid, n
			}
		}
	}
	ok := name != "" && (l.Name == "" || l.Name == name) &&
		(l.Password == "pw-"+name || l.Token != "" && l.Token == "tok-"+strconv.FormatUint(id, 10))
	if !ok {
		s.mu.Unlock()
		c.send(&wire.LoginAck{Code: wire.CodeAccountMismatch, Text: "bad account"})
		return false
	}
	old := s.mu.conns[id]
	c.user = id
	s.mu.conns[id] = c
	stored := s.mu.offline[id]
	delete(s.mu.offline, id)
	ack := &wire.LoginAck{Code: wire.CodeOK, User: id, Name: name, Token: "tok-" + strconv.FormatUint(id, 10),
		Time: time.Now().UnixMilli(), Node: "fake", Keepalive: s.mu.keepalive, MaxFrame: s.mu.maxFrame}
	s.mu.Unlock()
	if old != nil {
		old.send(&wire.Kick{Code: wire.CodeTakenOver, Text: "logged in elsewhere"})
		old.nc.Close()
	}
	c.send(ack)
	for i := range stored {
		stored[i].Offline = true
		c.send(&stored[i])
	}
	return true
}

func (c *fakeConn) sendFrame(m *wire.Send) {
	s := c.s
	s.mu.Lock()
	s.mu.sends = append(s.mu.sends, *m)
	noAck := s.mu.noAck
	s.mu.Unlock()
	if noAck {
		return
	}
	bodies := m.Batch
	if len(bodies) == 0 {
		bodies = [][]byte{m.Body}
	}
	for k, body := range bodies {
		id := m.ID + uint64(k)
		c.send(c.route(id, m, body))
	}
}

// route delivers one message and returns its ack.
func (c *fakeConn) route(id uint64, m *wire.Send, body []byte) *wire.SendAck {
	s := c.s
	s.mu.Lock()
	key := [2]uint64{c.user, id}
	if a, ok := s.mu.dedup[key]; ok && id != 0 {
		s.mu.Unlock()
		return &a
	}
	if len(body) == 0 {
		s.mu.Unlock()
		return &wire.SendAck{ID: id, Code: wire.CodeEmptyBody}
	}
	s.mu.nextMsg++
	d := wire.Deliver{MsgID: s.mu.nextMsg, From: c.user, FromName: s.mu.users[c.user], Target: m.Target,
		Body: body, Time: time.Now().UnixMilli(), QoS: m.QoS}
	ack := wire.SendAck{ID: id, MsgID: d.MsgID, Code: wire.CodeOK, Time: d.Time}
	var to []*fakeConn
	switch {
	case m.Delay > 0:
		s.mu.delayed[c.user] = append(s.mu.delayed[c.user], wire.Delayed{MsgID: d.MsgID, Target: m.Target, Body: body,
			Due: d.Time + int64(m.Delay), Created: d.Time})
	case m.Kind == wire.KindUser:
		if s.mu.users[m.User] == "" {
			ack = wire.SendAck{ID: id, Code: wire.CodeUnknownReceiver, Text: "no user " + strconv.FormatUint(m.User, 10)}
		} else if rc := s.mu.conns[m.User]; rc != nil {
			to = append(to, rc)
		} else {
			s.mu.offline[m.User] = append(s.mu.offline[m.User], forReceiver(d))
			ack.Code = wire.CodeOffline
		}
	case m.Kind == wire.KindAll, m.Kind == wire.KindGroup:
		for uid, rc := range s.mu.conns {
			if uid != c.user {
				to = append(to, rc)
			}
		}
	case m.Kind == wire.KindTopic:
		for rc := range s.mu.all {
			for _, f := range rc.subs {
				if f == m.Name || f == "#" {
					to = append(to, rc)
					break
				}
			}
		}
	}
	if ack.Code == wire.CodeOK || ack.Code == wire.CodeOffline {
		s.mu.history = append(s.mu.history, d)
	}
	s.mu.dedup[key] = ack
	s.mu.Unlock()
	if d.Kind == wire.KindUser {
		d = forReceiver(d)
	}
	for _, rc := range to {
		rc.send(&d)
	}
	return &ack
}

// forReceiver is a private message as the server sends it to its
// receiver: without u, which means the user logged in (wire's doc.go).
func forReceiver(d wire.Deliver) wire.Deliver {
	d.User = 0
	return d
}

func (c *fakeConn) request(r *wire.Request) *wire.Response {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &wire.Response{ID: r.ID, Code: wire.CodeOK}
	var result any
	switch r.Method {
	case wire.MethodOnline:
		var a wire.OnlineArgs
		if err := r.Args.Unmarshal(&a); err != nil {
			return &wire.Response{ID: r.ID, Code: wire.CodeBadArgument, Text: err.Error()}
		}
		var res wire.OnlineResult
		for uid := range s.mu.conns {
			if strings.HasPrefix(s.mu.users[uid], a.Prefix) {
				res.Users = append(res.Users, wire.User{ID: uid, Name: s.mu.users[uid]})
			}
		}
		result = &res
	case wire.MethodHistory:
		var a wire.HistoryArgs
		r.Args.Unmarshal(&a)
		var res wire.HistoryResult
		for i := len(s.mu.history) - 1; i >= 0; i-- {
			if d := s.mu.history[i]; strings.Contains(string(d.Body), a.Keyword) {
				res.Messages = append(res.Messages, d)
			}
		}
		result = &res
	case wire.MethodGroupCreate, wire.MethodGroupJoin:
		var a wire.GroupArgs
		r.Args.Unmarshal(&a)
		members, exists := s.mu.groups[a.Name]
		if r.Method == wire.MethodGroupCreate && exists {
			return &wire.Response{ID: r.ID, Code: wire.CodeGroupExists, Text: a.Name}
		}
		if r.Method == wire.MethodGroupJoin && !exists {
			return &wire.Response{ID: r.ID, Code: wire.CodeUnknownGroup}
		}
		s.mu.groups[a.Name] = append(members, c.user)
		result = &wire.Group{Name: a.Name, Owner: s.mu.groups[a.Name][0], Members: uint32(len(s.mu.groups[a.Name]))}
	case wire.MethodGroupMembers:
		var a wire.GroupArgs
		r.Args.Unmarshal(&a)
		var res wire.UsersResult
		for _, uid := range s.mu.groups[a.Name] {
			res.Users = append(res.Users, wire.User{ID: uid, Name: s.mu.users[uid]})
		}
		result = &res
	case wire.MethodGroupsMine:
		var res wire.GroupsResult
		for name, members := range s.mu.groups {
			for _, uid := range members {
				if uid == c.user {
					res.Groups = append(res.Groups, wire.Group{Name: name, Members: uint32(len(members))})
				}
			}
		}
		result = &res
	case wire.MethodDelayed:
		result = &wire.DelayedResult{Messages: s.mu.delayed[c.user]}
	default:
		return &wire.Response{ID: r.ID, Code: wire.CodeUnknownMethod, Text: r.Method}
	}
	raw, err := wire.MarshalRaw(result)
	if err != nil {
		return &wire.Response{ID: r.ID, Code: wire.CodeFailure, Text: err.Error()}
	}
	resp.Result = raw
	return resp
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fastOptions are options for tests: quick retries, a discard logger
// unless -v.
func fastOptions(s *fakeServer, user string) Options {
	return Options{
		UserName: user, Password: "pw-" + user, Addrs: []string{s.addr},
		ConnectTimeout: 2 * time.Second, RequestTimeout: 5 * time.Second,
		Backoff: ExponentialBackoff{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond},
	}
}

// inbox collects delivered messages.
type inbox struct {
	mu   sync.Mutex
	msgs []*Message
}

func (b *inbox) add(m *Message) {
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.mu.Unlock()
}

func (b *inbox) list() []*Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*Message(nil), b.msgs...)
}

func (b *inbox) bodies() []string {
	var out []string
	for _, m := range b.list() {
		out = append(out, string(m.Body))
	}
	return out
}

func (b *inbox) String() string { return fmt.Sprint(b.bodies()) }

// newRawServer accepts connections, reads whatever comes, answers each
// with reply once, and holds the connection open until the test ends.
func newRawServer(t *testing.T, reply []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 4096)
				nc.Read(buf)
				if reply != nil {
					nc.Write(reply)
				}
				for {
					if _, err := nc.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, nc := range conns {
			nc.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}
