package main

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cimgo/cim/broker/wire"
	cimclient "github.com/cimgo/cim/client"
)

// The native protocol over TLS: a client trusting the test CA logs in on
// native_tls_addr and gets its own message back; a client that does not
// trust the CA fails its handshake.
func TestNativeOverTLS(t *testing.T) {
	ca := newTestCA(t)
	cert, key := ca.serverFiles("native")
	httpAddr, nativeTLS := freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	var errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runServer(ctx, []string{"--memory", "--mqtt-addr", "127.0.0.1:0", "--native-addr", "127.0.0.1:0",
			"--http-addr", httpAddr, "--tls-cert", cert, "--tls-key", key, "--tls-addr", "127.0.0.1:0",
			"--wss-addr", "127.0.0.1:0", "--native-tls-addr", nativeTLS, "--log-level", "info"}, &errb, &errb)
	}()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("exit %d: %s", code, errb.String())
			}
		case <-time.After(15 * time.Second):
			t.Error("server did not stop")
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(errb.String(), "native tls listening") || !strings.Contains(errb.String(), "http listening") {
		if time.Now().After(deadline) {
			t.Fatalf("not listening: %s", errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	u, err := cimclient.Register(cctx, nil, "http://"+httpAddr, "tls-user", "")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *cimclient.Message, 1)
	c, err := cimclient.Dial(cctx, cimclient.Options{UserName: "tls-user", Addrs: []string{nativeTLS}, TLSConfig: ca.clientConfig(),
		OnMessage: func(m *cimclient.Message) { got <- m }})
	if err != nil {
		t.Fatalf("dial over tls: %v\n%s", err, errb.String())
	}
	defer c.Close()
	ack, err := c.Send(cctx, cimclient.User(u.ID), []byte("over tls"))
	if err != nil || ack.Code != wire.CodeOK {
		t.Fatalf("send: %+v %v", ack, err)
	}
	select {
	case m := <-got:
		if string(m.Body) != "over tls" || m.From != u.ID {
			t.Fatalf("got %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no message over tls")
	}

	_, err = cimclient.Dial(cctx, cimclient.Options{UserName: "tls-user", Addrs: []string{nativeTLS}, TLSConfig: &tls.Config{ServerName: "127.0.0.1"}, RetryLimit: 1})
	var unknown *tls.CertificateVerificationError
	if !errors.As(err, &unknown) {
		t.Fatalf("untrusted CA: %v, want a certificate verification error", err)
	}
}
