package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cimgo/cim/broker"
)

func TestAdminAuth(t *testing.T) {
	off := newEnv(t, Options{})
	code, _, body := off.do("GET", "/v1/admin/clients", "anything", "")
	wantError(t, code, body, 403, "admin_disabled")

	e := newEnv(t, Options{AdminToken: "s3cret"})
	code, hdr, body := e.do("GET", "/v1/admin/clients", "", "")
	wantError(t, code, body, 401, "unauthorized")
	if !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("WWW-Authenticate %q", hdr.Get("WWW-Authenticate"))
	}
	code, _, body = e.do("GET", "/v1/admin/clients", "s3cre", "")
	wantError(t, code, body, 401, "unauthorized")
	if code, _, _ := e.do("GET", "/v1/admin/clients", "s3cret", ""); code != 200 {
		t.Fatalf("right token: %d", code)
	}
	e.api.SetAdminToken("new")
	if code, _, _ := e.do("GET", "/v1/admin/clients", "s3cret", ""); code != 401 {
		t.Fatalf("old token after SetAdminToken: %d", code)
	}
	if code, _, _ := e.do("GET", "/v1/admin/clients", "new", ""); code != 200 {
		t.Fatalf("new token: %d", code)
	}
}

func TestAdminAPI(t *testing.T) {
	const tok = "tok"
	e := newEnv(t, Options{AdminToken: tok})
	sub := dialTCP(t, e.srv, "dev-1")
	sub.subscribe(t, "cmd/#", 1)
	sub.subscribe(t, "status", 0)

	code, _, body := e.do("GET", "/v1/admin/clients", tok, "")
	var cl Clients
	if err := json.Unmarshal([]byte(body), &cl); err != nil || code != 200 {
		t.Fatalf("clients: %d %s %v", code, body, err)
	}
	if len(cl.Clients) != 1 {
		t.Fatalf("clients %+v", cl)
	}
	c := cl.Clients[0]
	if c.ID != "dev-1" || c.Protocol != "mqtt" || !c.Connected || c.Remote != sub.conn.LocalAddr().String() ||
		c.Subscriptions != 2 || c.Transport != "tcp" || c.Since == nil {
		t.Fatalf("client %+v", c)
	}

	code, _, body = e.do("GET", "/v1/admin/clients/dev-1/subscriptions", tok, "")
	var subs Subscriptions
	if err := json.Unmarshal([]byte(body), &subs); err != nil || code != 200 {
		t.Fatalf("subs: %d %s", code, body)
	}
	if len(subs.Subscriptions) != 2 || subs.Subscriptions[0].Filter != "cmd/#" || subs.Subscriptions[0].QoS != 1 || subs.Subscriptions[1].Filter != "status" {
		t.Fatalf("subs %+v", subs)
	}
	code, _, body = e.do("GET", "/v1/admin/clients/nobody/subscriptions", tok, "")
	wantError(t, code, body, 404, "no_such_client")
	code, _, body = e.do("GET", "/v1/admin/clients/dev-1/subscriptions?protocol=smtp", tok, "")
	wantError(t, code, body, 400, "bad_request")

	// Publish: text and base64, retained.
	code, _, body = e.do("POST", "/v1/admin/publish", tok, `{"topic":"cmd/reboot","payload":"now","qos":1}`)
	if code != 200 || !strings.Contains(body, `"matched": 1`) {
		t.Fatalf("publish: %d %s", code, body)
	}
	sub.expect(t, "cmd/reboot", "now")
	code, _, body = e.do("POST", "/v1/admin/publish", tok, `{"topic":"status","payload_base64":"AAEC/w==","retain":true}`)
	if code != 200 {
		t.Fatalf("publish base64: %d %s", code, body)
	}
	sub.expect(t, "status", "\x00\x01\x02\xff")
	e.do("POST", "/v1/admin/publish", tok, `{"topic":"status/text","payload":"up","retain":true}`)
	for _, bad := range []string{`{"topic":"a/+","payload":"x"}`, `{"topic":"","payload":"x"}`, `{"topic":"a","qos":3}`,
		`{"topic":"a","payload":"x","payload_base64":"eA=="}`, `{"topic":"a","payload_base64":"!!"}`} {
		code, _, body = e.do("POST", "/v1/admin/publish", tok, bad)
		wantError(t, code, body, 400, "bad_request")
	}

	// Retained: list, filter, delete.
	code, _, body = e.do("GET", "/v1/admin/retained", tok, "")
	var rl RetainedList
	if err := json.Unmarshal([]byte(body), &rl); err != nil || code != 200 {
		t.Fatalf("retained: %d %s", code, body)
	}
	if len(rl.Retained) != 2 || rl.Retained[0].Topic != "status" || rl.Retained[0].Payload != nil ||
		rl.Retained[0].PayloadBase64 != "AAEC/w==" || rl.Retained[1].Payload == nil || *rl.Retained[1].Payload != "up" {
		t.Fatalf("retained %+v", rl)
	}
	code, _, body = e.do("GET", "/v1/admin/retained?filter=status/%2B", tok, "")
	if json.Unmarshal([]byte(body), &rl); code != 200 || len(rl.Retained) != 1 || rl.Retained[0].Topic != "status/text" {
		t.Fatalf("filtered: %d %s", code, body)
	}
	code, _, body = e.do("GET", "/v1/admin/retained?filter=a/%23/b", tok, "")
	wantError(t, code, body, 400, "bad_request")
	if code, _, _ := e.do("DELETE", "/v1/admin/retained?topic=status", tok, ""); code != 200 {
		t.Fatalf("delete: %d", code)
	}
	code, _, body = e.do("DELETE", "/v1/admin/retained?topic=status", tok, "")
	wantError(t, code, body, 404, "no_such_retained")
	code, _, body = e.do("DELETE", "/v1/admin/retained", tok, "")
	wantError(t, code, body, 400, "bad_request")
	if list, _ := e.srv.Retained("#"); len(list) != 1 {
		t.Fatalf("retained after delete: %+v", list)
	}

	// Kick: MQTT 5 DISCONNECT 0x98; then the client is gone.
	if code, _, body := e.do("POST", "/v1/admin/clients/dev-1/kick", tok, ""); code != 200 {
		t.Fatalf("kick: %d %s", code, body)
	}
	select {
	case d := <-sub.disc:
		if d.ReasonCode != 0x98 {
			t.Fatalf("DISCONNECT %#x, want 0x98", d.ReasonCode)
		}
	case <-time.After(wait):
		t.Fatal("no DISCONNECT after kick")
	}
	waitFor(t, "kicked client offline", func() bool {
		cs := e.srv.Clients()
		return len(cs) == 0 || !cs[0].Connected
	})
	code, _, body = e.do("POST", "/v1/admin/clients/dev-1/kick", tok, "")
	wantError(t, code, body, 404, "no_such_client")
	code, _, body = e.do("POST", "/v1/admin/clients/dev-1/kick?protocol="+broker.ProtocolNative, tok, "")
	wantError(t, code, body, 404, "no_such_client")
}
