package client

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/cimgo/cim/broker/wire"
)

// fakeAPI is cim's route API (POST /registerAccount, POST /login) in front
// of a fakeServer, answering with cim's envelope.
type fakeAPI struct {
	srv *httptest.Server
	mu  sync.Mutex
	// what it got and what it answers
	bodies    []string
	loginCode string // "9000" unless set
	ip        string // "127.0.0.1" unless set
	port      any    // the native port (a number, or a string as cim sends it)
	status    int    // HTTP status, 200 unless set
	raw       string // a body to send instead of the envelope
}

func newFakeAPI(t *testing.T, s *fakeServer) *fakeAPI {
	_, port, _ := net.SplitHostPort(s.addr)
	a := &fakeAPI{loginCode: "9000", ip: "127.0.0.1", port: port, status: 200}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		defer a.mu.Unlock()
		a.bodies = append(a.bodies, r.Method+" "+r.URL.Path+" "+string(body))
		w.WriteHeader(a.status)
		if a.raw != "" {
			io.WriteString(w, a.raw)
			return
		}
		var in struct {
			UserID   uint64 `json:"userId"`
			UserName string `json:"userName"`
		}
		json.Unmarshal(body, &in)
		env := map[string]any{"code": "9000", "message": "ok", "reqNo": "1"}
		switch r.URL.Path {
		case "/registerAccount":
			id := s.id(in.UserName)
			if id == 0 {
				s.set(func(s *fakeServer) {
					id = uint64(len(s.mu.users) + 1)
					s.mu.users[id] = in.UserName
				})
			}
			env["dataBody"] = map[string]any{"userId": id, "userName": in.UserName}
		case "/login":
			env["code"] = a.loginCode
			if a.loginCode != "9000" {
				env["message"] = "refused"
				env["dataBody"] = nil
				break
			}
			env["dataBody"] = map[string]any{"ip": a.ip, "cimServerPort": a.port, "httpPort": 8083}
		default:
			w.WriteHeader(http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(env)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeAPI) set(fn func(a *fakeAPI)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fn(a)
}

func (a *fakeAPI) requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.bodies...)
}

func TestDialThroughAPI(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice")
	api := newFakeAPI(t, s)
	o := fastOptions(s, "newbie")
	o.Addrs, o.APIURL, o.Register = nil, api.srv.URL, true
	c := dial(t, o)
	if info := c.Info(); info.UserID != 2 || info.UserName != "newbie" || info.Addr != s.addr {
		t.Fatalf("Info = %+v", info)
	}
	reqs := api.requests()
	if len(reqs) != 2 || reqs[0] != `POST /registerAccount {"userName":"newbie","password":"pw-newbie"}` ||
		reqs[1] != `POST /login {"userId":2,"userName":"newbie"}` {
		t.Fatalf("API requests: %q", reqs)
	}
	// A reconnect asks the API again (the node may have changed), but
	// registers only once.
	s.drop(2)
	waitFor(t, "the second /login", func() bool { return len(api.requests()) == 3 })
	waitFor(t, "ready", func() bool { return c.State() == Ready })
	if r := api.requests()[2]; !strings.HasPrefix(r, "POST /login ") {
		t.Fatalf("third request %q", r)
	}
}

func TestRouteAnswers(t *testing.T) {
	s := newFakeServer(t)
	api := newFakeAPI(t, s)
	_, port, _ := net.SplitHostPort(s.addr)
	cases := []struct {
		name string
		mod  func(a *fakeAPI)
		addr string
		err  error
	}{
		{"port as a string", func(a *fakeAPI) {}, s.addr, nil},
		{"port as a number", func(a *fakeAPI) { a.port = json.Number(port) }, s.addr, nil},
		{"unspecified ip means the API's host", func(a *fakeAPI) { a.ip = "0.0.0.0" }, "127.0.0.1:" + port, nil},
		{"no ip means the API's host", func(a *fakeAPI) { a.ip = "" }, "127.0.0.1:" + port, nil},
		{"account mismatch", func(a *fakeAPI) { a.loginCode = "9100" }, "", wire.CodeAccountMismatch},
		{"no server", func(a *fakeAPI) { a.loginCode = "7100" }, "", wire.CodeNoServer},
		{"bad port", func(a *fakeAPI) { a.port = 0 }, "", ErrHTTP},
		{"status 500", func(a *fakeAPI) { a.status = 500 }, "", ErrHTTP},
		{"not JSON", func(a *fakeAPI) { a.raw = "<html>" }, "", ErrHTTP},
		{"no code", func(a *fakeAPI) { a.raw = `{"message":"x"}` }, "", ErrHTTP},
		{"numeric code", func(a *fakeAPI) { a.raw = `{"code":9000,"dataBody":{"ip":"10.1.2.3","cimServerPort":9000}}` }, "10.1.2.3:9000", nil},
	}
	for _, c := range cases {
		api.set(func(a *fakeAPI) {
			a.loginCode, a.ip, a.port, a.status, a.raw = "9000", "127.0.0.1", port, 200, ""
			c.mod(a)
		})
		addr, err := Route(ctx(t), nil, api.srv.URL, 1, "alice")
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%s: Route = %q, %v; want %v", c.name, addr, err, c.err)
			}
			continue
		}
		if err != nil || addr != c.addr {
			t.Errorf("%s: Route = %q, %v; want %q", c.name, addr, err, c.addr)
		}
	}
}

func TestDialAPIRefusal(t *testing.T) {
	checkLeaks(t)
	s := newFakeServer(t, "alice")
	api := newFakeAPI(t, s)
	o := fastOptions(s, "alice")
	o.Addrs, o.APIURL = nil, api.srv.URL
	api.set(func(a *fakeAPI) { a.loginCode = "9100" })
	if _, err := Dial(ctx(t), o); !errors.Is(err, ErrAccountMismatch) {
		t.Fatalf("Dial = %v", err)
	}
	if n := len(api.requests()); n != 1 {
		t.Fatalf("%d /login calls for a final refusal", n)
	}
	api.set(func(a *fakeAPI) { a.loginCode = "7100" })
	o.RetryLimit = 3
	if _, err := Dial(ctx(t), o); !errors.Is(err, ErrReconnectFailed) || !errors.Is(err, wire.CodeNoServer) {
		t.Fatalf("Dial = %v", err)
	}
	if n := len(api.requests()); n != 4 {
		t.Fatalf("%d /login calls, want 1 + 3 retries of no-server", n)
	}
}
