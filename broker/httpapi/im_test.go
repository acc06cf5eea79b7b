package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cimgo/cim/broker"
	"github.com/cimgo/cim/client"
	"github.com/cimgo/cim/storage"
	"github.com/cockroachdb/pebble/vfs"
)

// imServer runs a broker (MQTT and native on ephemeral ports, a store in
// memory) and the IM API in front of it.
func imServer(t *testing.T) (*broker.Server, *httptest.Server) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := storage.Open("data", storage.Options{FS: vfs.NewMem(), SweepInterval: -1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := broker.New(broker.Options{MQTTAddr: "127.0.0.1:0", NativeAddr: "127.0.0.1:0", Store: db, SysInterval: -1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(nil)
	api, err := New(srv, Options{Addr: hs.Listener.Addr().String(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	hs.Config.Handler = api.Handler()
	hs.Start()
	t.Cleanup(func() {
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = db.Close()
	})
	return srv, hs
}

// call sends a request and decodes cim's envelope.
func call(t *testing.T, hs *httptest.Server, method, path, body string) (code string, msg string, data json.RawMessage) {
	t.Helper()
	req, err := http.NewRequest(method, hs.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: status %d: %s", method, path, resp.StatusCode, raw)
	}
	var env struct {
		Code     string          `json:"code"`
		Message  string          `json:"message"`
		DataBody json.RawMessage `json:"dataBody"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("%s %s: %v: %s", method, path, err, raw)
	}
	return env.Code, env.Message, env.DataBody
}

// cim's route API with cim's bodies: register (idempotent), login naming
// the node, private messages (7000 while offline), group chat, online
// users, offline, and the refusals.
func TestCimRouteAPI(t *testing.T) {
	_, hs := imServer(t)
	code, _, data := call(t, hs, "POST", "/registerAccount", `{"reqNo":"1","timeStamp":1,"userName":"zhang"}`)
	var zhang struct {
		UserID   uint64 `json:"userId"`
		UserName string `json:"userName"`
	}
	if err := json.Unmarshal(data, &zhang); code != "9000" || err != nil || zhang.UserID == 0 || zhang.UserName != "zhang" {
		t.Fatalf("register: %s %s", code, data)
	}
	_, _, again := call(t, hs, "POST", "/registerAccount", `{"userName":"zhang"}`)
	if !bytes.Equal(again, data) {
		t.Fatalf("register again: %s, first %s", again, data)
	}
	_, _, liData := call(t, hs, "POST", "/registerAccount", `{"userName":"li"}`)
	var li struct {
		UserID uint64 `json:"userId"`
	}
	_ = json.Unmarshal(liData, &li)

	code, _, route := call(t, hs, "POST", "/login", `{"userId":`+jsonNum(zhang.UserID)+`,"userName":"zhang"}`)
	var addr struct {
		IP            string `json:"ip"`
		CimServerPort int    `json:"cimServerPort"`
		HTTPPort      int    `json:"httpPort"`
	}
	if err := json.Unmarshal(route, &addr); code != "9000" || err != nil || addr.CimServerPort == 0 {
		t.Fatalf("login: %s %s", code, route)
	}
	if code, _, _ := call(t, hs, "POST", "/login", `{"userId":`+jsonNum(zhang.UserID)+`,"userName":"wang"}`); code != "9100" {
		t.Fatalf("login with a name of another account: %s", code)
	}

	if code, _, _ := call(t, hs, "POST", "/p2pRoute", `{"userId":`+jsonNum(zhang.UserID)+`,"receiveUserId":`+jsonNum(li.UserID)+`,"msg":"hi li"}`); code != "7000" {
		t.Fatalf("p2p to an offline user: %s, want 7000", code)
	}
	got := make(chan *client.Message, 10)
	c, err := client.Dial(context.Background(), client.Options{APIURL: hs.URL, UserName: "li", RetryLimit: 1,
		OnMessage: func(m *client.Message) { got <- m }})
	if err != nil {
		t.Fatalf("SDK through /login: %v", err)
	}
	defer c.Close()
	if m := recv(t, got); string(m.Body) != "hi li" || !m.Offline || m.FromName != "zhang" {
		t.Fatalf("offline message %+v", m)
	}
	if code, _, _ := call(t, hs, "POST", "/p2pRoute", `{"userId":`+jsonNum(zhang.UserID)+`,"receiveUserId":`+jsonNum(li.UserID)+`,"msg":"one","batchMsg":["two","three"]}`); code != "9000" {
		t.Fatalf("p2p to an online user: %s", code)
	}
	for _, want := range []string{"one", "two", "three"} {
		if m := recv(t, got); string(m.Body) != want {
			t.Fatalf("batch: got %q, want %q", m.Body, want)
		}
	}
	if code, _, _ := call(t, hs, "POST", "/groupRoute", `{"userId":`+jsonNum(zhang.UserID)+`,"msg":"to everyone"}`); code != "9000" {
		t.Fatalf("group route: %s", code)
	}
	if m := recv(t, got); string(m.Body) != "to everyone" {
		t.Fatalf("group chat: %+v", m)
	}
	_, _, online := call(t, hs, "GET", "/onlineUser", "")
	if !strings.Contains(string(online), `"userName":"li"`) || strings.Contains(string(online), "zhang") {
		t.Fatalf("online users: %s", online)
	}
	if code, _, _ := call(t, hs, "POST", "/fetchOfflineMsgs", `{"receiveUserId":`+jsonNum(li.UserID)+`}`); code != "9000" {
		t.Fatalf("fetch offline: %s", code)
	}
	if code, _, _ := call(t, hs, "POST", "/offLine", `{"userId":`+jsonNum(li.UserID)+`}`); code != "9000" {
		t.Fatalf("offline: %s", code)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("/offLine did not log the user out")
	}

	for _, tc := range []struct{ path, body, code, msg string }{
		{"/registerAccount", `{"userName":`, "3000", "bad JSON"},
		{"/registerAccount", `{}`, "3000", "userName is required"},
		{"/registerAccount", `{"userName":17}`, "3000", "userName"},
		{"/p2pRoute", `{"userId":1}`, "3000", "receiveUserId is required"},
		{"/p2pRoute", `{"userId":` + jsonNum(zhang.UserID) + `,"receiveUserId":` + jsonNum(li.UserID) + `}`, "3000", "msg or batchMsg is required"},
		{"/p2pRoute", `{"userId":` + jsonNum(zhang.UserID) + `,"receiveUserId":` + jsonNum(li.UserID) + `,"msg":""}`, "3006", "msg"},
		{"/groupRoute", `{"userId":` + jsonNum(zhang.UserID) + `}`, "3000", "msg is required"},
		{"/groupRoute", `{"userId":` + jsonNum(zhang.UserID) + `,"msg":" "}`, "3006", "msg"},
		{"/p2pRoute", `{"userId":` + jsonNum(zhang.UserID) + `,"receiveUserId":424242,"msg":"x"}`, "3005", ""},
		{"/p2pRoute", `{"userId":"x","receiveUserId":2,"msg":"m"}`, "3000", "userId"},
		{"/groupRoute", `{"userId":999999,"msg":"m"}`, "9100", ""},
	} {
		code, msg, _ := call(t, hs, "POST", tc.path, tc.body)
		if code != tc.code || !strings.Contains(msg, tc.msg) {
			t.Errorf("%s %.40s: %s %q, want %s %q", tc.path, tc.body, code, msg, tc.code, tc.msg)
		}
	}

	// Over the API's body bound: 413 when the length is declared, cim's
	// 3000 when a chunked body runs over.
	big := `{"userName":"` + strings.Repeat("n", 2<<20) + `"}`
	resp, err := hs.Client().Post(hs.URL+"/registerAccount", "application/json", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("declared oversized body: status %d, want 413", resp.StatusCode)
	}
	resp, err = hs.Client().Post(hs.URL+"/registerAccount", "application/json", io.MultiReader(strings.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(raw), `"code":"3000"`) || !strings.Contains(string(raw), "body over") {
		t.Errorf("chunked oversized body: %d %s, want code 3000 body over", resp.StatusCode, raw)
	}
}

// The /v1 API: accounts, messages, online users, history, groups, delayed.
func TestV1API(t *testing.T) {
	_, hs := imServer(t)
	id := func(data json.RawMessage) string {
		var v struct {
			ID uint64 `json:"id"`
		}
		_ = json.Unmarshal(data, &v)
		return jsonNum(v.ID)
	}
	_, _, a := call(t, hs, "POST", "/v1/accounts", `{"name":"ana","password":"pw"}`)
	_, _, b := call(t, hs, "POST", "/v1/accounts", `{"name":"bo"}`)
	ana, bo := id(a), id(b)
	if code, _, data := call(t, hs, "POST", "/v1/messages", `{"from":`+ana+`,"to":"user:`+bo+`","bodies":["m1","m2"]}`); code != "9000" ||
		strings.Count(string(data), `"code":"7000"`) != 2 {
		t.Fatalf("send to offline: %s %s", code, data)
	}
	code, _, hist := call(t, hs, "GET", "/v1/history?user="+bo+"&with=user:"+ana+"&limit=10", "")
	if code != "9000" || strings.Index(string(hist), "m2") > strings.Index(string(hist), "m1") || !strings.Contains(string(hist), `"fromName":"ana"`) {
		t.Fatalf("history (newest first): %s %s", code, hist)
	}
	if code, _, hits := call(t, hs, "GET", "/v1/history?user="+bo+"&q=M2", ""); code != "9000" || !strings.Contains(string(hits), `"body":"m2"`) || strings.Contains(string(hits), `"body":"m1"`) {
		t.Fatalf("search: %s %s", code, hits)
	}
	if code, _, g := call(t, hs, "POST", "/v1/groups", `{"name":"team","owner":`+ana+`}`); code != "9000" || !strings.Contains(string(g), `"members":1`) {
		t.Fatalf("create group: %s %s", code, g)
	}
	if code, _, _ := call(t, hs, "POST", "/v1/groups", `{"name":"team","owner":`+ana+`}`); code != "3012" {
		t.Fatalf("create twice: %s", code)
	}
	if code, _, _ := call(t, hs, "POST", "/v1/groups/team/members", `{"user":`+bo+`}`); code != "9000" {
		t.Fatalf("join: %s", code)
	}
	if _, _, m := call(t, hs, "GET", "/v1/groups/team/members", ""); strings.Count(string(m), `"id"`) != 2 {
		t.Fatalf("members: %s", m)
	}
	if _, _, g := call(t, hs, "GET", "/v1/users/"+bo+"/groups", ""); !strings.Contains(string(g), `"name":"team"`) {
		t.Fatalf("user groups: %s", g)
	}
	if code, _, _ := call(t, hs, "DELETE", "/v1/groups/team/members/"+bo, ""); code != "9000" {
		t.Fatalf("leave: %s", code)
	}
	if code, _, _ := call(t, hs, "DELETE", "/v1/groups/team/members/"+bo, ""); code != "3013" {
		t.Fatalf("leave twice: %s", code)
	}
	if code, _, _ := call(t, hs, "POST", "/v1/messages", `{"from":`+ana+`,"to":"all","body":"later","delayMs":60000}`); code != "9000" {
		t.Fatalf("delayed: %s", code)
	}
	if _, _, d := call(t, hs, "GET", "/v1/delayed?user="+ana, ""); !strings.Contains(string(d), `"body":"later"`) {
		t.Fatalf("delayed list: %s", d)
	}
	if _, _, o := call(t, hs, "GET", "/v1/online", ""); !strings.Contains(string(o), `"users":[]`) {
		t.Fatalf("online: %s", o)
	}
	for _, tc := range []struct{ method, path, body, code string }{
		{"POST", "/v1/messages", `{"from":` + ana + `,"to":"nowhere:1","body":"x"}`, "3000"},
		{"POST", "/v1/messages", `{"from":` + ana + `,"to":"user:` + bo + `","body":"x","qos":2}`, "3000"},
		{"POST", "/v1/messages", `{"to":"all","body":"x"}`, "3000"},
		{"GET", "/v1/history?user=abc", "", "3000"},
		{"GET", "/v1/groups/none/members", "", "3011"},
	} {
		// The envelope has the code; the message is text for people.
		if code, msg, _ := call(t, hs, tc.method, tc.path, tc.body); code != tc.code || strings.HasPrefix(msg, "wire:") || strings.Contains(msg, code) {
			t.Errorf("%s %s: %s %q, want %s and a message without the code", tc.method, tc.path, code, msg, tc.code)
		}
	}
	resp, err := hs.Client().Get(hs.URL + "/v1/messages") // wrong method
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /v1/messages: %d, want 405", resp.StatusCode)
	}
}

func recv(t *testing.T, ch chan *client.Message) *client.Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message")
		return nil
	}
}

func jsonNum(v uint64) string { b, _ := json.Marshal(v); return string(b) }
