package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cimgo/cim/broker/wire"
)

// checkLeaks fails the test if goroutines of the client outlive it (it
// runs after every other cleanup, so after the test's clients closed).
func checkLeaks(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			left := clientGoroutines()
			if left == "" {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("client goroutines left behind:\n%s", left)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func clientGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, fn := range []string{"client.(*conn).", "client.(*Client).", "client.(*events)."} {
			if strings.Contains(g, fn) {
				out = append(out, g)
				break
			}
		}
	}
	return strings.Join(out, "\n\n")
}

// dial dials with opts and closes the client at the end of the test.
func dial(t *testing.T, opts Options) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestPrivateMessage(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice", "bob", "carol")
	var bobIn, carolIn inbox
	alice := dial(t, fastOptions(s, "alice"))
	ob := fastOptions(s, "bob")
	ob.OnMessage = bobIn.add
	dial(t, ob)
	oc := fastOptions(s, "carol")
	oc.OnMessage = carolIn.add
	dial(t, oc)

	if info := alice.Info(); info.UserID != 1 || info.UserName != "alice" || info.Node != "fake" || info.Token != "tok-1" || info.ServerTime.IsZero() {
		t.Fatalf("Info = %+v", info)
	}
	ack, err := alice.Send(ctx(t), User(2), []byte("hello bob"))
	if err != nil || ack.Code != wire.CodeOK || ack.MsgID == 0 || ack.Time.IsZero() {
		t.Fatalf("Send = %+v, %v", ack, err)
	}
	waitFor(t, "bob's message", func() bool { return len(bobIn.list()) == 1 })
	m := bobIn.list()[0]
	if string(m.Body) != "hello bob" || m.From != 1 || m.FromName != "alice" || m.To != User(2) ||
		m.ID != ack.MsgID || m.QoS != 1 || m.Offline || m.Time.IsZero() {
		t.Fatalf("bob got %+v", m)
	}
	// The QoS 1 delivery is acknowledged after the listener returned.
	waitFor(t, "bob's deliver ack", func() bool {
		var acked []uint64
		s.get(func(s *fakeServer) { acked = s.mu.acked })
		return slices.Contains(acked, ack.MsgID)
	})
	if len(carolIn.list()) != 0 {
		t.Fatalf("carol got bob's message: %v", carolIn.String())
	}
}

func TestEveryoneAndBatch(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice", "bob")
	var bobIn inbox
	alice := dial(t, fastOptions(s, "alice"))
	ob := fastOptions(s, "bob")
	ob.OnMessage = bobIn.add
	dial(t, ob)

	if _, err := alice.Send(ctx(t), Everyone(), []byte("hi all")); err != nil {
		t.Fatal(err)
	}
	batch := [][]byte{[]byte("1"), []byte("2"), []byte("3"), []byte("4"), []byte("5")}
	acks, err := alice.Publish(ctx(t), Publish{To: User(2), Batch: batch})
	if err != nil || len(acks) != 5 {
		t.Fatalf("Publish = %v, %v", acks, err)
	}
	for i, a := range acks {
		if a.Code != wire.CodeOK || a.MsgID == 0 || i > 0 && a.ID != acks[i-1].ID+1 {
			t.Fatalf("ack %d = %+v", i, a)
		}
	}
	waitFor(t, "six messages", func() bool { return len(bobIn.list()) == 6 })
	if got := strings.Join(bobIn.bodies(), ","); got != "hi all,1,2,3,4,5" {
		t.Fatalf("bob got %s", got)
	}
	if bobIn.list()[0].To != Everyone() {
		t.Fatalf("group chat message addressed %+v", bobIn.list()[0].To)
	}
	// The batch went out as one frame with consecutive ids.
	var sends []wire.Send
	s.get(func(s *fakeServer) { sends = s.mu.sends })
	if len(sends) != 2 || len(sends[1].Batch) != 5 || sends[1].ID != acks[0].ID || sends[1].QoS != 1 {
		t.Fatalf("frames the server got: %+v", sends)
	}
}

func TestOfflineThenOnline(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice", "bob")
	alice := dial(t, fastOptions(s, "alice"))

	ack, err := alice.Send(ctx(t), User(2), []byte("while you were out"))
	if !errors.Is(err, ErrOffline) || !Accepted(err) || ack.Code != wire.CodeOffline || ack.MsgID == 0 {
		t.Fatalf("Send to offline bob = %+v, %v", ack, err)
	}
	if !errors.Is(ack.Err(), wire.CodeOffline) {
		t.Fatalf("Ack.Err = %v", ack.Err())
	}
	var c wire.Code
	if !errors.As(err, &c) || c != 7000 {
		t.Fatalf("errors.As code = %d", c)
	}
	var bobIn inbox
	ob := fastOptions(s, "bob")
	ob.OnMessage = bobIn.add
	dial(t, ob)
	waitFor(t, "the offline message", func() bool { return len(bobIn.list()) == 1 })
	if m := bobIn.list()[0]; !m.Offline || m.FromName != "alice" || m.ID != ack.MsgID {
		t.Fatalf("bob got %+v", m)
	}
}

func TestSendRefusals(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice")
	alice := dial(t, fastOptions(s, "alice"))

	ack, err := alice.Send(ctx(t), User(99), []byte("x"))
	if !errors.Is(err, ErrUnknownReceiver) || Accepted(err) || ack.Code != wire.CodeUnknownReceiver || !strings.Contains(err.Error(), "no user 99") {
		t.Fatalf("Send to an unknown user = %+v, %v", ack, err)
	}
	for _, c := range []struct {
		p    Publish
		code wire.Code
	}{
		{Publish{To: User(1)}, wire.CodeEmptyBody},
		{Publish{To: User(1), Batch: [][]byte{[]byte("a"), nil}}, wire.CodeEmptyBody},
		{Publish{Body: []byte("x")}, wire.CodeBadArgument},
		{Publish{To: User(0), Body: []byte("x")}, wire.CodeBadArgument},
		{Publish{To: Group(""), Body: []byte("x")}, wire.CodeBadArgument},
		{Publish{To: Topic("a/+"), Body: []byte("x")}, wire.CodeBadTopic},
		{Publish{To: User(1), Body: []byte("x"), Batch: [][]byte{[]byte("y")}}, wire.CodeBadArgument},
		{Publish{To: User(1), Body: []byte("x"), Delay: -time.Second}, wire.CodeBadArgument},
	} {
		_, err := alice.Publish(ctx(t), c.p)
		if wire.CodeOf(err) != c.code {
			t.Errorf("Publish(%+v) = %v, want code %d", c.p, err, c.code)
		}
	}
	var n int
	s.get(func(s *fakeServer) { n = len(s.mu.sends) })
	if n != 1 {
		t.Fatalf("refused publishes reached the server: %d sends", n)
	}
}

func TestAsyncAndDelayed(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice", "bob")
	alice := dial(t, fastOptions(s, "alice"))
	done := make(chan error, 1)
	sent, err := alice.PublishAsync(Publish{To: User(2), Body: []byte("later"), Delay: 1500 * time.Millisecond},
		func(acks []Ack, err error) { done <- err })
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("callback: %v", err)
	}
	acks, err := sent.Wait(ctx(t))
	if err != nil || len(acks) != 1 || acks[0].MsgID == 0 {
		t.Fatalf("Wait = %v, %v", acks, err)
	}
	var sends []wire.Send
	s.get(func(s *fakeServer) { sends = s.mu.sends })
	if sends[0].Delay != 1500 {
		t.Fatalf("delay on the wire = %d ms", sends[0].Delay)
	}
	pending, next, err := alice.DelayedMessages(ctx(t), nil, 0)
	if err != nil || len(pending) != 1 || next != nil || string(pending[0].Body) != "later" || pending[0].To != User(2) ||
		pending[0].Due.Sub(pending[0].Created) != 1500*time.Millisecond {
		t.Fatalf("DelayedMessages = %+v, %v, %v", pending, next, err)
	}
	// At most once: the same path, QoS 0 on the wire.
	if _, err := alice.Publish(ctx(t), Publish{To: Everyone(), Body: []byte("q0"), AtMostOnce: true}); err != nil {
		t.Fatal(err)
	}
	s.get(func(s *fakeServer) { sends = s.mu.sends })
	if sends[1].QoS != 0 {
		t.Fatalf("AtMostOnce sent at QoS %d", sends[1].QoS)
	}
	if err := alice.Flush(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestRedeliveryCallsListenerOnce(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice")
	var in inbox
	o := fastOptions(s, "alice")
	o.OnMessage = in.add
	dial(t, o)
	d := &wire.Deliver{MsgID: 77, From: 5, FromName: "x", Target: wire.ToUser(1), Body: []byte("dup"), QoS: 1}
	s.push(1, d)
	s.push(1, d)
	s.push(1, &wire.Deliver{MsgID: 78, Target: wire.ToUser(1), Body: []byte("next"), QoS: 1})
	waitFor(t, "three acks", func() bool {
		var n int
		s.get(func(s *fakeServer) { n = len(s.mu.acked) })
		return n == 3
	})
	if got := in.bodies(); !slices.Equal(got, []string{"dup", "next"}) {
		t.Fatalf("listener got %v", got)
	}
}

func TestBadServerInput(t *testing.T) {
	checkLeaks(t)
	for _, c := range []struct {
		name  string
		bytes []byte
		code  wire.Code
	}{
		{"invalid msgpack", []byte{0x03, byte(wire.TypeDeliver), 0x81, 0xc1}, wire.CodeMalformed},
		{"bad length prefix", []byte{0xff, 0xff, 0xff, 0xff, 0x7f}, wire.CodeFrameTooLarge},
		{"empty frame", []byte{0x00}, wire.CodeMalformed},
		{"client-only frame type", mustFrame(&wire.Login{User: 1}), 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newFakeServer(t, "alice")
			o := fastOptions(s, "alice")
			o.MaxFrameSize = 1 << 16
			alice := dial(t, o)
			s.raw(1, c.bytes)
			waitFor(t, "a reconnect", func() bool {
				var n int
				s.get(func(s *fakeServer) { n = len(s.mu.logins) })
				return n == 2 && alice.State() == Ready
			})
		})
	}
	t.Run("unknown frame type is skipped", func(t *testing.T) {
		s := newFakeServer(t, "alice")
		var in inbox
		o := fastOptions(s, "alice")
		o.OnMessage = in.add
		dial(t, o)
		s.raw(1, []byte{0x02, 0x35, 0x80})
		s.push(1, &wire.Deliver{MsgID: 1, Body: []byte("after")})
		waitFor(t, "the message after the unknown frame", func() bool { return len(in.list()) == 1 })
		var n int
		s.get(func(s *fakeServer) { n = len(s.mu.logins) })
		if n != 1 {
			t.Fatalf("%d logins: an unknown frame must not cost the connection", n)
		}
	})
	t.Run("garbage instead of a login ack", func(t *testing.T) {
		ln := newRawServer(t, []byte{0x04, byte(wire.TypeLoginAck), 0x81, 0xa1, 0xff})
		o := Options{UserName: "a", Addrs: []string{ln}, RetryLimit: 2,
			Backoff: ExponentialBackoff{Initial: time.Millisecond, Max: time.Millisecond}}
		_, err := Dial(ctx(t), o)
		if !errors.Is(err, ErrProtocol) || wire.CodeOf(err) != wire.CodeReconnectFailed || !strings.Contains(err.Error(), "malformed") {
			t.Fatalf("Dial = %v", err)
		}
	})
	t.Run("a deliver before the login ack", func(t *testing.T) {
		ln := newRawServer(t, mustFrame(&wire.Deliver{MsgID: 1}))
		_, err := Dial(ctx(t), Options{UserName: "a", Addrs: []string{ln}, RetryLimit: 1})
		if !errors.Is(err, ErrProtocol) {
			t.Fatalf("Dial = %v", err)
		}
	})
	t.Run("login ack without a code", func(t *testing.T) {
		ln := newRawServer(t, mustFrame(&wire.LoginAck{User: 1}))
		_, err := Dial(ctx(t), Options{UserName: "a", Addrs: []string{ln}, RetryLimit: 1})
		if !errors.Is(err, ErrProtocol) {
			t.Fatalf("Dial = %v", err)
		}
	})
	t.Run("no login ack", func(t *testing.T) {
		ln := newRawServer(t, nil)
		_, err := Dial(ctx(t), Options{UserName: "a", Addrs: []string{ln}, RetryLimit: 1, ConnectTimeout: 200 * time.Millisecond})
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no login ack") {
			t.Fatalf("Dial = %v", err)
		}
	})
}

func mustFrame(b wire.Body) []byte {
	f, err := wire.Append(nil, b)
	if err != nil {
		panic(err)
	}
	return f
}

func TestRequests(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice", "albert", "bob")
	alice := dial(t, fastOptions(s, "alice"))
	dial(t, fastOptions(s, "albert"))
	dial(t, fastOptions(s, "bob"))

	users, err := alice.OnlineUsers(ctx(t), "al", 0)
	slices.SortFunc(users, func(a, b UserInfo) int { return int(a.ID) - int(b.ID) })
	if err != nil || !slices.Equal(users, []UserInfo{{ID: 1, Name: "alice"}, {ID: 2, Name: "albert"}}) {
		t.Fatalf("OnlineUsers = %v, %v", users, err)
	}
	g, err := alice.CreateGroup(ctx(t), "ops")
	if err != nil || g.Name != "ops" || g.Owner != 1 || g.Members != 1 {
		t.Fatalf("CreateGroup = %+v, %v", g, err)
	}
	if _, err := alice.CreateGroup(ctx(t), "ops"); !errors.Is(err, wire.CodeGroupExists) {
		t.Fatalf("CreateGroup again = %v", err)
	}
	if _, err := alice.JoinGroup(ctx(t), "nope"); !errors.Is(err, wire.CodeUnknownGroup) {
		t.Fatalf("JoinGroup unknown = %v", err)
	}
	members, err := alice.GroupMembers(ctx(t), "ops")
	if err != nil || len(members) != 1 || members[0].Name != "alice" {
		t.Fatalf("GroupMembers = %v, %v", members, err)
	}
	mine, err := alice.MyGroups(ctx(t))
	if err != nil || len(mine) != 1 || mine[0].Name != "ops" {
		t.Fatalf("MyGroups = %v, %v", mine, err)
	}
	if err := alice.LeaveGroup(ctx(t), "ops"); !errors.Is(err, wire.CodeUnknownMethod) {
		// The fake server does not implement leaving: the error must say so.
		t.Fatalf("LeaveGroup on the fake = %v", err)
	}
	alice.Send(ctx(t), User(3), []byte("the keyword is kiwi"))
	alice.Send(ctx(t), User(3), []byte("apple"))
	found, err := alice.Search(ctx(t), "kiwi", 10)
	if err != nil || len(found) != 1 || string(found[0].Body) != "the keyword is kiwi" || found[0].To != User(3) || found[0].FromName != "alice" {
		t.Fatalf("Search = %v, %v", found, err)
	}
	if _, err := alice.History(ctx(t), HistoryQuery{}); !errors.Is(err, wire.CodeBadArgument) {
		t.Fatalf("History without a conversation or keyword = %v", err)
	}
	if err := alice.Subscribe(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := alice.Subscribe(ctx(t), "a/b"); err != nil {
		t.Fatal(err)
	}
	if err := alice.Unsubscribe(ctx(t), "a/b"); err != nil {
		t.Fatal(err)
	}
}

func TestTopicMessages(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice", "bob")
	var in inbox
	ob := fastOptions(s, "bob")
	ob.OnMessage = in.add
	bob := dial(t, ob)
	if err := bob.Subscribe(ctx(t), "sensors/t1"); err != nil {
		t.Fatal(err)
	}
	alice := dial(t, fastOptions(s, "alice"))
	if _, err := alice.Send(ctx(t), Topic("sensors/t1"), []byte("21.5")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the topic message", func() bool { return len(in.list()) == 1 })
	if m := in.list()[0]; m.To != Topic("sensors/t1") || string(m.Body) != "21.5" {
		t.Fatalf("bob got %+v", m)
	}
}

// Callbacks may call the client: a listener that answers with a
// synchronous Send, and one that closes the client.
func TestCallbacksCallTheClient(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice", "bob")
	var bob *Client
	replied := make(chan error, 1)
	ob := fastOptions(s, "bob")
	ob.OnMessage = func(m *Message) {
		_, err := bob.Send(context.Background(), User(m.From), []byte("re: "+string(m.Body)))
		replied <- err
		if string(m.Body) == "bye" {
			bob.Close()
		}
	}
	bob = dial(t, ob)
	var in inbox
	oa := fastOptions(s, "alice")
	oa.OnMessage = in.add
	alice := dial(t, oa)
	alice.Send(ctx(t), User(2), []byte("ping"))
	if err := <-replied; err != nil {
		t.Fatalf("Send from the listener: %v", err)
	}
	waitFor(t, "the reply", func() bool { return len(in.list()) == 1 })
	alice.Send(ctx(t), User(2), []byte("bye"))
	<-replied
	select {
	case <-bob.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Close from the listener did not finish")
	}
	if bob.State() != Closed {
		t.Fatalf("state %v", bob.State())
	}
}

// A listener that blocks holds up only the listener: QoS 0 beyond
// MessageBuffer is dropped, QoS 1 is not, and sends and their acks go on.
func TestSlowListener(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice")
	release := make(chan struct{})
	entered := make(chan struct{}, 100)
	var got atomic.Int64
	o := fastOptions(s, "alice")
	o.MessageBuffer = 10
	o.OnMessage = func(m *Message) {
		entered <- struct{}{}
		<-release
		got.Add(1)
	}
	alice := dial(t, o)
	s.push(1, &wire.Deliver{MsgID: 1, Body: []byte("first")})
	<-entered // the listener is now stuck in the first message
	for i := 0; i < 50; i++ {
		s.push(1, &wire.Deliver{MsgID: uint64(i + 2), Body: []byte("q0")})
	}
	s.push(1, &wire.Deliver{MsgID: 1000, Body: []byte("q1"), QoS: 1})
	waitFor(t, "drops", func() bool { return alice.Dropped() == 40 })
	if _, err := alice.Send(ctx(t), Everyone(), []byte("x")); err != nil {
		t.Fatalf("Send while the listener is stuck: %v", err)
	}
	close(release)
	waitFor(t, "the queued messages", func() bool { return got.Load() == 12 }) // first, 10 buffered, the QoS 1 one
	waitFor(t, "the QoS 1 ack", func() bool {
		var acked []uint64
		s.get(func(s *fakeServer) { acked = s.mu.acked })
		return slices.Equal(acked, []uint64{1000})
	})
	if d := alice.Dropped(); d != 40 {
		t.Fatalf("dropped %d, want 40", d)
	}
}

func TestConcurrentClients(t *testing.T) {
	checkLeaks(t)
	const n, each = 8, 50
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("user%d", i)
	}
	s := newFakeServer(t, names...)
	clients := make([]*Client, n)
	inboxes := make([]inbox, n)
	for i := range clients {
		o := fastOptions(s, names[i])
		o.OnMessage = inboxes[i].add
		clients[i] = dial(t, o)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n*each)
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			to := User(uint64((i+1)%n + 1))
			for k := 0; k < each; k++ {
				if _, err := c.Send(context.Background(), to, []byte(fmt.Sprintf("%d-%d", i, k))); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range inboxes {
		waitFor(t, "every message", func() bool { return len(inboxes[i].list()) == each })
		from := (i + n - 1) % n
		for k, b := range inboxes[i].bodies() {
			if b != fmt.Sprintf("%d-%d", from, k) {
				t.Fatalf("client %d message %d = %s: out of order", i, k, b)
			}
		}
	}
	// Closing one leaves the others alone.
	clients[0].Close()
	if _, err := clients[1].Send(ctx(t), User(3), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if clients[1].State() != Ready {
		t.Fatalf("client 1: %v", clients[1].State())
	}
}

func TestClose(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice")
	var states []State
	var mu sync.Mutex
	o := fastOptions(s, "alice")
	o.OnStateChange = func(_, to State) { mu.Lock(); states = append(states, to); mu.Unlock() }
	alice := dial(t, o)
	s.set(func(s *fakeServer) { s.mu.noAck = true })
	done := make(chan error, 1)
	if _, err := alice.PublishAsync(Publish{To: Everyone(), Body: []byte("x")}, func(_ []Ack, err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	call := make(chan error, 1)
	go func() { _, err := alice.OnlineUsers(context.Background(), "", 0); call <- err }()
	waitFor(t, "the send and the request", func() bool {
		var n int
		s.get(func(s *fakeServer) { n = len(s.mu.sends) })
		return n == 1
	})
	if err := alice.Close(); err != nil {
		t.Fatal(err)
	}
	if err := alice.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("pending send after Close: %v", err)
	}
	if err := <-call; err != nil && !errors.Is(err, ErrClosed) {
		t.Fatalf("request across Close: %v", err)
	}
	if _, err := alice.Send(ctx(t), Everyone(), []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
	if err := alice.Subscribe(ctx(t), "x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
	<-alice.Done()
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(states, []State{Connecting, Ready, Closed}) {
		t.Fatalf("states %v", states)
	}
}

func TestOptionsValidate(t *testing.T) {
	base := func() Options { return Options{UserName: "a", Addrs: []string{"127.0.0.1:9000"}} }
	for _, c := range []struct {
		field string
		mod   func(*Options)
	}{
		{"UserID", func(o *Options) { o.UserName = "" }},
		{"Addrs", func(o *Options) { o.Addrs = nil }},
		{"APIURL", func(o *Options) { o.APIURL = "http://x" }},
		{"APIURL", func(o *Options) { o.Addrs, o.APIURL = nil, "ftp://x" }},
		{"Register", func(o *Options) { o.Register = true }},
		{"Addrs[0]", func(o *Options) { o.Addrs = []string{"nocolon"} }},
		{"Keepalive", func(o *Options) { o.Keepalive = time.Millisecond }},
		{"Keepalive", func(o *Options) { o.Keepalive = 100000 * time.Second }},
		{"ConnectTimeout", func(o *Options) { o.ConnectTimeout = -1 }},
		{"MaxFrameSize", func(o *Options) { o.MaxFrameSize = wire.MaxFrameSize + 1 }},
		{"MaxInflight", func(o *Options) { o.MaxInflight = -1 }},
	} {
		o := base()
		c.mod(&o)
		o.EnsureDefaults()
		err := o.Validate()
		if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), ": "+c.field+":") {
			t.Errorf("%s: Validate = %v", c.field, err)
		}
		if _, err := Dial(context.Background(), o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: Dial = %v", c.field, err)
		}
	}
	o := base()
	o.EnsureDefaults()
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if o.ConnectTimeout != DefaultConnectTimeout || o.RetryLimit != DefaultRetryLimit || o.Logger == nil || o.Backoff == nil {
		t.Fatalf("defaults: %+v", o)
	}
}

func TestBackoff(t *testing.T) {
	b := ExponentialBackoff{Initial: 100 * time.Millisecond, Max: time.Second, Jitter: 0.5}
	for n, want := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		want *= time.Millisecond
		for i := 0; i < 50; i++ {
			if d := b.Delay(n + 1); d < want/2 || d > want {
				t.Fatalf("Delay(%d) = %v, want in [%v, %v]", n+1, d, want/2, want)
			}
		}
	}
	if d := (ExponentialBackoff{}).Delay(1000); d > 30*time.Second || d < 15*time.Second {
		t.Fatalf("default Delay(1000) = %v", d)
	}
}

// A send over the server's announced frame limit is refused before it is
// written.
func TestSendOverServerMaxFrame(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice")
	s.set(func(s *fakeServer) { s.mu.maxFrame = 1000 })
	c := dial(t, fastOptions(s, "alice"))
	_, err := c.Send(ctx(t), Everyone(), make([]byte, 2000))
	if !errors.Is(err, wire.CodeFrameTooLarge) {
		t.Fatalf("Send of 2000 bytes = %v", err)
	}
	if _, err := c.Send(ctx(t), Everyone(), make([]byte, 900)); err != nil {
		t.Fatal(err)
	}
}

// Random bytes from the server, then a close: whatever they decode to, the
// client neither panics nor stops; it reconnects.
func TestRandomServerBytes(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice")
	o := fastOptions(s, "alice")
	o.MaxFrameSize = 1 << 12
	o.OnMessage = func(*Message) {}
	c := dial(t, o)
	r := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 30; i++ {
		b := make([]byte, r.IntN(64)+1)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		if i%3 == 0 { // a plausible frame start: a short length and a known type
			b[0], b[1%len(b)] = byte(len(b)-1), byte(r.IntN(0x11))
		}
		waitFor(t, "ready", func() bool { return c.State() == Ready && s.conn(1) != nil })
		var before int
		s.get(func(s *fakeServer) { before = len(s.mu.logins) })
		s.raw(1, b)
		s.drop(1)
		waitFor(t, "a reconnect", func() bool {
			var n int
			s.get(func(s *fakeServer) { n = len(s.mu.logins) })
			return n > before
		})
	}
	waitFor(t, "ready at the end", func() bool { return c.State() == Ready })
}
