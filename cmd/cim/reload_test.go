package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/crypto/bcrypt"
)

// logSink collects a child's stderr; safe to poll.
type logSink struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *logSink) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), sub)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func writePasswd(t *testing.T, path string, users map[string]string) {
	t.Helper()
	var b strings.Builder
	for u, p := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", u, h)
	}
	writeAtomically(t, path, b.String())
}

// writeAtomically replaces path (as an editor or config management would),
// so a reload never reads half a file.
func writeAtomically(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func loginClient(addr, id, user, pass string, lost *atomic.Int32, onMsg mqtt3.MessageHandler) mqtt3.Client {
	o := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetUsername(user).SetPassword(pass).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(10 * time.Second).SetKeepAlive(30 * time.Second).
		SetDefaultPublishHandler(onMsg).
		SetConnectionLostHandler(func(mqtt3.Client, error) {
			if lost != nil {
				lost.Add(1)
			}
		})
	return mqtt3.NewClient(o)
}

// buildCim builds the real binary (main's signal handling included).
func buildCim(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cim")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	return bin
}

func waitLog(t *testing.T, s *logSink, sub string, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for s.count(sub) < n {
		if time.Now().After(deadline) {
			t.Fatalf("no %q (x%d) in the server's log:\n%s", sub, n, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestReloadUnderLoad runs a real `cim server` process, reloads it with
// SIGHUP while a publisher streams QoS 1 messages to a subscriber, and
// checks that: a user removed from the password file is refused at the
// next connect while connected clients are untouched (no loss, no
// disconnect); the rotated TLS certificate is served; the new limits and
// log level apply; a bad config is refused and the process keeps the last
// good one; SIGTERM still stops it cleanly.
func TestReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a broker process")
	}
	ca := newTestCA(t)
	cert, key := ca.serverFiles("first")
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	writePasswd(t, pw, map[string]string{"alice": "a-pass", "bob": "b-pass", "carol": "c-pass"})
	cfgPath := filepath.Join(dir, "cim.yaml")
	base := fmt.Sprintf("password_file: %s\ntls_cert: %s\ntls_key: %s\nadmin_token: 0123456789abcdef-first\n", pw, cert, key)
	writeAtomically(t, cfgPath, base+"log_level: info\n")
	mqttAddr, httpAddr, tlsAddr, wssAddr := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)

	sink := &logSink{}
	cmd := exec.Command(buildCim(t), "server", "--config", cfgPath, "--memory", "--native-addr", "127.0.0.1:0", "--mqtt-addr", mqttAddr, "--http-addr", httpAddr,
		"--tls-addr", tlsAddr, "--wss-addr", wssAddr)
	cmd.Stderr = sink
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
		}
	})
	get := func(path, token string) int {
		req, _ := http.NewRequest("GET", "http://"+httpAddr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	deadline := time.Now().Add(15 * time.Second)
	for get("/readyz", "") != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("not ready:\n%s", sink)
		}
		time.Sleep(20 * time.Millisecond)
	}
	servedCN := func() string {
		c, err := tls.Dial("tcp", tlsAddr, ca.clientConfig())
		if err != nil {
			t.Fatalf("tls dial: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if cn := servedCN(); cn != "first" {
		t.Fatalf("served %q", cn)
	}

	// Load: bob publishes QoS 1 to alice as fast as acks come back.
	var lost atomic.Int32
	var received atomic.Int64
	alice := loginClient(mqttAddr, "alice-sub", "alice", "a-pass", &lost, func(mqtt3.Client, mqtt3.Message) { received.Add(1) })
	must(t, alice.Connect())
	must(t, alice.Subscribe("load/#", 1, nil))
	carol := loginClient(mqttAddr, "carol-idle", "carol", "c-pass", &lost, nil)
	must(t, carol.Connect())
	bob := loginClient(mqttAddr, "bob-pub", "bob", "b-pass", &lost, nil)
	must(t, bob.Connect())
	var acked atomic.Int64
	stop := make(chan struct{})
	loadDone := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				loadDone <- nil
				return
			default:
			}
			tok := bob.Publish(fmt.Sprintf("load/%d", i%8), 1, false, "m")
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				loadDone <- fmt.Errorf("publish %d: %v", i, tok.Error())
				return
			}
			acked.Add(1)
		}
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("load flowing", func() bool { return received.Load() > 200 })

	// Reload: bob revoked, certificate rotated, a limit and a new token.
	writePasswd(t, pw, map[string]string{"alice": "a-pass", "carol": "c-pass"})
	ca.serverFiles("second")
	writeAtomically(t, cfgPath, strings.Replace(base, "first\n", "second\n", 1)+"log_level: debug\nmax_subscriptions_per_client: 1\n")
	before := received.Load()
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, sink, "configuration reloaded", 1)
	waitFor("load flowing after the reload", func() bool { return received.Load() > before+200 })

	if c := loginClient(mqttAddr, "bob-again", "bob", "b-pass", nil, nil); c.Connect().WaitTimeout(10*time.Second) && c.IsConnected() {
		t.Fatal("bob, removed from the password file, connected after the reload")
	}
	a2 := loginClient(mqttAddr, "alice-2", "alice", "a-pass", nil, nil)
	must(t, a2.Connect())
	must(t, a2.Subscribe("one", 0, nil))
	if tok := a2.Subscribe("two", 0, nil); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
		if st := tok.(*mqtt3.SubscribeToken).Result()["two"]; st != 0x80 {
			t.Fatalf("second filter over max_subscriptions_per_client 1: SUBACK %#x", st)
		}
	}
	a2.Disconnect(100)
	if cn := servedCN(); cn != "second" {
		t.Fatalf("after reload served %q, want the rotated certificate", cn)
	}
	if get("/v1/admin/clients", "0123456789abcdef-first") != 401 || get("/v1/admin/clients", "0123456789abcdef-second") != 200 {
		t.Fatal("admin token not swapped")
	}
	waitLog(t, sink, "level=DEBUG", 1) // the new log level is in force (a2's subscribe refusal or closing logs)

	// Bad configs are refused; the last good one stays.
	writeAtomically(t, pw, "mallory:plaintext\n")
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, sink, "reload refused", 1)
	writePasswd(t, pw, map[string]string{"alice": "a-pass", "carol": "c-pass"})
	writeAtomically(t, cfgPath, "max_connections: lots\n")
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, sink, "reload refused", 2)
	writeAtomically(t, cert, "garbage")
	writeAtomically(t, cfgPath, strings.Replace(base, "first\n", "second\n", 1))
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, sink, "reload refused", 3)
	if get("/healthz", "") != 200 {
		t.Fatal("not alive after bad reloads")
	}
	if cn := servedCN(); cn != "second" {
		t.Fatalf("after a bad certificate served %q", cn)
	}
	if c := loginClient(mqttAddr, "bob-3", "bob", "b-pass", nil, nil); c.Connect().WaitTimeout(10*time.Second) && c.IsConnected() {
		t.Fatal("bob connected after a refused reload")
	}
	a3 := loginClient(mqttAddr, "alice-3", "alice", "a-pass", nil, nil)
	must(t, a3.Connect())
	a3.Disconnect(100)

	// Connected clients were untouched: nothing lost, nobody dropped.
	close(stop)
	if err := <-loadDone; err != nil {
		t.Fatal(err)
	}
	waitFor("every acked message delivered", func() bool { return received.Load() == acked.Load() })
	if n := lost.Load(); n != 0 || !carol.IsConnectionOpen() || !bob.IsConnectionOpen() {
		t.Fatalf("%d connections lost during reloads (carol open %v, bob open %v)", n, carol.IsConnectionOpen(), bob.IsConnectionOpen())
	}
	t.Logf("%d QoS 1 messages through 4 reloads, none lost", acked.Load())
	alice.Disconnect(100)
	bob.Disconnect(100)
	carol.Disconnect(100)

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, sink)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}
