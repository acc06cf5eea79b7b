package cluster

import (
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// State is a member's state as this node sees it.
type State uint8

const (
	// StateAlive: answering probes.
	StateAlive State = iota
	// StateSuspect: this node's own probe of it failed and memberlist has
	// not declared it dead yet (see docs: suspicion raised only by other
	// nodes is not shown).
	StateSuspect
	// StateDead: declared failed; kept for Options.DeadNodeTTL.
	StateDead
	// StateLeft: left gracefully (Close); kept for Options.DeadNodeTTL.
	StateLeft
)

var stateNames = [...]string{"alive", "suspect", "dead", "left"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// MarshalJSON writes the state as "alive", "suspect", "dead" or "left".
func (s State) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads what MarshalJSON writes.
func (s *State) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	for i, n := range stateNames {
		if n == v {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("%w: member state %q", ErrMalformed, v)
}

// Member is one node of the cluster, as returned by Members (for
// GET /v1/cluster: {"members":[...]}).
type Member struct {
	Name  string `json:"name"`
	State State  `json:"state"`
	// Addr is the gossip address "ip:port".
	Addr string `json:"addr"`
	Meta Meta   `json:"meta"`
	// Self marks this node.
	Self bool `json:"self,omitempty"`
	// Since is when the member entered State (as seen here).
	Since time.Time `json:"since"`
}

// Live reports whether m can be sent clients and frames (alive or suspect).
func (m Member) Live() bool { return m.State == StateAlive || m.State == StateSuspect }

// memberTable is this node's view of the membership, updated synchronously
// from memberlist's event callbacks (which hold memberlist's node lock, so
// nothing here calls back into memberlist).
type memberTable struct {
	mu   sync.Mutex
	self string
	m    map[string]*Member // REQUIRES: mu held
}

func newMemberTable(self string) *memberTable {
	return &memberTable{self: self, m: make(map[string]*Member)}
}

// fromNode converts a memberlist node; call only inside a memberlist
// callback (the node's fields are guarded by memberlist's lock).
func fromNode(n *memberlist.Node) (name, addr string, meta Meta, metaErr error) {
	meta, metaErr = decodeMeta(n.Meta)
	return n.Name, net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))), meta, metaErr
}

// update records a transition and returns the previous state (and whether
// the member was known).
func (t *memberTable) update(name, addr string, meta Meta, st State, now time.Time) (prev State, known bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.m[name]
	if !ok {
		m = &Member{Name: name, Self: name == t.self}
		t.m[name] = m
	} else {
		prev = m.State
	}
	if !ok || m.State != st {
		m.Since = now
	}
	m.State = st
	if addr != "" {
		m.Addr = addr
	}
	if st == StateAlive || st == StateSuspect || meta.Version != 0 {
		m.Meta = meta
	}
	return prev, ok
}

// setSuspect marks an alive member suspect (on=true) or back alive.
func (t *memberTable) setSuspect(name string, on bool, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.m[name]
	if !ok {
		return
	}
	switch {
	case on && m.State == StateAlive:
		m.State, m.Since = StateSuspect, now
	case !on && m.State == StateSuspect:
		m.State, m.Since = StateAlive, now
	}
}

func (t *memberTable) get(name string) (Member, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.m[name]
	if !ok {
		return Member{}, false
	}
	return *m, true
}

// live reports whether name is known and alive or suspect.
func (t *memberTable) live(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.m[name]
	return ok && m.Live()
}

// liveCount is the number of alive or suspect members, this node included.
func (t *memberTable) liveCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, m := range t.m {
		if m.Live() {
			n++
		}
	}
	return n
}

// list returns the members sorted by name.
func (t *memberTable) list() []Member {
	t.mu.Lock()
	out := make([]Member, 0, len(t.m))
	for _, m := range t.m {
		out = append(out, *m)
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// expire removes dead/left members gone longer than ttl and returns their
// names.
func (t *memberTable) expire(now time.Time, ttl time.Duration) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for name, m := range t.m {
		if !m.Live() && now.Sub(m.Since) >= ttl {
			delete(t.m, name)
			out = append(out, name)
		}
	}
	return out
}
