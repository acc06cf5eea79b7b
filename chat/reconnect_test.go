package chat_test

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cimgo/cim/broker"
	"github.com/cimgo/cim/chat"
	"github.com/cimgo/cim/client"
)

// proxy forwards TCP to a target; drop cuts every connection, as a
// network failure or a server restart does.
type proxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); io.Copy(s, c); s.Close() }()
			go func() { defer p.wg.Done(); io.Copy(c, s); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.drop(); p.wg.Wait() })
	return p
}

func (p *proxy) drop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// A lost connection is a warning line; the session reconnects by itself
// (with --addr: straight to the native port) and chats on.
func TestReconnectsWithAWarning(t *testing.T) {
	srv, hs := imServer(t)
	px := newProxy(t, srv.ListenerAddr(broker.ProtocolNative).String())
	alice := login(t, hs, "alice", func(o *chat.Options) {
		o.Addrs = []string{px.ln.Addr().String()}
		o.Password = "pw"
		o.Client = func(co *client.Options) {
			co.Backoff = client.ExponentialBackoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond}
		}
	})
	bob := login(t, hs, "bob")
	px.drop()
	alice.waitFor("warning: connection lost; reconnecting")
	alice.waitFor("* reconnected to " + px.ln.Addr().String())
	bob.send("alice;;still there?")
	alice.waitFor("bob (private)$ still there?")
	alice.send("bob;;yes")
	bob.waitFor("alice (private)$ yes")
}

// A second login of the same user takes the session over: the first
// one says so and ends with an error (exit status 1).
func TestTakenOverEndsTheSession(t *testing.T) {
	_, hs := imServer(t)
	first := login(t, hs, "alice")
	login(t, hs, "alice")
	first.waitFor("error: alice logged in elsewhere")
	select {
	case err := <-first.done:
		first.done <- err
		if chat.ExitCode(err) != chat.ExitFailure {
			t.Fatalf("taken over: %v, exit %d", err, chat.ExitCode(err))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the taken-over session did not end")
	}
}
