package broker

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/cimgo/cim/broker/wire"
	"github.com/cimgo/cim/client"
)

// dialUserAt logs a native user in to one node (or several, tried in turn).
func dialUserAt(t testing.TB, name string, addrs ...string) *sdkUser {
	t.Helper()
	u := &sdkUser{t: t, msgs: make(chan *client.Message, 10000)}
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{UserName: name, Addrs: addrs, RetryLimit: -1,
		Backoff: client.ExponentialBackoff{Initial: 50 * time.Millisecond, Max: 300 * time.Millisecond},
		// A node shutting down may accept a reconnect it never serves:
		// the SDK waits its connect timeout before the next address.
		ConnectTimeout: time.Second,
		OnMessage:      func(m *client.Message) { u.msgs <- m }, Logger: clusterTestLogger()})
	if err != nil {
		t.Fatalf("login %s at %v: %v", name, addrs, err)
	}
	u.c = c
	t.Cleanup(func() { c.Close() })
	return u
}

// Accounts registered on any node are the same on every node (same ids),
// groups too; private, group and everyone messages cross nodes; 7000 is
// told only when the receiver is offline everywhere; online users are
// cluster-wide.
func TestClusterNativeAcrossNodes(t *testing.T) {
	nodes := startTestCluster(t, 3, nil)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	ctx := context.Background()
	// Registered on a node that is not the registrar (n1 is: lowest name).
	alice, created, err := n2.srv.Register(ctx, "alice", "")
	if err != nil || !created {
		t.Fatalf("register on n2: %v (created %v)", err, created)
	}
	bob := register(t, n3.srv, "bob", "")
	carol := register(t, n1.srv, "carol", "")
	for _, n := range nodes {
		for _, want := range []Account{alice, bob, carol} {
			waitFor15(t, want.Name+" on "+n.name, func() bool {
				got, ok := n.srv.LookupAccount(0, want.Name)
				return ok && got.ID == want.ID
			})
		}
	}
	if alice.ID == bob.ID || bob.ID == carol.ID {
		t.Fatalf("ids collide: %d %d %d", alice.ID, bob.ID, carol.ID)
	}

	a := dialUserAt(t, "alice", n1.nativeAddr())
	b := dialUserAt(t, "bob", n2.nativeAddr())
	waitFor15(t, "bob online on n1", func() bool { return n1.srv.Online(bob.ID) })

	// Private: alice (n1) -> bob (n2), online elsewhere: not 7000.
	if ack := a.send(client.User(bob.ID), "hi bob"); ack.Code != wire.CodeOK {
		t.Fatalf("to bob online on n2: code %d, want %d", ack.Code, wire.CodeOK)
	}
	if m := b.expect("alice", "hi bob"); m.From != alice.ID {
		t.Fatalf("sender id %d, want %d", m.From, alice.ID)
	}
	// Carol has logged in once, on n3, and went away: offline everywhere,
	// 7000, and the message waits on n3 until she logs in, on n1: her
	// session moves there with it.
	c := dialUserAt(t, "carol", n3.nativeAddr())
	c.c.Close()
	waitFor15(t, "carol offline", func() bool { return !n1.srv.Online(carol.ID) && !n3.srv.Online(carol.ID) })
	waitInterest(t, nodes, "n3", inboxTopic(carol.ID))
	if ack := a.send(client.User(carol.ID), "for later"); ack.Code != wire.CodeOffline {
		t.Fatalf("to carol offline: code %d, want 7000", ack.Code)
	}
	c = dialUserAt(t, "carol", n1.nativeAddr())
	if m := c.expect("alice", "for later"); !m.Offline {
		t.Fatal("offline message not marked offline")
	}
	if n3.srv.sessions.lookup(nativeKey(carol.ID)) != nil {
		t.Fatal("n3 still holds carol's session")
	}
	waitFor15(t, "carol online on n2 and n3", func() bool { return n2.srv.Online(carol.ID) && n3.srv.Online(carol.ID) })

	// Online users, cluster-wide, from any node.
	users, err := a.c.OnlineUsers(ctx, "", 0)
	if err != nil || len(users) != 3 {
		t.Fatalf("online users from n1: %v %v, want 3", users, err)
	}

	// Everyone: from bob (n2) to alice and carol (n1), not back to bob.
	b.send(client.Everyone(), "hello all")
	a.expect("bob", "hello all")
	c.expect("bob", "hello all")
	b.none()

	// A group created by carol (n1), joined from n1 and n2.
	if _, err := c.c.CreateGroup(ctx, "crew"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.JoinGroup(ctx, "crew"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.c.JoinGroup(ctx, "crew"); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		waitFor15(t, "3 members on "+n.name, func() bool { ms, _ := n.srv.GroupMembers("crew"); return len(ms) == 3 })
	}
	if _, err := a.c.CreateGroup(ctx, "crew"); wire.CodeOf(err) != wire.CodeGroupExists {
		t.Fatalf("creating crew again on n1: %v, want %d", err, wire.CodeGroupExists)
	}
	waitInterest(t, nodes, "n1", "cim/g/crew")
	waitInterest(t, nodes, "n2", "cim/g/crew")
	c.send(client.Group("crew"), "crew meeting")
	a.expect("carol", "crew meeting")
	b.expect("carol", "crew meeting")
	c.none()
	if err := b.c.LeaveGroup(ctx, "crew"); err != nil {
		t.Fatal(err)
	}
	waitFor15(t, "bob gone from crew on n3", func() bool { m, _ := n3.srv.im.dir.isMember("crew", bob.ID); return !m })
	c.send(client.Group("crew"), "without bob")
	a.expect("carol", "without bob")
	b.none()

	// Bob goes offline: 7000 again from every node.
	b.c.Close()
	waitFor15(t, "bob offline everywhere", func() bool {
		return !n1.srv.Online(bob.ID) && !n2.srv.Online(bob.ID) && !n3.srv.Online(bob.ID)
	})
	if ack := c.send(client.User(bob.ID), "bob?"); ack.Code != wire.CodeOffline {
		t.Fatalf("to bob gone: code %d, want 7000", ack.Code)
	}
}

// A delayed message sent on n1 to a user on n2 arrives when due.
func TestClusterNativeDelayed(t *testing.T) {
	nodes := startTestCluster(t, 2, nil)
	register(t, nodes[0].srv, "dee", "")
	eve := register(t, nodes[0].srv, "eve", "")
	waitFor15(t, "eve on n2", func() bool { _, ok := nodes[1].srv.LookupAccount(eve.ID, ""); return ok })
	d := dialUserAt(t, "dee", nodes[0].nativeAddr())
	e := dialUserAt(t, "eve", nodes[1].nativeAddr())
	waitInterest(t, nodes, "n2", inboxTopic(eve.ID))
	ctx, cancel := contextWithTimeout()
	defer cancel()
	start := time.Now()
	if _, err := d.c.Publish(ctx, client.Publish{To: client.User(eve.ID), Body: []byte("later"), Delay: time.Second}); err != nil && !client.Accepted(err) {
		t.Fatal(err)
	}
	e.expect("dee", "later")
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Fatalf("delayed message after %v, want about 1s", el)
	}
}

// A user who never logged in has a session from registration, on the node
// that registered them: a private message and a group message sent from
// other nodes wait in it (7000), and no other node makes a copy; the first
// login, on a third node, takes it with both messages, once each.
func TestClusterNeverLoggedInUserGetsQueued(t *testing.T) {
	nodes := startTestCluster(t, 3, nil)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	ivy := register(t, n2.srv, "ivy", "")
	register(t, n3.srv, "joe", "")
	for _, n := range nodes {
		waitFor15(t, "accounts on "+n.name, func() bool { _, ok := n.srv.LookupAccount(0, "joe"); return ok })
	}
	waitInterest(t, nodes, "n2", inboxTopic(ivy.ID))
	j := dialUserAt(t, "joe", n3.nativeAddr())
	ctx, cancel := contextWithTimeout()
	defer cancel()
	if _, err := j.c.CreateGroup(ctx, "club"); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.srv.JoinGroup(ctx, "club", ivy.ID); err != nil {
		t.Fatal(err)
	}
	waitInterest(t, nodes, "n2", groupTopic("club"))
	if ack := j.send(client.User(ivy.ID), "private"); ack.Code != wire.CodeOffline {
		t.Fatalf("to ivy, never logged in: code %d, want 7000", ack.Code)
	}
	j.send(client.Group("club"), "to the club")
	for _, n := range []*cnode{n1, n3} {
		if n.srv.sessions.lookup(nativeKey(ivy.ID)) != nil {
			t.Fatalf("%s made a session for ivy", n.name)
		}
	}
	i := dialUserAt(t, "ivy", n1.nativeAddr())
	got := map[string]int{}
	for range 2 {
		m := i.next()
		got[string(m.Body)]++
	}
	if got["private"] != 1 || got["to the club"] != 1 {
		t.Fatalf("ivy got %v", got)
	}
	i.none()
	if n2.srv.sessions.lookup(nativeKey(ivy.ID)) != nil {
		t.Fatal("n2 still holds ivy's session")
	}
}

// A native user who logs in on another node (and back, and there again)
// while private messages keep coming for them gets every one the sender
// had acknowledged: on a connection before it was taken over, or on the
// last one.
func TestClusterNativeTakeoverUnderLoad(t *testing.T) {
	nodes := startTestCluster(t, 2, nil)
	n1, n2 := nodes[0], nodes[1]
	register(t, n1.srv, "sender", "")
	bob := register(t, n1.srv, "mover", "")
	waitFor15(t, "accounts on n2", func() bool { _, ok := n2.srv.LookupAccount(bob.ID, ""); return ok })
	a := dialUserAt(t, "sender", n1.nativeAddr())
	old := dialUserAt(t, "mover", n1.nativeAddr())
	stream := startAckedStream(t, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
		defer cancel()
		if _, err := a.c.Send(ctx, client.User(bob.ID), []byte(strconv.Itoa(i))); err != nil && !client.Accepted(err) {
			return err
		}
		return nil
	})
	stream.waitMore(200)
	closed := []chan *client.Message{old.msgs}
	var last *sdkUser
	for _, n := range []*cnode{n2, n1, n2} { // and back, and there again
		if last != nil {
			closed = append(closed, last.msgs)
		}
		last = dialUserAt(t, "mover", n.nativeAddr())
		stream.waitMore(300)
	}
	total := stream.end()
	expectEvery(t, total, func(m *client.Message) []byte { return m.Body }, closed, last.msgs)
}
