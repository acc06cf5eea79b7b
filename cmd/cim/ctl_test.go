package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cimgo/cim/broker"
	"github.com/cimgo/cim/broker/httpapi"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

const ctlToken = "ctl-test-token-0123456789"

// ctlEnv is a broker with its admin API for cim ctl to talk to.
func ctlEnv(t *testing.T) (*broker.Server, string) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := broker.New(broker.Options{MQTTAddr: "127.0.0.1:0", SysInterval: -1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.New(srv, httpapi.Options{AdminToken: ctlToken, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(api.Handler())
	t.Cleanup(func() {
		web.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv, web.URL
}

func ctlRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runCtl(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCtl(t *testing.T) {
	srv, url := ctlEnv(t)
	got := make(chan string, 10)
	sub := mqtt3.NewClient(mqtt3.NewClientOptions().AddBroker("tcp://" + srv.Addr().String()).SetClientID("sensor-7").
		SetAutoReconnect(false).SetConnectRetry(false).
		SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) { got <- m.Topic() + " " + string(m.Payload()) }))
	must(t, sub.Connect())
	defer sub.Disconnect(100)
	must(t, sub.Subscribe("cmd/#", 1, nil))
	g := []string{"--api", url, "--token", ctlToken}

	code, out, errs := ctlRun(t, append(g, "clients")...)
	if code != 0 || !strings.Contains(out, "PROTOCOL") || !strings.Contains(out, "sensor-7") || !strings.Contains(out, "tcp") {
		t.Fatalf("clients: %d %q %q", code, out, errs)
	}
	code, out, _ = ctlRun(t, append(g, "--json", "clients")...)
	var cl httpapi.Clients
	if err := json.Unmarshal([]byte(out), &cl); code != 0 || err != nil || len(cl.Clients) != 1 || cl.Clients[0].Subscriptions != 1 {
		t.Fatalf("clients --json: %d %s %v", code, out, err)
	}
	code, out, _ = ctlRun(t, append(g, "subs", "sensor-7")...)
	if code != 0 || !strings.Contains(out, "cmd/#") {
		t.Fatalf("subs: %d %s", code, out)
	}
	// Flags after the positional arguments, and a message starting with a dash after --.
	code, out, errs = ctlRun(t, append(g, "publish", "cmd/led", "on", "--qos", "1", "--retain")...)
	if code != 0 || !strings.Contains(out, "1 matching session") {
		t.Fatalf("publish: %d %q %q", code, out, errs)
	}
	if m := <-got; m != "cmd/led on" {
		t.Fatalf("received %q", m)
	}
	if code, _, errs := ctlRun(t, append(g, "publish", "cmd/x", "--", "-1")...); code != 0 {
		t.Fatalf("publish -1: %s", errs)
	}
	if m := <-got; m != "cmd/x -1" {
		t.Fatalf("received %q", m)
	}
	code, out, _ = ctlRun(t, append(g, "retained")...)
	if code != 0 || !strings.Contains(out, "cmd/led") || !strings.Contains(out, `"on"`) {
		t.Fatalf("retained: %d %s", code, out)
	}
	code, out, _ = ctlRun(t, append(g, "retained", "other/#")...)
	if code != 0 || strings.Contains(out, "cmd/led") {
		t.Fatalf("retained other/#: %d %s", code, out)
	}
	if code, _, errs := ctlRun(t, append(g, "retained", "--delete", "cmd/led")...); code != 0 {
		t.Fatalf("retained --delete: %s", errs)
	}
	if list, _ := srv.Retained("#"); len(list) != 0 {
		t.Fatalf("retained after delete: %+v", list)
	}
	code, out, _ = ctlRun(t, append(g, "kick", "sensor-7")...)
	if code != 0 || !strings.Contains(out, "kicked sensor-7") {
		t.Fatalf("kick: %d %s", code, out)
	}
	waitForCond(t, "kicked client offline", func() bool {
		cs := srv.Clients()
		return len(cs) == 0 || !cs[0].Connected
	})

	// Refusals from the node: exit 1 with its code and message.
	for _, c := range []struct {
		args []string
		want string
	}{
		{append(g, "kick", "sensor-7"), `404 Not Found: no_such_client: no connected mqtt client "sensor-7"`},
		{append(g, "subs", "ghost", "--protocol", "native"), "no_such_client"},
		{append(g, "retained", "--delete", "cmd/led"), "no_such_retained"},
		{append(g, "publish", "a/+", "x"), "bad_request"},
		{[]string{"--api", url, "clients"}, "401 Unauthorized: unauthorized: missing or wrong bearer token (give --token or set CIM_ADMIN_TOKEN)"},
		{[]string{"--api", url, "--token", "wrong", "clients"}, "401"},
		{[]string{"--api", "http://127.0.0.1:1", "clients"}, "cannot reach http://127.0.0.1:1"},
	} {
		code, _, errs := ctlRun(t, c.args...)
		if code != 1 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d: %q, want %q", c.args, code, errs, c.want)
		}
	}
	// Bad usage: exit 2.
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "usage: cim ctl"},
		{append(g, "frobnicate"), `unknown command "frobnicate"`},
		{append(g, "kick"), "cim ctl kick ID: want one client id"},
		{append(g, "publish", "t"), "cim ctl publish TOPIC MSG"},
		{append(g, "publish", "t", "m", "--qos", "3"), "--qos: want 0, 1 or 2"},
		{append(g, "clients", "extra"), "cim ctl clients: takes no arguments"},
		{append(g, "subs", "x", "--protocol", "smtp"), "--protocol: want mqtt or native"},
		{append(g, "publish", "t", "m", "--bogus"), "flag provided but not defined"},
		{[]string{"--api", "localhost:8083", "clients"}, "--api: want a URL"},
	} {
		code, _, errs := ctlRun(t, c.args...)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d: %q, want %q", c.args, code, errs, c.want)
		}
	}
}

func TestCtlTokenFromEnv(t *testing.T) {
	_, url := ctlEnv(t)
	t.Setenv("CIM_ADMIN_TOKEN", ctlToken)
	t.Setenv("CIM_API", url)
	if code, out, errs := ctlRun(t, "clients"); code != 0 || !strings.Contains(out, "PROTOCOL") {
		t.Fatalf("env: %d %q %q", code, out, errs)
	}
}

func waitForCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
