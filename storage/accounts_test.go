package storage

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"
)

func TestRegister(t *testing.T) {
	c := newClock()
	fs := newMemFS()
	db, err := Open("db", testOpts(fs, c))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	var alice, again, bob, zoe, twice1, twice2 *AccountResult
	mustCommit(t, db, func(b *Batch) { alice = b.Register("alice", []byte("hash-1")) })
	mustCommit(t, db, func(b *Batch) {
		again = b.Register("alice", []byte("other"))
		bob = b.Register("bob", nil)
		zoe = b.Register("Zoë", nil)
		twice1, twice2 = b.Register("carol", nil), b.Register("carol", nil) // one batch
	})
	if !alice.New || alice.Account.ID != 1 || alice.Account.Name != "alice" || string(alice.Account.Hash) != "hash-1" ||
		alice.Account.Created != c.UnixMilli() {
		t.Fatalf("alice = %+v", alice)
	}
	if again.New || !reflect.DeepEqual(again.Account, alice.Account) {
		t.Fatalf("registering alice again = %+v (the hash must not change)", again)
	}
	if !bob.New || bob.Account.ID != 2 || !zoe.New || zoe.Account.ID != 3 {
		t.Fatalf("bob %+v, Zoë %+v", bob, zoe)
	}
	if !twice1.New || twice2.New || twice1.Account.ID != twice2.Account.ID {
		t.Fatalf("carol twice in a batch: %+v, %+v", twice1, twice2)
	}
	if a, err := db.GetAccountByName("Zoë"); err != nil || a.ID != 3 {
		t.Fatalf("GetAccountByName(Zoë) = %+v, %v", a, err)
	}
	if a, err := db.GetAccount(1); err != nil || !reflect.DeepEqual(*a, alice.Account) {
		t.Fatalf("GetAccount(1) = %+v, %v", a, err)
	}
	if _, err := db.GetAccount(99); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetAccount(99) = %v", err)
	}
	if _, err := db.GetAccountByName("zoë"); !errors.Is(err, ErrNotFound) { // names are bytes
		t.Fatalf("GetAccountByName(zoë) = %v", err)
	}
	var cred, unknown *AccountResult
	mustCommit(t, db, func(b *Batch) { cred, unknown = b.SetCredential(2, []byte("new")), b.SetCredential(99, nil) })
	if cred.Err != nil || string(cred.Account.Hash) != "new" || !errors.Is(unknown.Err, ErrNotFound) {
		t.Fatalf("SetCredential: %+v, %+v", cred, unknown)
	}
	for _, bad := range []string{"", "a\x00b"} {
		b := db.NewBatch()
		b.Register(bad, nil)
		if err := db.Commit(b, nil); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("Register(%q): Commit = %v", bad, err)
		}
	}
	// Ids survive a restart and never repeat.
	db.Close()
	db, err = Open("db", testOpts(fs, c))
	if err != nil {
		t.Fatal(err)
	}
	var dave, alice2 *AccountResult
	mustCommit(t, db, func(b *Batch) { dave, alice2 = b.Register("dave", nil), b.Register("alice", nil) })
	if !dave.New || dave.Account.ID != 5 || alice2.New || alice2.Account.ID != 1 {
		t.Fatalf("after reopen: dave %+v, alice %+v", dave, alice2)
	}
	var names []string
	db.LoadAccounts(func(a *Account) error { names = append(names, fmt.Sprintf("%d:%s", a.ID, a.Name)); return nil })
	if want := []string{"1:alice", "2:bob", "3:Zoë", "4:carol", "5:dave"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("accounts %v", names)
	}
	if st := db.Stats(); st.Registered != 1 { // counted since this Open
		t.Fatalf("Registered = %d", st.Registered)
	}
}

// TestRegisterConcurrent: many goroutines register overlapping names at
// once (run with -race): each name gets one id, no two names share one.
func TestRegisterConcurrent(t *testing.T) {
	db, _ := openMem(t, nil)
	const names, workers = 50, 16
	var mu sync.Mutex
	ids := map[string]map[uint64]bool{}
	news := map[string]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for _, i := range r.Perm(names) {
				name := fmt.Sprintf("user-%d", i)
				b := db.NewBatch()
				res := b.Register(name, nil)
				ch := make(chan error, 1)
				if err := db.Commit(b, func(err error) { ch <- err }); err != nil {
					t.Error(err)
					return
				}
				if err := <-ch; err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if ids[name] == nil {
					ids[name] = map[uint64]bool{}
				}
				ids[name][res.Account.ID] = true
				if res.New {
					news[name]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	owner := map[uint64]string{}
	for name, set := range ids {
		if len(set) != 1 || news[name] != 1 {
			t.Fatalf("%s got ids %v, created %d times", name, set, news[name])
		}
		for id := range set {
			if o, ok := owner[id]; ok {
				t.Fatalf("id %d given to %s and %s", id, o, name)
			}
			owner[id] = name
		}
	}
	if len(owner) != names {
		t.Fatalf("%d ids for %d names", len(owner), names)
	}
}

func TestGroups(t *testing.T) {
	c := newClock()
	fs := newMemFS()
	db, err := Open("db", testOpts(fs, c))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	var create, again, j1, j2, j1again, nope, g2create, g2join *GroupResult
	mustCommit(t, db, func(b *Batch) { create = b.CreateGroup("g1", 1) })
	c.Add(time.Second)
	mustCommit(t, db, func(b *Batch) {
		again = b.CreateGroup("g1", 7)
		j1, j2 = b.JoinGroup("g1", 1), b.JoinGroup("g1", 2)
		j1again = b.JoinGroup("g1", 1)
		nope = b.JoinGroup("nope", 1)
		g2create, g2join = b.CreateGroup("g", 2), b.JoinGroup("g", 1) // created in the same batch; "g" prefixes "g1"
	})
	if !create.Changed || create.Group != (Group{Name: "g1", Owner: 1, Created: c.UnixMilli() - 1000}) {
		t.Fatalf("create = %+v", create)
	}
	if again.Changed || again.Group != create.Group {
		t.Fatalf("create again = %+v", again)
	}
	if !j1.Changed || !j2.Changed || j1again.Changed || j1.Err != nil || !errors.Is(nope.Err, ErrNotFound) || nope.Changed {
		t.Fatalf("joins: %+v %+v %+v %+v", j1, j2, j1again, nope)
	}
	if !g2create.Changed || !g2join.Changed || g2join.Err != nil {
		t.Fatalf("create and join in one batch: %+v %+v", g2create, g2join)
	}
	members := func(g string) []uint64 {
		var ids []uint64
		err := db.GroupMembers(g, func(id uint64, joined int64) error {
			if joined != c.UnixMilli() {
				t.Errorf("%s member %d joined at %d", g, id, joined)
			}
			ids = append(ids, id)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	groups := func(u uint64) []string {
		gs, err := db.UserGroups(u)
		if err != nil {
			t.Fatal(err)
		}
		return gs
	}
	if m := members("g1"); !reflect.DeepEqual(m, []uint64{1, 2}) {
		t.Fatalf("members of g1: %v", m)
	}
	if m := members("g"); !reflect.DeepEqual(m, []uint64{1}) {
		t.Fatalf("members of g: %v", m)
	}
	if g := groups(1); !reflect.DeepEqual(g, []string{"g", "g1"}) {
		t.Fatalf("groups of 1: %v", g)
	}
	var leave, leaveAgain *GroupResult
	mustCommit(t, db, func(b *Batch) { leave, leaveAgain = b.LeaveGroup("g1", 2), b.LeaveGroup("g1", 2) })
	if !leave.Changed || leaveAgain.Changed {
		t.Fatalf("leave %+v, again %+v", leave, leaveAgain)
	}
	db.Close()
	db, err = Open("db", testOpts(fs, c))
	if err != nil {
		t.Fatal(err)
	}
	if m := members("g1"); !reflect.DeepEqual(m, []uint64{1}) {
		t.Fatalf("members of g1 after reopen: %v", m)
	}
	if g := groups(2); len(g) != 0 {
		t.Fatalf("groups of 2 after leaving: %v", g)
	}
	if g, err := db.GetGroup("g1"); err != nil || *g != create.Group {
		t.Fatalf("GetGroup = %+v, %v", g, err)
	}
	if _, err := db.GetGroup("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetGroup(nope) = %v", err)
	}
}

func TestLoadGroups(t *testing.T) {
	db, _ := openMem(t, nil)
	mustCommit(t, db, func(b *Batch) {
		b.CreateGroup("devs", 1)
		b.JoinGroup("devs", 1)
		b.JoinGroup("devs", 2)
		b.CreateGroup("ops", 2)
		b.JoinGroup("ops", 2)
	})
	var groups []string
	members := map[string][]uint64{}
	if err := db.LoadGroups(func(g *Group) error { groups = append(groups, g.Name); return nil },
		func(g string, u uint64) error { members[g] = append(members[g], u); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(groups) != "[devs ops]" || fmt.Sprint(members["devs"]) != "[1 2]" || fmt.Sprint(members["ops"]) != "[2]" {
		t.Fatalf("groups %v members %v", groups, members)
	}
}
