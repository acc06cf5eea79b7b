package bench

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cimgo/cim/broker"
	"github.com/cimgo/cim/broker/httpapi"
	"github.com/cimgo/cim/storage"
	"github.com/cockroachdb/pebble/vfs"
)

// imBroker is cim's broker with a store, the native listener and the IM
// HTTP API, for one test.
type imBroker struct {
	native, mqtt, api string
	srv               *broker.Server
}

func startIM(t *testing.T) *imBroker {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := storage.Open("data", storage.Options{FS: vfs.NewMem(), SweepInterval: -1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := broker.New(broker.Options{MQTTAddr: "127.0.0.1:0", NativeAddr: "127.0.0.1:0", Store: db,
		Loops: 2, SysInterval: -1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(nil)
	api, err := httpapi.New(srv, httpapi.Options{Addr: hs.Listener.Addr().String(), Logger: log})
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
	return &imBroker{native: srv.ListenerAddr(broker.ProtocolNative).String(), mqtt: srv.Addr().String(), api: hs.URL, srv: srv}
}

// opts are a native run's options against b.
func (b *imBroker) opts(o Options) Options {
	o.Proto, o.Addr, o.API = ProtoNative, b.native, b.api
	return o
}

// liveBench lists the broker's live filters under bench/ (a clean run
// leaves none).
func (b *imBroker) liveBench() []string {
	var out []string
	for _, f := range b.srv.LiveFilters() {
		if strings.HasPrefix(f, "bench/") || strings.Contains(f, "/bench/") {
			out = append(out, f)
		}
	}
	return out
}

func checkExact(t *testing.T, what string, rep *Report, out string, sent, received int64) {
	t.Helper()
	if rep.Sent != sent || rep.Received != received || rep.Lost != 0 || rep.Duplicates != 0 || rep.OutOfOrder != 0 {
		t.Fatalf("%s: sent %d received %d lost %d dups %d ooo %d, want %d/%d/0/0/0; errors %v\n%s",
			what, rep.Sent, rep.Received, rep.Lost, rep.Duplicates, rep.OutOfOrder, sent, received, rep.Errors, out)
	}
	if rep.ExitCode != ExitOK || len(rep.Errors) != 0 {
		t.Fatalf("%s: exit %d errors %v %v\n%s", what, rep.ExitCode, rep.Errors, rep.ErrorSamples, out)
	}
}

func TestNativeFanInQoS1Exact(t *testing.T) {
	b := startIM(t)
	rep, out := run(t, b.opts(Options{Scenario: ScenarioFanIn, QoS: 1, Pubs: 3, Subs: 2, Count: 300, Size: 32}))
	checkExact(t, "fanin", rep, out, 900, 1800)
	if rep.Acked != 900 || rep.AckLatency == nil || rep.Latency.Count != 1800 || rep.Latency.P50 <= 0 {
		t.Fatalf("acked %d ack latency %v latency %+v", rep.Acked, rep.AckLatency, rep.Latency)
	}
	if !strings.Contains(out, "fanin  native  ") || rep.Proto != ProtoNative {
		t.Fatalf("report header:\n%s", out)
	}
	if live := b.liveBench(); len(live) != 0 {
		t.Fatalf("a clean run left subscriptions behind: %v", live)
	}
}

func TestNativeFanOutAndPairs(t *testing.T) {
	b := startIM(t)
	rep, out := run(t, b.opts(Options{Scenario: ScenarioFanOut, QoS: 1, Subs: 5, Count: 200}))
	checkExact(t, "fanout qos 1", rep, out, 200, 1000)
	rep, out = run(t, b.opts(Options{Scenario: ScenarioFanOut, Subs: 3, Count: 100}))
	checkExact(t, "fanout qos 0", rep, out, 100, 300)
	rep, out = run(t, b.opts(Options{Scenario: ScenarioPairs, QoS: 1, Pairs: 4, Count: 100, Inflight: 10}))
	checkExact(t, "pairs", rep, out, 400, 400)
	if rep.Acked != 400 {
		t.Fatalf("pairs: acked %d", rep.Acked)
	}
}

// TestNativePrivate: pairs whose publishers send private messages to their
// subscriber's inbox, named by user name (cim/u/<name>, resolved to the id
// the registration returned); the subscribers are subscribed at login.
func TestNativePrivate(t *testing.T) {
	b := startIM(t)
	rep, out := run(t, b.opts(Options{Scenario: ScenarioPairs, QoS: 1, Pairs: 3, Count: 100,
		ClientIDPrefix: "priv", Topic: "cim/u/priv-s%i"}))
	checkExact(t, "private pairs", rep, out, 300, 300)
	// The same by numeric id, and QoS 0 (private messages reach the
	// receiver at QoS 1 anyway).
	a, ok := b.srv.LookupAccount(0, "priv-s0")
	if !ok {
		t.Fatal("priv-s0 not registered")
	}
	rep, out = run(t, b.opts(Options{Scenario: ScenarioFanIn, Pubs: 2, Subs: 1, Count: 50,
		ClientIDPrefix: "priv", Topic: "cim/u/" + strconv.FormatUint(a.ID, 10)}))
	checkExact(t, "private fanin by id", rep, out, 100, 100)
}

// TestNativeOfflineDurable: QoS 1 private messages to users who never log
// in are stored and acknowledged with 7000, which is not an error.
func TestNativeOfflineDurable(t *testing.T) {
	b := startIM(t)
	rep, out := run(t, b.opts(Options{Scenario: ScenarioPub, QoS: 1, Pubs: 2, Count: 200, ClientIDPrefix: "dur", Topic: "cim/u/rcv-s%i"}))
	if rep.Sent != 400 || rep.Acked != 400 || rep.ExitCode != ExitOK || len(rep.Errors) != 0 {
		t.Fatalf("sent %d acked %d exit %d errors %v\n%s", rep.Sent, rep.Acked, rep.ExitCode, rep.Errors, out)
	}
	for i := range 2 {
		a, ok := b.srv.LookupAccount(0, "rcv-s"+strconv.Itoa(i))
		if !ok || b.srv.Online(a.ID) {
			t.Fatalf("receiver rcv-s%d: registered %v, want registered and offline", i, ok)
		}
	}
	// They get them at their next login, from the store: 200 each.
	rep, out = run(t, b.opts(Options{Scenario: ScenarioSub, QoS: 1, Subs: 2, Count: 200, ClientIDPrefix: "rcv",
		Topic: "cim/u/rcv-s%i", Duration: 10 * time.Second}))
	if rep.Received != 400 || rep.ExitCode != ExitOK {
		t.Fatalf("offline messages at login: received %d, want 400; errors %v\n%s", rep.Received, rep.Errors, out)
	}
}

func TestNativeGroupFanOut(t *testing.T) {
	b := startIM(t)
	rep, out := run(t, b.opts(Options{Scenario: ScenarioFanOut, QoS: 1, Subs: 4, Count: 100, Topic: "cim/g/benchers"}))
	checkExact(t, "group fanout", rep, out, 100, 400)
	members, err := b.srv.GroupMembers("benchers")
	if err != nil || len(members) != 0 {
		t.Fatalf("after a clean run the group has members %v (%v), want none", members, err)
	}
}

func TestNativeSubPubConnChurnShared(t *testing.T) {
	b := startIM(t)
	// sub: two subscribers on bench/# until each has 100, fed by a pub run.
	subDone := make(chan *Report, 1)
	go func() {
		o := b.opts(Options{Scenario: ScenarioSub, QoS: 1, Subs: 2, Count: 100, Duration: 20 * time.Second, Progress: "none", ConnectTimeout: 2 * time.Second})
		rep, err := Run(context.Background(), o, io.Discard, io.Discard)
		if err != nil {
			t.Error(err)
		}
		subDone <- rep
	}()
	waitFor(t, "two subscribers", func() bool {
		n := 0
		for _, c := range b.srv.Clients() {
			subs, _ := b.srv.Subscriptions(c.Protocol, c.ID)
			for _, s := range subs {
				if s.Filter == "bench/#" {
					n++
				}
			}
		}
		return n >= 2
	})
	pub, out := run(t, b.opts(Options{Scenario: ScenarioPub, QoS: 1, Pubs: 2, Count: 50}))
	if pub.Sent != 100 || pub.Acked != 100 || pub.ExitCode != ExitOK {
		t.Fatalf("pub: sent %d acked %d exit %d errors %v\n%s", pub.Sent, pub.Acked, pub.ExitCode, pub.Errors, out)
	}
	sub := <-subDone
	if sub == nil || sub.Received != 200 || sub.Lost != 0 {
		t.Fatalf("sub: %+v", sub)
	}

	rep, out := run(t, b.opts(Options{Scenario: ScenarioConn, Conns: 40, Duration: 200 * time.Millisecond}))
	if rep.Connected != 40 || rep.ExitCode != ExitOK {
		t.Fatalf("conn: connected %d exit %d errors %v\n%s", rep.Connected, rep.ExitCode, rep.Errors, out)
	}

	rep, out = run(t, b.opts(Options{Scenario: ScenarioChurn, Clients: 3, Count: 5, QoS: 1}))
	if rep.Connected != 15 || rep.Sent != 15 || rep.Received != 15 || rep.Lost != 0 || rep.ExitCode != ExitOK {
		t.Fatalf("churn: cycles %d sent %d received %d lost %d exit %d errors %v\n%s", rep.Connected, rep.Sent, rep.Received, rep.Lost, rep.ExitCode, rep.Errors, out)
	}
	// Persistent: the subscription stays with the session between cycles.
	// (As with MQTT, a reconnect may overtake the previous connection's
	// last deliver-ack on the broker, the two sockets being on different
	// event loops, and get that message again: a duplicate, at most one
	// per reconnect, never counted as received twice.)
	rep, out = run(t, b.opts(Options{Scenario: ScenarioChurn, Clients: 2, Count: 4, QoS: 1, Persistent: true, ClientIDPrefix: "keep"}))
	if rep.Connected != 8 || rep.Received != 8 || rep.Duplicates > 6 || rep.ExitCode != ExitOK {
		t.Fatalf("persistent churn: cycles %d received %d dups %d errors %v\n%s", rep.Connected, rep.Received, rep.Duplicates, rep.Errors, out)
	}
	if live := b.liveBench(); !slices.Contains(live, "bench/churn/0") {
		t.Fatalf("persistent sessions kept no subscription: %v", live)
	}

	rep, out = run(t, b.opts(Options{Scenario: ScenarioShared, QoS: 1, Subs: 4, Groups: 2, Count: 200}))
	if rep.Expected != 400 || rep.Received != 400 || rep.Lost != 0 || rep.Duplicates != 0 || rep.ExitCode != ExitOK {
		t.Fatalf("shared: expected %d received %d lost %d dups %d errors %v\n%s", rep.Expected, rep.Received, rep.Lost, rep.Duplicates, rep.Errors, out)
	}
}

func TestNativeWorkers(t *testing.T) {
	if !canBind("127.0.0.2", "127.0.0.3") {
		t.Skip("cannot bind 127.0.0.2 and 127.0.0.3")
	}
	b := startIM(t)
	rep, out := run(t, b.opts(Options{Scenario: ScenarioFanIn, QoS: 1, Pubs: 3, Subs: 2, Count: 100, Workers: 2}))
	checkExact(t, "fanin with workers", rep, out, 300, 600)
	if rep.Workers != 2 {
		t.Fatalf("workers %d", rep.Workers)
	}
}

// TestNativeRegisterFails: an API that is not there, or that answers
// something else than the IM API, fails the run with a clear error.
func TestNativeRegisterFails(t *testing.T) {
	b := startIM(t)
	var mu sync.Mutex
	answers := map[string]func(w http.ResponseWriter){
		"500":     func(w http.ResponseWriter) { http.Error(w, "boom", http.StatusInternalServerError) },
		"html":    func(w http.ResponseWriter) { io.WriteString(w, "<html>not json</html>") },
		"refused": func(w http.ResponseWriter) { io.WriteString(w, `{"code":"3000","message":"name: no","dataBody":null}`) },
		"no id": func(w http.ResponseWriter) {
			io.WriteString(w, `{"code":"9000","message":"success","dataBody":{"name":"x"}}`)
		},
		"bad body": func(w http.ResponseWriter) { io.WriteString(w, `{"code":"9000","message":"success","dataBody":[1,2]}`) },
		"huge":     func(w http.ResponseWriter) { w.Write(make([]byte, maxAPIAnswer+10)) },
	}
	want := map[string]string{"500": "HTTP 500", "html": "not the IM API's answer", "refused": "code 3000: name: no",
		"no id": "no account id", "bad body": "dataBody", "huge": "answer over"}
	var current string
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		f := answers[current]
		mu.Unlock()
		f(w)
	}))
	defer fake.Close()
	for name := range answers {
		mu.Lock()
		current = name
		mu.Unlock()
		o := b.opts(Options{Scenario: ScenarioFanIn, Pubs: 2, Subs: 1, Count: 10})
		o.API = fake.URL
		rep, out := run(t, o)
		if rep.ExitCode != ExitNoConnect || rep.Errors[KindRegister] != 1 || rep.Connected != 0 {
			t.Fatalf("%s: exit %d connected %d errors %v\n%s", name, rep.ExitCode, rep.Connected, rep.Errors, out)
		}
		if s := rep.ErrorSamples[KindRegister]; !strings.Contains(s, want[name]) {
			t.Fatalf("%s: error %q, want it to say %q", name, s, want[name])
		}
	}
	o := b.opts(Options{Scenario: ScenarioConn, Conns: 3, Duration: 10 * time.Millisecond})
	o.API = "http://" + deadAddr(t)
	rep, _ := run(t, o)
	if rep.ExitCode != ExitNoConnect || rep.Errors[KindRegister] != 1 {
		t.Fatalf("no API: exit %d errors %v", rep.ExitCode, rep.Errors)
	}
}

func TestNativeBadOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"qos 2":         {Scenario: ScenarioFanIn, Proto: ProtoNative, QoS: 2},
		"retain":        {Scenario: ScenarioFanIn, Proto: ProtoNative, Retain: true},
		"user property": {Scenario: ScenarioFanIn, Proto: ProtoNative, UserProperties: []UserProperty{{"a", "b"}}},
		"api":           {Scenario: ScenarioFanIn, Proto: ProtoNative, API: "ftp://x"},
		"api no host":   {Scenario: ScenarioFanIn, Proto: ProtoNative, API: "http://"},
	} {
		_, err := Run(context.Background(), o, io.Discard, io.Discard)
		if err == nil || !isUsage(err) {
			t.Errorf("%s: err %v, want ErrUsage", name, err)
		}
	}
	o := Options{Scenario: ScenarioFanIn, Proto: ProtoNative}
	o.EnsureDefaults()
	if o.Addr != "127.0.0.1:9000" || o.API != "http://127.0.0.1:8083" {
		t.Fatalf("defaults: addr %q api %q", o.Addr, o.API)
	}
	o = Options{Scenario: ScenarioFanIn, Proto: ProtoNative, Addr: "10.0.0.7:9100,10.0.0.8:9100"}
	o.EnsureDefaults()
	if o.API != "http://10.0.0.7:8083" {
		t.Fatalf("api from --addr: %q", o.API)
	}
}

// canBind reports whether this machine lets a socket bind each address.
func canBind(ips ...string) bool {
	for _, ip := range ips {
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}
