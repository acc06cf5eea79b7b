package broker

// End-to-end tests of the native protocol with the Go SDK (client/), on
// loopback: cim's own integration scenarios, and what cim could not do.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/cimgo/cim/storage"
	"github.com/cockroachdb/pebble/vfs"

	"github.com/cimgo/cim/broker/wire"
	"github.com/cimgo/cim/client"
	"github.com/eclipse/paho.golang/paho"
)

// startIM runs a broker with a store and the native listener.
func startIM(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Store == nil {
		opts.Store = openTestStore(t)
	}
	opts.NativeAddr = "127.0.0.1:0"
	return startServer(t, opts)
}

// register makes an account or fails the test.
func register(t testing.TB, s *Server, name, password string) Account {
	t.Helper()
	a, _, err := s.Register(context.Background(), name, password)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// sdkUser is a connected SDK client whose deliveries land in msgs.
type sdkUser struct {
	t    testing.TB
	c    *client.Client
	msgs chan *client.Message
}

func dialUser(t testing.TB, s *Server, o client.Options) (*sdkUser, error) {
	t.Helper()
	u := &sdkUser{t: t, msgs: make(chan *client.Message, 10000)}
	o.Addrs = []string{s.ListenerAddr(ProtocolNative).String()}
	o.OnMessage = func(m *client.Message) { u.msgs <- m }
	if o.RetryLimit == 0 {
		o.RetryLimit = 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	c, err := client.Dial(ctx, o)
	if err != nil {
		return nil, err
	}
	u.c = c
	t.Cleanup(func() { c.Close() })
	return u, nil
}

func loginUser(t testing.TB, s *Server, name, password string) *sdkUser {
	t.Helper()
	u, err := dialUser(t, s, client.Options{UserName: name, Password: password})
	if err != nil {
		t.Fatalf("login %s: %v", name, err)
	}
	return u
}

func (u *sdkUser) next() *client.Message {
	u.t.Helper()
	select {
	case m := <-u.msgs:
		return m
	case <-time.After(e2eWait):
		u.t.Fatal("native: no message received")
		return nil
	}
}

func (u *sdkUser) expect(from, body string) *client.Message {
	u.t.Helper()
	m := u.next()
	if m.FromName != from || string(m.Body) != body {
		u.t.Fatalf("got %q from %q, want %q from %q", m.Body, m.FromName, body, from)
	}
	return m
}

func (u *sdkUser) none() {
	u.t.Helper()
	select {
	case m := <-u.msgs:
		u.t.Fatalf("unexpected message %q from %q", m.Body, m.FromName)
	case <-time.After(quiet):
	}
}

func (u *sdkUser) send(to client.Target, body string) client.Ack {
	u.t.Helper()
	ctx, cancel := contextWithTimeout()
	defer cancel()
	ack, err := u.c.Send(ctx, to, []byte(body))
	if err != nil && !client.Accepted(err) {
		u.t.Fatalf("send %q: %v", body, err)
	}
	return ack
}

// cim's group chat: a line goes to every online user but the sender, with
// the sender's id and name.
func TestNativeEveryone(t *testing.T) {
	s := startIM(t, Options{})
	alice, bob, carol := register(t, s, "alice", ""), register(t, s, "bob", ""), register(t, s, "carol", "")
	a, b, c := loginUser(t, s, "alice", ""), loginUser(t, s, "bob", ""), loginUser(t, s, "carol", "")
	a.send(client.Everyone(), "hello all")
	for _, u := range []*sdkUser{b, c} {
		m := u.expect("alice", "hello all")
		if m.From != alice.ID || m.To.Kind != wire.KindAll || m.ID == 0 {
			t.Fatalf("deliver %+v", m)
		}
	}
	a.none() // the sender is excluded
	_, _ = bob, carol
}

// Private chat among three: only the receiver gets it; a batch arrives in
// order; each message has its own server id.
func TestNativePrivateAndBatch(t *testing.T) {
	s := startIM(t, Options{})
	register(t, s, "alice", "")
	bob := register(t, s, "bob", "")
	register(t, s, "carol", "")
	a, b, c := loginUser(t, s, "alice", ""), loginUser(t, s, "bob", ""), loginUser(t, s, "carol", "")
	ack := a.send(client.User(bob.ID), "psst")
	if ack.Code != wire.CodeOK || ack.MsgID == 0 {
		t.Fatalf("ack %+v", ack)
	}
	m := b.expect("alice", "psst")
	if m.ID != ack.MsgID || m.To.Kind != wire.KindUser || m.To.User != bob.ID {
		t.Fatalf("deliver %+v, ack %+v", m, ack)
	}
	ctx, cancel := contextWithTimeout()
	defer cancel()
	var batch [][]byte
	for i := range 20 {
		batch = append(batch, []byte(fmt.Sprint(i)))
	}
	acks, err := a.c.Publish(ctx, client.Publish{To: client.User(bob.ID), Batch: batch})
	if err != nil || len(acks) != 20 {
		t.Fatalf("batch: %v %d acks", err, len(acks))
	}
	ids := map[uint64]bool{}
	for i := range 20 {
		m := b.expect("alice", fmt.Sprint(i))
		ids[m.ID] = true
	}
	if len(ids) != 20 {
		t.Fatal("batch messages share server ids")
	}
	c.none()
	a.none()
}

// Offline, then online: the sender hears 7000, the receiver gets every
// message at its next login, each with its own sender, time and id, marked
// offline; and again after a later logout (every login, not only once).
func TestNativeOfflineMessages(t *testing.T) {
	s := startIM(t, Options{})
	register(t, s, "alice", "")
	register(t, s, "carol", "")
	bob := register(t, s, "bob", "")
	b := loginUser(t, s, "bob", "")
	b.c.Close() // bob has logged in once, and goes away
	waitE2E(t, "bob offline", func() bool { return !s.Online(bob.ID) })
	a, c := loginUser(t, s, "alice", ""), loginUser(t, s, "carol", "")
	if ack := a.send(client.User(bob.ID), "from alice"); ack.Code != wire.CodeOffline {
		t.Fatalf("to an offline user: code %d, want 7000", ack.Code)
	}
	c.send(client.User(bob.ID), "from carol")
	b = loginUser(t, s, "bob", "")
	m1, m2 := b.next(), b.next()
	if m1.FromName != "alice" || m2.FromName != "carol" || !m1.Offline || !m2.Offline || m1.ID == m2.ID {
		t.Fatalf("offline messages %+v %+v", m1, m2)
	}
	b.c.Close()
	waitE2E(t, "bob offline again", func() bool { return !s.Online(bob.ID) })
	a.send(client.User(bob.ID), "second time")
	b = loginUser(t, s, "bob", "")
	if m := b.expect("alice", "second time"); !m.Offline {
		t.Fatal("not marked offline")
	}
	b.none() // the first two were acknowledged: not again
}

// An unknown receiver is refused with 3005; an empty body with 3006; a
// group one is not in with 3013.
func TestNativeRefusals(t *testing.T) {
	s := startIM(t, Options{})
	register(t, s, "alice", "")
	owner := register(t, s, "owner", "")
	a := loginUser(t, s, "alice", "")
	ctx, cancel := contextWithTimeout()
	defer cancel()
	if _, err := a.c.Send(ctx, client.User(9999), []byte("x")); wire.CodeOf(err) != wire.CodeUnknownReceiver {
		t.Fatalf("unknown receiver: %v", err)
	}
	if _, err := a.c.Send(ctx, client.Everyone(), nil); wire.CodeOf(err) != wire.CodeEmptyBody {
		t.Fatalf("empty body: %v", err)
	}
	if _, err := s.CreateGroup(ctx, "closed", owner.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.Send(ctx, client.Group("closed"), []byte("x")); wire.CodeOf(err) != wire.CodeNotMember {
		t.Fatalf("not a member: %v", err)
	}
	if _, err := a.c.Send(ctx, client.Group("nowhere"), []byte("x")); wire.CodeOf(err) != wire.CodeUnknownGroup {
		t.Fatalf("no group: %v", err)
	}
}

// Passwords and tokens: a wrong password gets 9100 and no retry; the token
// of a login logs in again without the password.
func TestNativeLogin(t *testing.T) {
	s := startIM(t, Options{})
	register(t, s, "dave", "s3cret")
	if _, err := dialUser(t, s, client.Options{UserName: "dave", Password: "nope"}); !errors.Is(err, client.ErrAccountMismatch) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := dialUser(t, s, client.Options{UserName: "nobody"}); !errors.Is(err, client.ErrAccountMismatch) {
		t.Fatalf("unknown user: %v", err)
	}
	d := loginUser(t, s, "dave", "s3cret")
	tok := d.c.Info().Token
	if tok == "" {
		t.Fatal("no token in the login ack")
	}
	d.c.Close()
	if _, err := dialUser(t, s, client.Options{UserName: "dave", Token: tok}); err != nil {
		t.Fatalf("login with the token: %v", err)
	}
}

// A second login of the same user takes over: the first connection is
// told why (5003) and does not reconnect.
func TestNativeTakeover(t *testing.T) {
	s := startIM(t, Options{})
	register(t, s, "erin", "")
	first := loginUser(t, s, "erin", "")
	loginUser(t, s, "erin", "")
	select {
	case <-first.c.Done():
	case <-time.After(e2eWait):
		t.Fatal("first connection not closed")
	}
	if err := first.c.Err(); !errors.Is(err, client.ErrTakenOver) {
		t.Fatalf("first connection ended with %v, want taken over", err)
	}
}

// Named groups: create, join, members, my groups, a message to the group
// reaching the other members (not the sender), leave.
func TestNativeGroups(t *testing.T) {
	s := startIM(t, Options{})
	for _, n := range []string{"ann", "ben", "cat"} {
		register(t, s, n, "")
	}
	ann, ben, cat := loginUser(t, s, "ann", ""), loginUser(t, s, "ben", ""), loginUser(t, s, "cat", "")
	ctx, cancel := contextWithTimeout()
	defer cancel()
	if _, err := ann.c.CreateGroup(ctx, "crew"); err != nil {
		t.Fatal(err)
	}
	if _, err := ann.c.CreateGroup(ctx, "crew"); wire.CodeOf(err) != wire.CodeGroupExists {
		t.Fatalf("create twice: %v", err)
	}
	if _, err := ben.c.JoinGroup(ctx, "crew"); err != nil {
		t.Fatal(err)
	}
	members, err := cat.c.GroupMembers(ctx, "crew")
	if err != nil || len(members) != 2 {
		t.Fatalf("members %v %v", members, err)
	}
	mine, err := ben.c.MyGroups(ctx)
	if err != nil || len(mine) != 1 || mine[0].Name != "crew" {
		t.Fatalf("my groups %v %v", mine, err)
	}
	ann.send(client.Group("crew"), "hi crew")
	if m := ben.expect("ann", "hi crew"); m.To.Kind != wire.KindGroup || m.To.Name != "crew" {
		t.Fatalf("deliver %+v", m)
	}
	ann.none()
	cat.none()
	if err := ben.c.LeaveGroup(ctx, "crew"); err != nil {
		t.Fatal(err)
	}
	ann.send(client.Group("crew"), "after ben left")
	ben.none()
}

// Presence: online users, with a Unicode-aware prefix.
func TestNativeOnlineUsers(t *testing.T) {
	s := startIM(t, Options{})
	for _, n := range []string{"Émile", "émilie", "Emma", "zoë"} {
		register(t, s, n, "")
		loginUser(t, s, n, "")
	}
	u := loginUser(t, s, "zoë", "") // (takes zoë's own session over: still one zoë online)
	ctx, cancel := contextWithTimeout()
	defer cancel()
	all, err := u.c.OnlineUsers(ctx, "", 0)
	if err != nil || len(all) != 4 {
		t.Fatalf("online %v %v", all, err)
	}
	some, err := u.c.OnlineUsers(ctx, "ÉMI", 0)
	if err != nil || len(some) != 2 || some[0].Name != "Émile" || some[1].Name != "émilie" {
		t.Fatalf("prefix ÉMI: %v %v", some, err)
	}
}

// History: a conversation paged newest first, and a keyword search across
// the user's conversations with Unicode case folding.
func TestNativeHistory(t *testing.T) {
	s := startIM(t, Options{})
	register(t, s, "ida", "")
	jon := register(t, s, "jon", "")
	i, j := loginUser(t, s, "ida", ""), loginUser(t, s, "jon", "")
	for k := range 5 {
		i.send(client.User(jon.ID), fmt.Sprintf("message %d", k))
		j.next()
	}
	i.send(client.User(jon.ID), "Straße closed")
	j.next()
	ctx, cancel := contextWithTimeout()
	defer cancel()
	page, err := j.c.History(ctx, client.HistoryQuery{With: client.User(i.c.Info().UserID), Limit: 3})
	if err != nil || len(page.Messages) != 3 || string(page.Messages[0].Body) != "Straße closed" {
		t.Fatalf("page %+v %v", page, err)
	}
	older, err := j.c.History(ctx, client.HistoryQuery{With: client.User(i.c.Info().UserID), Cursor: page.Next, Limit: 10})
	if err != nil || len(older.Messages) != 3 || string(older.Messages[2].Body) != "message 0" {
		t.Fatalf("older page %+v %v", older, err)
	}
	hits, err := j.c.Search(ctx, "STRASSE", 10)
	if err != nil || len(hits) != 1 || hits[0].FromName != "ida" {
		t.Fatalf("search: %v %v", hits, err)
	}
}

// MQTT and native share the topic space: an MQTT device publishing to
// cim/u/<id> reaches that user; a native message reaches MQTT subscribers,
// MQTT 5 ones with the sender in user properties.
func TestNativeMQTTInterop(t *testing.T) {
	s := startIM(t, Options{})
	kim := register(t, s, "kim", "")
	k := loginUser(t, s, "kim", "")
	dev := connectV5(t, s, "sensor-1")
	dev.publish(inboxTopic(kim.ID), "21.5C", 1, false)
	if m := k.expect("sensor-1", "21.5C"); m.From != 0 || m.ID == 0 || m.QoS != 1 {
		t.Fatalf("from an MQTT device: %+v", m)
	}
	waitE2E(t, "the MQTT message acknowledged by the native receiver", func() bool {
		ss := s.sessions.lookup(nativeKey(kim.ID))
		ss.mu.Lock()
		defer ss.mu.Unlock()
		return len(ss.inflight) == 0
	})
	// Two MQTT 5 watchers share one encoding of the message (encode.go),
	// which carries the sender properties; an MQTT 3.1.1 one has none.
	watchers := []*v5Client{connectV5(t, s, "watcher"), connectV5(t, s, "watcher2")}
	old := connectV3(t, s, "old-watcher", true)
	for _, w := range watchers {
		w.subscribe("cim/all", 0)
		w.subscribe("dev/+", 0)
	}
	old.subscribe("dev/+", 0)
	ack := k.send(client.Everyone(), "to all, MQTT included")
	checkProps := func(p *paho.Publish, msgID uint64) {
		t.Helper()
		props := map[string]string{}
		for _, up := range p.Properties.User {
			props[up.Key] = up.Value
		}
		if len(p.Properties.User) != 3 || props["cim-sender"] != "kim" || props["cim-sender-id"] != fmt.Sprint(kim.ID) ||
			props["cim-msg-id"] == "" || msgID != 0 && props["cim-msg-id"] != fmt.Sprint(msgID) {
			t.Fatalf("user properties %v (message %d)", p.Properties.User, msgID)
		}
	}
	for _, w := range watchers {
		checkProps(w.expect("cim/all", "to all, MQTT included"), ack.MsgID)
	}
	// A QoS 0 send to a topic is routed from the loop's scratch message:
	// every receiver still gets its own bytes.
	ctx, cancel := contextWithTimeout()
	defer cancel()
	acks, err := k.c.Publish(ctx, client.Publish{To: client.Topic("dev/1"), Batch: [][]byte{[]byte("on"), []byte("off")}, AtMostOnce: true})
	if err != nil || len(acks) != 2 {
		t.Fatalf("QoS 0 publish: %v %v", acks, err)
	}
	for _, w := range watchers {
		checkProps(w.expect("dev/1", "on"), acks[0].MsgID)
		checkProps(w.expect("dev/1", "off"), acks[1].MsgID)
	}
	old.expect("dev/1", "on")
	old.expect("dev/1", "off")
}

// A delayed QoS 0 send is answered once, at once (the store's answer
// later is not a second send-ack).
func TestNativeDelayedQoS0OneAck(t *testing.T) {
	s := startIM(t, Options{})
	register(t, s, "una", "")
	vic := register(t, s, "vic", "")
	r := dialNative(t, s)
	r.login("una")
	r.send(&wire.Send{ID: 7, Target: wire.ToUser(vic.ID), Body: []byte("soon"), Delay: 50})
	if a := r.expect(wire.TypeSendAck).SendAck; a.ID != 7 || a.Code != wire.CodeOK || a.MsgID == 0 {
		t.Fatalf("send-ack %+v", a)
	}
	if f, err := r.read(300 * time.Millisecond); err == nil {
		t.Fatalf("a second frame: %s %+v", f.Type, f.Body())
	}
}

// Delayed messages are sent by the server at their time, also when the
// sender has gone.
func TestNativeDelayed(t *testing.T) {
	s := startIM(t, Options{})
	register(t, s, "lea", "")
	max := register(t, s, "max", "")
	l, m := loginUser(t, s, "lea", ""), loginUser(t, s, "max", "")
	ctx, cancel := contextWithTimeout()
	defer cancel()
	start := time.Now()
	if _, err := l.c.Publish(ctx, client.Publish{To: client.User(max.ID), Body: []byte("later"), Delay: 1200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	pending, _, err := l.c.DelayedMessages(ctx, nil, 10)
	if err != nil || len(pending) != 1 {
		t.Fatalf("pending %v %v", pending, err)
	}
	l.c.Close() // the sender leaves; the message does not need it
	m.expect("lea", "later")
	within(t, "delayed message", time.Since(start), time.Second, 5*time.Second)
}

// MQTT clients schedule with $delayed/<seconds>/<topic>.
func TestMQTTDelayedTopic(t *testing.T) {
	s := startIM(t, Options{})
	sub := connectV5(t, s, "delayed-sub")
	sub.subscribe("alarms/#", 1)
	pub := connectV5(t, s, "delayed-pub")
	start := time.Now()
	pub.publish("$delayed/1/alarms/wake", "ring", 1, false)
	sub.none()
	sub.expect("alarms/wake", "ring")
	within(t, "$delayed", time.Since(start), 900*time.Millisecond, 5*time.Second)
}

// A restart: the SDK reconnects by itself to the server that comes back on
// the same address, a delayed message due while the server was down is
// delivered after it, and a message sent while the client was away waits
// for it.
func TestNativeAcrossRestart(t *testing.T) {
	fs := vfs.NewMem()
	addr := freePort(t)
	start := func() (*Server, func()) {
		db, err := storage.Open("data", storage.Options{FS: fs, SweepInterval: -1, Logger: startServerLogger()})
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(Options{MQTTAddr: "127.0.0.1:0", NativeAddr: addr, Store: db, SysInterval: -1, Logger: startServerLogger(),
			TokenKey: []byte("0123456789abcdef0123456789abcdef")})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		return s, func() {
			ctx, cancel := contextWithTimeout()
			defer cancel()
			_ = s.Shutdown(ctx)
			_ = db.Close()
		}
	}
	s, stop := start()
	register(t, s, "nina", "pw")
	owen := register(t, s, "owen", "pw")
	states := make(chan client.State, 100)
	o, err := dialUser(t, s, client.Options{UserName: "owen", Password: "pw", RetryLimit: -1,
		Backoff:       client.ExponentialBackoff{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond},
		OnStateChange: func(_, to client.State) { states <- to }})
	if err != nil {
		t.Fatal(err)
	}
	n := loginUser(t, s, "nina", "pw")
	ctx, cancel := contextWithTimeout()
	defer cancel()
	if _, err := n.c.Publish(ctx, client.Publish{To: client.User(owen.ID), Body: []byte("wake up"), Delay: 1500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	n.c.Close()
	stop() // down before the delayed message is due
	waitFor(t, "the SDK reconnecting", func() bool {
		select {
		case st := <-states:
			return st == client.Reconnecting
		default:
			return false
		}
	})
	time.Sleep(1600 * time.Millisecond) // let the message fall due while the server is down (not synchronization)
	s, stop = start()
	defer stop()
	o.expect("nina", "wake up")
	if !s.Online(owen.ID) {
		t.Fatal("owen not back online")
	}
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// A QoS 1 message sent again after a restart (the SDK resends what it was
// not acknowledged, with the same client message id) is known: the same
// server id comes back and the receiver gets one copy.
func TestNativeDedupAcrossRestart(t *testing.T) {
	fs := vfs.NewMem()
	start := func() (*Server, func()) {
		db, err := storage.Open("data", storage.Options{FS: fs, SweepInterval: -1, Logger: startServerLogger()})
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(Options{MQTTAddr: "127.0.0.1:0", NativeAddr: "127.0.0.1:0", Store: db, SysInterval: -1, Logger: startServerLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		return s, func() {
			ctx, cancel := contextWithTimeout()
			defer cancel()
			_ = s.Shutdown(ctx)
			_ = db.Close()
		}
	}
	s, stop := start()
	register(t, s, "pia", "")
	quinn := register(t, s, "quinn", "")
	send := func(s *Server) wire.SendAck {
		r := dialNative(t, s)
		r.login("pia")
		r.send(&wire.Send{ID: 77, Target: wire.ToUser(quinn.ID), QoS: 1, Body: []byte("only once")})
		return r.expect(wire.TypeSendAck).SendAck
	}
	first := send(s)
	stop()
	s, stop = start()
	defer stop()
	again := send(s)
	if again.MsgID != first.MsgID {
		t.Fatalf("resend after a restart got id %d, the first %d", again.MsgID, first.MsgID)
	}
	q := loginUser(t, s, "quinn", "")
	q.expect("pia", "only once")
	q.none()
}

// A resend while the node runs (a reconnect's) is answered with the first
// copy's id and not delivered again; a new message numbered below the
// sender's highest (ids need not arrive in order) is still delivered.
func TestNativeDedupResend(t *testing.T) {
	s := startIM(t, Options{})
	register(t, s, "rhea", "")
	sol := register(t, s, "sol", "")
	q := loginUser(t, s, "sol", "")
	r := dialNative(t, s)
	r.login("rhea")
	send := func(id uint64, body string) wire.SendAck {
		t.Helper()
		r.send(&wire.Send{ID: id, Target: wire.ToUser(sol.ID), QoS: 1, Body: []byte(body)})
		return r.expect(wire.TypeSendAck).SendAck
	}
	first := send(500, "five hundred")
	q.expect("rhea", "five hundred")
	if again := send(500, "five hundred"); again.MsgID != first.MsgID || again.Code != wire.CodeOK {
		t.Fatalf("resend: %+v, first %+v", again, first)
	}
	q.none()
	send(600, "six hundred")
	q.expect("rhea", "six hundred")
	if low := send(550, "between"); low.MsgID == first.MsgID || low.Code != wire.CodeOK {
		t.Fatalf("new id below the highest: %+v", low)
	}
	q.expect("rhea", "between")
	send(500, "five hundred")
	send(550, "between")
	q.none()
}
