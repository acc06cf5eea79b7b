package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The HTTP side of a cluster of three processes: GET /v1/cluster lists
// every member with its addresses on every node; POST /login (cim's route
// API) answers a live node's native address by each node's strategy (n1
// round robin, n2 random, n3 consistent hash), and never a dead node.
func TestClusterProcessesHTTP(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns three broker processes")
	}
	nodes := startProcCluster(t, []string{"--cluster-pick", "roundrobin"}, []string{"--cluster-pick", "random"}, nil)
	byNative := map[string]string{}
	for _, n := range nodes {
		byNative[n.native] = n.name
	}
	waitForT(t, 15*time.Second, "every node lists 3 alive members", func() bool {
		for _, n := range nodes {
			ms := clusterMembers(t, n)
			alive := 0
			for _, m := range ms {
				if m.State == "alive" {
					alive++
				}
			}
			if alive != 3 {
				return false
			}
		}
		return true
	})
	for _, n := range nodes {
		self := 0
		for _, m := range clusterMembers(t, n) {
			var want *procNode
			for _, o := range nodes {
				if o.name == m.Name {
					want = o
				}
			}
			if want == nil {
				t.Fatalf("%s lists an unknown member %+v", n.name, m)
			}
			if m.Addr != want.gossip || m.MQTT != want.mqtt || m.Native != want.native || m.HTTP != want.http || m.Peer != want.peer {
				t.Fatalf("%s lists %+v, want the addresses of %+v", n.name, m, *want)
			}
			if m.Self {
				self++
				if m.Name != n.name {
					t.Fatalf("%s calls %s itself", n.name, m.Name)
				}
			}
		}
		if self != 1 {
			t.Fatalf("%s: %d members marked self", n.name, self)
		}
	}

	// The cluster's metrics.
	waitForT(t, 15*time.Second, "cluster metrics on n1", func() bool {
		m := metricsOf(t, nodes[0])
		return strings.Contains(m, `cim_cluster_members{state="alive"} 3`) &&
			strings.Contains(m, `cim_cluster_link_up{peer="n2"} 1`) && strings.Contains(m, `cim_cluster_link_up{peer="n3"} 1`) &&
			strings.Contains(m, `cim_cluster_gossip_bytes_total{dir="in",proto="udp"}`)
	})

	// Users registered on n3, known everywhere.
	var users []uint64
	for i := range 12 {
		var u struct {
			UserID uint64 `json:"userId"`
		}
		if code := cimCall(t, nodes[2], "/registerAccount", `{"userName":"u`+strconv.Itoa(i)+`"}`, &u); code != "9000" {
			t.Fatalf("register: code %s", code)
		}
		users = append(users, u.UserID)
	}
	try := func(n *procNode, user uint64) (addr string, httpPort int, code string) {
		var r struct {
			IP       string `json:"ip"`
			Port     int    `json:"cimServerPort"`
			HTTPPort int    `json:"httpPort"`
		}
		code = cimCall(t, n, "/login", `{"userId":`+strconv.FormatUint(user, 10)+`}`, &r)
		return r.IP + ":" + strconv.Itoa(r.Port), r.HTTPPort, code
	}
	login := func(n *procNode, user uint64) (string, int) {
		t.Helper()
		addr, httpPort, code := try(n, user)
		if code != "9000" {
			t.Fatalf("/login of %d on %s: code %s", user, n.name, code)
		}
		return addr, httpPort
	}
	waitForT(t, 15*time.Second, "the accounts on n1 and n2", func() bool {
		_, _, a := try(nodes[0], users[len(users)-1])
		_, _, b := try(nodes[1], users[len(users)-1])
		return a == "9000" && b == "9000"
	})
	checkLive := func(from *procNode, addr string, httpPort int, dead string) string {
		t.Helper()
		name, ok := byNative[addr]
		if !ok || name == dead {
			t.Fatalf("/login on %s answered %q: not a live node's native address", from.name, addr)
		}
		for _, n := range nodes {
			if n.name == name && !strings.HasSuffix(n.http, ":"+strconv.Itoa(httpPort)) {
				t.Fatalf("/login on %s answered %s (%s) with http port %d, want %s's %s", from.name, addr, name, httpPort, name, n.http)
			}
		}
		return name
	}
	// Hash (n3): the same node for a user every time; users spread.
	spread := map[string]bool{}
	for _, u := range users {
		a, hp := login(nodes[2], u)
		name := checkLive(nodes[2], a, hp, "")
		for range 3 {
			if b, _ := login(nodes[2], u); b != a {
				t.Fatalf("hash: user %d sent to %s, then %s", u, a, b)
			}
		}
		spread[name] = true
	}
	if len(spread) < 2 {
		t.Fatalf("hash: 12 users all sent to %v", spread)
	}
	// Round robin (n1): every node in turn.
	count := map[string]int{}
	for range 6 {
		a, hp := login(nodes[0], users[0])
		count[checkLive(nodes[0], a, hp, "")]++
	}
	if len(count) != 3 || count["n1"] != 2 || count["n2"] != 2 {
		t.Fatalf("round robin over 6 logins: %v", count)
	}
	// Random (n2): live nodes, not always the same.
	count = map[string]int{}
	for range 30 {
		a, hp := login(nodes[1], users[0])
		count[checkLive(nodes[1], a, hp, "")]++
	}
	if len(count) < 2 {
		t.Fatalf("random over 30 logins: %v", count)
	}

	// n3 dies: it is dropped, and no node sends a user there.
	nodes[2].signal(syscall.SIGKILL)
	<-nodes[2].exited
	waitForT(t, 15*time.Second, "n3 not alive on n1 and n2", func() bool {
		for _, n := range nodes[:2] {
			for _, m := range clusterMembers(t, n) {
				if m.Name == "n3" && m.State == "alive" {
					return false
				}
			}
		}
		return true
	})
	for _, n := range nodes[:2] {
		for _, u := range users {
			a, hp := login(n, u)
			checkLive(n, a, hp, "n3")
		}
	}
}

type memberJSON struct {
	Name   string `json:"name"`
	State  string `json:"state"`
	Addr   string `json:"addr"`
	MQTT   string `json:"mqtt"`
	Native string `json:"native"`
	HTTP   string `json:"http"`
	Peer   string `json:"peer"`
	Self   bool   `json:"self"`
}

func clusterMembers(t *testing.T, n *procNode) []memberJSON {
	t.Helper()
	resp, err := http.Get("http://" + n.http + "/v1/cluster")
	if err != nil {
		t.Fatalf("GET /v1/cluster on %s: %v", n.name, err)
	}
	defer resp.Body.Close()
	var body struct {
		Members []memberJSON `json:"members"`
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/cluster on %s: %s %q", n.name, resp.Status, resp.Header.Get("Content-Type"))
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET /v1/cluster on %s: %v", n.name, err)
	}
	return body.Members
}

// cimCall posts body to one of cim's routes on n and decodes dataBody into
// out; it returns the envelope's code.
func cimCall(t *testing.T, n *procNode, path, body string, out any) string {
	t.Helper()
	resp, err := http.Post("http://"+n.http+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s on %s: %v", path, n.name, err)
	}
	defer resp.Body.Close()
	var env struct {
		Code     string          `json:"code"`
		DataBody json.RawMessage `json:"dataBody"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatalf("POST %s on %s: %v", path, n.name, err)
	}
	if env.Code == "9000" && out != nil {
		if err := json.Unmarshal(env.DataBody, out); err != nil {
			t.Fatalf("POST %s on %s: dataBody %s: %v", path, n.name, env.DataBody, err)
		}
	}
	return env.Code
}

func waitForT(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func metricsOf(t *testing.T, n *procNode) string {
	t.Helper()
	resp, err := http.Get("http://" + n.http + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics on %s: %v", n.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
