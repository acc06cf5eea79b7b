package broker

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cimgo/cim/storage"
	"golang.org/x/text/cases"
)

// The IM server's directory: accounts, named groups and who is online, the
// state the native protocol (native_*.go) and the HTTP API consult on every
// message. It is loaded from the store when the server starts and kept in
// step with it (the store decides registrations and membership changes; the
// directory follows the results), so the event loops never read the disk to
// route a chat message.
//
// Topic space shared with MQTT: a private message to user U is published on
// cim/u/<U>, a group message on cim/g/<group>, a message to everyone on
// cim/all. A native session subscribes to its inbox and to cim/all at login
// and to the topics of its groups.

const (
	inboxPrefix = "cim/u/"
	groupPrefix = "cim/g/"
	allTopic    = "cim/all"
	// maxNameLen bounds user and group names (bytes).
	maxNameLen = 64
)

func inboxTopic(user uint64) string { return inboxPrefix + strconv.FormatUint(user, 10) }
func groupTopic(name string) string { return groupPrefix + name }

// Conversations, the history's keys: a private conversation is the user
// pair, smaller id first; a group's is its name; everyone's is "all".
func privateConversation(a, b uint64) string {
	a, b = min(a, b), max(a, b)
	return "u:" + strconv.FormatUint(a, 10) + ":" + strconv.FormatUint(b, 10)
}
func groupConversation(name string) string { return "g:" + name }

const allConversation = "all"

// Errors of the directory, each with the code the native protocol sends.
var (
	ErrNoStore     = errors.New("broker: the IM server needs a store")
	ErrBadName     = errors.New("broker: invalid name")
	ErrNoSuchUser  = errors.New("broker: no such user")
	ErrNoSuchGroup = errors.New("broker: no such group")
	ErrGroupExists = errors.New("broker: group exists")
	ErrNotMember   = errors.New("broker: not a member of the group")
)

// checkName accepts a user or group name: 1 to maxNameLen bytes of UTF-8,
// no control characters, no '/', '+', '#' (they would not make a topic),
// no leading or trailing space.
func checkName(what, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty %s", ErrBadName, what)
	case len(name) > maxNameLen:
		return fmt.Errorf("%w: %s longer than %d bytes", ErrBadName, what, maxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %s is not UTF-8", ErrBadName, what)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("%w: %s starts or ends with a space", ErrBadName, what)
	case strings.ContainsAny(name, "/+#\x00"):
		return fmt.Errorf("%w: %s contains '/', '+', '#' or NUL", ErrBadName, what)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %s contains a control character", ErrBadName, what)
		}
	}
	return nil
}

// imState is the IM server's part of a Server.
type imState struct {
	dir     *directory
	tokens  tokenSigner
	marks   dedupMarks
	delayed *delayedSched
}

// Account is a registered user.
type Account struct {
	ID      uint64
	Name    string
	Created time.Time
	hash    []byte    // credential (bcrypt); nil: none
	ident   *Identity // for the ACL, shared by the user's connections
}

// directory is the in-memory view of accounts, groups and presence.
type directory struct {
	mu      sync.RWMutex
	byID    map[uint64]*Account        // REQUIRES: mu held
	byName  map[string]uint64          // REQUIRES: mu held
	groups  map[string]*group          // REQUIRES: mu held
	mine    map[uint64]map[string]bool // REQUIRES: mu held. user -> groups
	online  map[uint64]int             // REQUIRES: mu held. user -> connections (one, but counted through takeovers)
	folding cases.Caser                // REQUIRES: mu held (a Caser is not safe for concurrent use)
	// onPresence, if set (a cluster, before Start: cluster_sync.go), hears
	// a user come online or go offline here; called without mu held.
	onPresence func(user uint64, online bool)
}

type group struct {
	storage.Group
	members map[uint64]bool
}

func newDirectory() *directory {
	return &directory{byID: map[uint64]*Account{}, byName: map[string]uint64{}, groups: map[string]*group{},
		mine: map[uint64]map[string]bool{}, online: map[uint64]int{}, folding: cases.Fold()}
}

// load fills the directory from the store. Startup only.
func (d *directory) load(db *storage.DB) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := db.LoadAccounts(func(a *storage.Account) error {
		d.putLocked(a)
		return nil
	}); err != nil {
		return err
	}
	return db.LoadGroups(func(g *storage.Group) error {
		d.groups[g.Name] = &group{Group: *g, members: map[uint64]bool{}}
		return nil
	}, func(name string, user uint64) error {
		d.joinLocked(name, user)
		return nil
	})
}

// putLocked records an account. REQUIRES: d.mu held.
func (d *directory) putLocked(a *storage.Account) *Account {
	acc := &Account{ID: a.ID, Name: a.Name, Created: time.UnixMilli(a.Created), hash: a.Hash,
		ident: &Identity{User: a.Name, Method: AuthPassword}}
	d.byID[a.ID] = acc
	d.byName[a.Name] = a.ID
	return acc
}

// joinLocked records a membership. REQUIRES: d.mu held.
func (d *directory) joinLocked(name string, user uint64) {
	g := d.groups[name]
	if g == nil {
		return
	}
	g.members[user] = true
	if d.mine[user] == nil {
		d.mine[user] = map[string]bool{}
	}
	d.mine[user][name] = true
}

func (d *directory) account(id uint64) (*Account, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	a, ok := d.byID[id]
	return a, ok
}

func (d *directory) accountByName(name string) (*Account, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	id, ok := d.byName[name]
	if !ok {
		return nil, false
	}
	return d.byID[id], true
}

// isMember reports whether user is in group name, and whether the group exists.
func (d *directory) isMember(name string, user uint64) (member, exists bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	g := d.groups[name]
	if g == nil {
		return false, false
	}
	return g.members[user], true
}

// groupsOf lists the groups user is a member of, sorted.
func (d *directory) groupsOf(user uint64) []string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]string, 0, len(d.mine[user]))
	for g := range d.mine[user] {
		out = append(out, g)
	}
	slices.Sort(out)
	return out
}

// setOnline counts a connection of user coming (+1) or going (-1).
func (d *directory) setOnline(user uint64, delta int) {
	d.mu.Lock()
	was := d.online[user] > 0
	if n := d.online[user] + delta; n > 0 {
		d.online[user] = n
	} else {
		delete(d.online, user)
	}
	now, hook := d.online[user] > 0, d.onPresence
	d.mu.Unlock()
	if hook != nil && was != now {
		hook(user, now)
	}
}

func (d *directory) isOnline(user uint64) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.online[user] > 0
}

// onlineUsers lists the users online whose name starts with prefix (Unicode
// case folding), sorted by name, at most limit (0: all); more reports a cut.
func (d *directory) onlineUsers(prefix string, limit int) (users []*Account, more bool) {
	d.mu.Lock() // (the Caser needs exclusive use)
	defer d.mu.Unlock()
	fold := d.folding.String(prefix)
	for id := range d.online {
		a := d.byID[id]
		if a == nil {
			continue
		}
		if prefix != "" && !strings.HasPrefix(d.folding.String(a.Name), fold) {
			continue
		}
		users = append(users, a)
	}
	slices.SortFunc(users, func(a, b *Account) int { return strings.Compare(a.Name, b.Name) })
	if limit > 0 && len(users) > limit {
		return users[:limit], true
	}
	return users, false
}
