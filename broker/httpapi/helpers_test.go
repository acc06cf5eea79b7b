package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cimgo/cim/broker"
	"github.com/cimgo/cim/storage"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

const wait = 10 * time.Second

func testLogger() *slog.Logger {
	level := slog.LevelError
	if os.Getenv("CIM_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// env is a started broker (with a store in a temp dir) and its API
// served on an ephemeral port.
type env struct {
	t   testing.TB
	srv *broker.Server
	api *API
	web *httptest.Server
	db  *storage.DB
}

func newEnv(t testing.TB, o Options) *env {
	t.Helper()
	db, err := storage.Open(t.TempDir(), storage.Options{Durability: storage.Async, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := broker.New(broker.Options{MQTTAddr: "127.0.0.1:0", SysInterval: -1, Logger: testLogger(), Store: db})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	o.Logger = testLogger()
	api, err := New(srv, o)
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(api.Handler())
	e := &env{t: t, srv: srv, api: api, web: web, db: db}
	t.Cleanup(func() {
		web.CloseClientConnections()
		web.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		db.Close()
	})
	return e
}

// do sends a request and returns the status and body.
func (e *env) do(method, path, token, body string) (int, http.Header, string) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.web.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// wantError checks a JSON error answer.
func wantError(t testing.TB, status int, body string, wantStatus int, wantCode string) Error {
	t.Helper()
	var e Error
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	if status != wantStatus || e.Code != wantCode || e.Message == "" {
		t.Fatalf("got %d %+v, want %d with code %q and a message", status, e, wantStatus, wantCode)
	}
	return e
}

// mqttClient is a Paho v5 client with a channel of what it receives.
type mqttClient struct {
	cli  *paho.Client
	conn net.Conn
	msgs chan *paho.Publish
	disc chan *paho.Disconnect
}

func connect(t testing.TB, conn net.Conn, id string) *mqttClient {
	t.Helper()
	c := &mqttClient{conn: conn, msgs: make(chan *paho.Publish, 100), disc: make(chan *paho.Disconnect, 1)}
	c.cli = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn), // whole packets only (broker/bridge_test.go)
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- pr.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { c.disc <- d },
		PacketTimeout:      wait,
	})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if ack, err := c.cli.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatalf("connect %s: %v %+v", id, err, ack)
	}
	t.Cleanup(func() { _ = c.cli.Disconnect(&paho.Disconnect{}); conn.Close() })
	return c
}

func dialTCP(t testing.TB, srv *broker.Server, id string) *mqttClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", srv.Addr().String(), wait)
	if err != nil {
		t.Fatal(err)
	}
	return connect(t, conn, id)
}

func (c *mqttClient) subscribe(t testing.TB, filter string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := c.cli.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}}); err != nil {
		t.Fatal(err)
	}
}

func (c *mqttClient) publish(t testing.TB, topic, payload string, qos byte, retain bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := c.cli.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain}); err != nil {
		t.Fatal(err)
	}
}

func (c *mqttClient) expect(t testing.TB, topic, payload string) {
	t.Helper()
	select {
	case m := <-c.msgs:
		if m.Topic != topic || string(m.Payload) != payload {
			t.Fatalf("got %s %q, want %s %q", m.Topic, m.Payload, topic, payload)
		}
	case <-time.After(wait):
		t.Fatalf("no message on %s", topic)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
