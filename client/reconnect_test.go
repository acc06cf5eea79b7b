package client

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cimgo/cim/broker/wire"
)

// The connection's life: logins refused, reconnecting, resending,
// giving up, takeover, keepalive.

func TestBadPasswordFailsAtOnce(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice")
	o := fastOptions(s, "alice")
	o.Password = "wrong"
	var states []State
	var mu sync.Mutex
	o.OnStateChange = func(from, to State) { mu.Lock(); states = append(states, to); mu.Unlock() }
	_, err := Dial(ctx(t), o)
	if !errors.Is(err, ErrAccountMismatch) || !strings.Contains(err.Error(), "bad account") {
		t.Fatalf("Dial with a wrong password = %v", err)
	}
	var logins int
	s.get(func(s *fakeServer) { logins = len(s.mu.logins) })
	if logins != 1 {
		t.Fatalf("%d logins for a refused password; no retry expected", logins)
	}
	waitFor(t, "states", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Equal(states, []State{Connecting, Failed})
	})
	o.UserName, o.Password = "nobody", "pw-nobody"
	if _, err := Dial(ctx(t), o); !errors.Is(err, ErrAccountMismatch) {
		t.Fatalf("Dial as an unknown user = %v", err)
	}
}

func TestReconnect(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice", "bob")
	var mu sync.Mutex
	var states []string
	var bobIn inbox
	o := fastOptions(s, "bob")
	o.OnMessage = bobIn.add
	o.OnStateChange = func(from, to State) { mu.Lock(); states = append(states, to.String()); mu.Unlock() }
	bob := dial(t, o)
	if err := bob.Subscribe(ctx(t), "news/#", "denied/x"); err == nil || !errors.Is(err, wire.CodeDenied) || !strings.Contains(err.Error(), `"denied/x"`) {
		t.Fatalf("Subscribe with a denied filter = %v", err)
	}
	alice := dial(t, fastOptions(s, "alice"))

	// Bob's connection drops; alice's message waits offline meanwhile.
	s.set(func(s *fakeServer) { s.mu.down = true })
	s.drop(2)
	waitFor(t, "bob reconnecting", func() bool { return bob.State() == Reconnecting })
	if _, err := alice.Send(ctx(t), User(2), []byte("stored")); !errors.Is(err, ErrOffline) {
		t.Fatalf("Send while bob is away = %v", err)
	}
	// A send bob makes while reconnecting goes out once he is back.
	sent, err := bob.PublishAsync(Publish{To: User(1), Body: []byte("queued")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.set(func(s *fakeServer) { s.mu.down = false })
	waitFor(t, "bob ready again", func() bool { return bob.State() == Ready })
	if _, err := sent.Wait(ctx(t)); err != nil {
		t.Fatalf("queued send: %v", err)
	}
	waitFor(t, "the offline message after the reconnect", func() bool { return len(bobIn.list()) == 1 })
	if m := bobIn.list()[0]; string(m.Body) != "stored" || !m.Offline {
		t.Fatalf("bob got %+v", m)
	}
	var logins []wire.Login
	var subs []wire.Subscribe
	s.get(func(s *fakeServer) { logins, subs = s.mu.logins, s.mu.subs })
	var bobs []wire.Login
	for _, l := range logins {
		if l.Name == "bob" || l.User == 2 {
			bobs = append(bobs, l)
		}
	}
	if len(bobs) != 2 || bobs[0].Password != "pw-bob" || bobs[1].Token != "tok-2" || bobs[1].Password != "" || bobs[1].User != 2 {
		t.Fatalf("bob's logins: %+v", bobs)
	}
	if len(subs) != 2 || !slices.Equal(subs[1].Filters, []string{"news/#"}) {
		t.Fatalf("subscriptions: %+v (want news/# restored, the denied one not)", subs)
	}
	mu.Lock()
	got := strings.Join(states, ",")
	mu.Unlock()
	if got != "connecting,ready,reconnecting,ready" {
		t.Fatalf("states: %s", got)
	}
}

func TestResendUnacked(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice", "bob")
	var bobIn inbox
	ob := fastOptions(s, "bob")
	ob.OnMessage = bobIn.add
	dial(t, ob)
	alice := dial(t, fastOptions(s, "alice"))

	// The server takes the message but its ack is lost with the connection.
	s.set(func(s *fakeServer) { s.mu.noAck = true })
	sent, err := alice.PublishAsync(Publish{To: User(2), Body: []byte("once")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the send to arrive", func() bool {
		var n int
		s.get(func(s *fakeServer) { n = len(s.mu.sends) })
		return n == 1
	})
	// Deliver it (as a server would have) before the ack got lost.
	var first wire.Send
	s.get(func(s *fakeServer) { first = s.mu.sends[0]; s.mu.noAck = false })
	s.conn(1).route(first.ID, &first, first.Body)
	s.drop(1)
	acks, err := sent.Wait(ctx(t))
	if err != nil {
		t.Fatalf("after the resend: %v", err)
	}
	var sends []wire.Send
	s.get(func(s *fakeServer) { sends = s.mu.sends })
	if len(sends) != 2 || sends[1].ID != sends[0].ID || string(sends[1].Body) != "once" {
		t.Fatalf("sends: %+v", sends)
	}
	if len(bobIn.list()) != 1 || acks[0].MsgID != bobIn.list()[0].ID {
		t.Fatalf("bob got %v (want it once, with the acked id %d)", bobIn.String(), acks[0].MsgID)
	}
}

func TestQoS0LostWithTheConnection(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice")
	alice := dial(t, fastOptions(s, "alice"))
	s.set(func(s *fakeServer) { s.mu.noAck = true })
	sent, err := alice.PublishAsync(Publish{To: Everyone(), Body: []byte("x"), AtMostOnce: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the send to arrive", func() bool {
		var n int
		s.get(func(s *fakeServer) { n = len(s.mu.sends) })
		return n == 1
	})
	s.drop(1)
	if _, err := sent.Wait(ctx(t)); !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("QoS 0 send over a lost connection = %v", err)
	}
	waitFor(t, "ready", func() bool { return alice.State() == Ready })
	var n int
	s.get(func(s *fakeServer) { n = len(s.mu.sends) })
	if n != 1 {
		t.Fatalf("a QoS 0 send went out %d times", n)
	}
}

func TestRetryLimitFails(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice")
	o := fastOptions(s, "alice")
	o.RetryLimit = 3
	fatal := make(chan error, 2)
	o.OnFatal = func(err error) { fatal <- err }
	alice := dial(t, o)
	s.set(func(s *fakeServer) { s.mu.down = true })
	s.drop(1)
	var err error
	select {
	case err = <-fatal:
	case <-time.After(10 * time.Second):
		t.Fatal("no OnFatal")
	}
	if !errors.Is(err, ErrReconnectFailed) || !strings.Contains(err.Error(), "3 connection attempts failed") {
		t.Fatalf("OnFatal(%v)", err)
	}
	if alice.State() != Failed || !errors.Is(alice.Err(), ErrReconnectFailed) {
		t.Fatalf("state %v, Err %v", alice.State(), alice.Err())
	}
	select {
	case <-alice.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after Failed")
	}
	if _, err := alice.Send(ctx(t), User(1), []byte("x")); !errors.Is(err, ErrFailed) || !errors.Is(err, ErrReconnectFailed) {
		t.Fatalf("Send after Failed = %v", err)
	}
	if _, err := alice.OnlineUsers(ctx(t), "", 0); !errors.Is(err, ErrFailed) {
		t.Fatalf("OnlineUsers after Failed = %v", err)
	}
	if len(fatal) != 0 {
		t.Fatal("OnFatal called twice")
	}
	alice.Close()
	if alice.State() != Failed {
		t.Fatalf("Close after Failed changed the state to %v", alice.State())
	}
}

func TestDialRetriesThenGivesUp(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice")
	s.set(func(s *fakeServer) { s.mu.down = true })
	o := fastOptions(s, "alice")
	o.RetryLimit = 4
	start := time.Now()
	_, err := Dial(ctx(t), o)
	if !errors.Is(err, ErrReconnectFailed) || !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("Dial to a server that closes every connection = %v", err)
	}
	t.Logf("gave up after %v: %v", time.Since(start), err)

	// A second address that works is found.
	good := newFakeServer(t, "alice")
	o.Addrs = []string{s.addr, good.addr}
	c := dial(t, o)
	if c.Info().Addr != good.addr {
		t.Fatalf("connected to %s", c.Info().Addr)
	}
	// A context that ends stops Dial.
	o.Addrs, o.RetryLimit = []string{s.addr}, -1
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := Dial(short, o); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial with a short context = %v", err)
	}
}

func TestTakeover(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice")
	fatal := make(chan error, 1)
	o := fastOptions(s, "alice")
	o.OnFatal = func(err error) { fatal <- err }
	first := dial(t, o)
	second := dial(t, fastOptions(s, "alice"))
	select {
	case err := <-fatal:
		if !errors.Is(err, ErrTakenOver) {
			t.Fatalf("OnFatal(%v)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first client was not told")
	}
	if first.State() != Failed {
		t.Fatalf("first client: %v", first.State())
	}
	if _, err := second.Send(ctx(t), Everyone(), []byte("still here")); err != nil {
		t.Fatalf("second client: %v", err)
	}
	var logins int
	s.get(func(s *fakeServer) { logins = len(s.mu.logins) })
	if logins != 2 {
		t.Fatalf("%d logins: the taken-over client must not come back", logins)
	}
}

func TestKeepalive(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice")
	s.set(func(s *fakeServer) { s.mu.keepalive = 1 })
	alice := dial(t, fastOptions(s, "alice"))
	if alice.Info().Keepalive != time.Second {
		t.Fatalf("keepalive %v", alice.Info().Keepalive)
	}
	waitFor(t, "pings", func() bool {
		var n int
		s.get(func(s *fakeServer) { n = s.mu.pings })
		return n >= 3
	})
	// A server that stops answering is given up on and reconnected to.
	s.set(func(s *fakeServer) { s.mu.silent = true })
	waitFor(t, "the silent connection given up", func() bool { return alice.State() == Reconnecting })
	s.set(func(s *fakeServer) { s.mu.silent = false })
	waitFor(t, "ready again", func() bool { return alice.State() == Ready })
}

func TestStaleTokenFallsBackToPassword(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice")
	o := fastOptions(s, "alice")
	o.Token = "stale"
	c := dial(t, o)
	var logins []wire.Login
	s.get(func(s *fakeServer) { logins = s.mu.logins })
	if len(logins) != 2 || logins[0].Token != "stale" || logins[0].Password != "" || logins[1].Password != "pw-alice" || logins[1].Token != "" {
		t.Fatalf("logins %+v", logins)
	}
	if c.Info().Token != "tok-1" {
		t.Fatalf("token %q", c.Info().Token)
	}
	// Without a password a refused token is final.
	o.Password = ""
	if _, err := Dial(ctx(t), o); !errors.Is(err, ErrAccountMismatch) {
		t.Fatalf("Dial with a stale token only = %v", err)
	}
	// A good token alone works.
	o.Token = "tok-1"
	dial(t, o)
}

// A node that says it is shutting down is not the first one tried again:
// the client goes to the next address at once (the dying node may still
// accept for a while and make it wait out a connect timeout).
func TestReconnectSkipsStoppingNode(t *testing.T) {
	checkLeaks(t)
	a, b := newFakeServer(t, "alice"), newFakeServer(t, "alice")
	o := fastOptions(a, "alice")
	o.Addrs = []string{a.addr, b.addr}
	c := dial(t, o)
	if got := c.Info().Addr; got != a.addr {
		t.Fatalf("connected to %s, want %s", got, a.addr)
	}
	a.push(1, &wire.Kick{Code: wire.CodeShuttingDown, Text: "shutting down"})
	waitFor(t, "on the second node", func() bool { return c.State() == Ready && c.Info().Addr == b.addr })
	// A plain loss comes back to the address that worked last.
	b.drop(1)
	waitFor(t, "back on the second node", func() bool { return c.State() == Ready && b.conn(1) != nil })
	if got := c.Info().Addr; got != b.addr {
		t.Fatalf("after a plain loss connected to %s, want %s again", got, b.addr)
	}
}
