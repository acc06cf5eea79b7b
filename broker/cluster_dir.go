package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cimgo/cim/cluster"
	"github.com/cimgo/cim/storage"
)

// The IM directory across nodes.
//
// User ids are allocated by each node's store from a counter, so they
// agree only if every node applies the same registrations in the same
// order. One node decides: the registrar, the
// alive member with the lowest name. A registration or group change on any
// node is sent to it; it applies the change to its own store, then sends
// the decision to every other node in order (a reliable outbox per peer),
// and each node applies it to its store (a registration must get the id the
// registrar's got: a node that missed some catches up first). A node that
// joins fetches what it lacks from each member it meets. A node must start
// with an empty data dir or one that was part of this cluster: accounts
// registered on a node while it was alone make its ids diverge (logged).

type dirReplica struct {
	mu             sync.Mutex
	retainedSynced bool                    // REQUIRES: mu held
	queue          []dirWork               // REQUIRES: mu held. the applier's work, in order
	running        bool                    // REQUIRES: mu held. the applier goroutine is on
	outbox         map[string]chan []dirOp // REQUIRES: mu held. registrar: per peer, in order
	decide         sync.Mutex              // serialises the registrar's decisions
}

// dirWork is one job of the applier: ops decided by the registrar, or a
// sync with a peer.
type dirWork struct {
	from     string
	ops      []dirOp
	syncFrom string
}

// enqueue hands w to the applier goroutine, in order. Never blocks.
func (d *dirReplica) enqueue(cn *clusterNode, w dirWork) {
	d.mu.Lock()
	d.queue = append(d.queue, w)
	start := !d.running
	d.running = true
	d.mu.Unlock()
	if start {
		cn.wg.Add(1)
		go d.run(cn)
	}
}

// run applies the queued work, then ends (enqueue starts it again).
func (d *dirReplica) run(cn *clusterNode) {
	defer cn.wg.Done()
	for {
		d.mu.Lock()
		if len(d.queue) == 0 || cn.closed.Load() {
			d.running = false
			d.mu.Unlock()
			return
		}
		w := d.queue[0]
		d.queue = d.queue[1:]
		d.mu.Unlock()
		if w.syncFrom != "" {
			if err := cn.dirSync(w.syncFrom); err != nil && !errors.Is(err, cluster.ErrClosed) {
				cn.log.Warn("directory not synchronised", "peer", w.syncFrom, "err", err)
			}
			continue
		}
		for _, op := range w.ops {
			if err := cn.applyDirOp(op, w.from); err != nil {
				cn.log.Warn("directory change not applied", "from", w.from, "kind", op.Kind, "name", op.Name, "err", err)
			}
		}
	}
}

// applyRequest queues the registrar's decisions (on its link, in order).
func (d *dirReplica) applyRequest(cn *clusterNode, from string, body []byte, r cluster.Reply) {
	var req dirApplyReq
	if err := decodeBody(body, &req); err != nil {
		_ = r.Fail(err)
		return
	}
	d.enqueue(cn, dirWork{from: from, ops: req.Ops})
	_ = r.Respond(nil)
}

// registrar is the node that decides directory changes: the alive member
// with the lowest name.
func (cn *clusterNode) registrar() string {
	best := cn.self
	for _, m := range cn.c.Members() {
		if m.State == cluster.StateAlive && !m.Meta.Leaving && m.Name < best {
			best = m.Name
		}
	}
	return best
}

// dirCall runs op through the registrar and waits until this node's
// directory reflects the decision.
func (cn *clusterNode) dirCall(ctx context.Context, op dirOp) (dirResult, error) {
	reg := cn.registrar()
	var res dirResult
	if reg == cn.self {
		res = cn.decideDir(ctx, op)
	} else {
		body, err := request(opDirCall, &op)
		if err != nil {
			return res, err
		}
		resp, err := cn.c.Call(ctx, reg, body)
		if err != nil {
			return res, fmt.Errorf("%w: registrar %s: %w", ErrCluster, reg, err)
		}
		if len(resp) < 1 {
			return res, errWire
		}
		if err := decodeBody(resp[1:], &res); err != nil {
			return res, err
		}
		// The decision comes to us by the registrar's outbox too; wait for
		// it (and catch up if it does not come: we missed earlier ones).
		for waited := 0; res.Err == "" && !cn.reflects(res.Op); waited++ {
			if waited == 40 {
				cn.dir.enqueue(cn, dirWork{syncFrom: reg})
			}
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	if res.Err != "" {
		return res, dirErr(res.Err, op.Name)
	}
	return res, nil
}

// reflects reports whether the local directory shows op's outcome.
func (cn *clusterNode) reflects(op dirOp) bool {
	d := cn.srv.im.dir
	switch op.Kind {
	case dirRegister:
		a, ok := d.account(op.ID)
		return ok && a.Name == op.Name
	case dirCreateGroup:
		_, ok := cn.srv.groupInfo(op.Name)
		return ok
	case dirJoin:
		member, _ := d.isMember(op.Name, op.User)
		return member
	case dirLeave:
		member, _ := d.isMember(op.Name, op.User)
		return !member
	}
	return true
}

// serveCall decides a peer's directory change (this node is its registrar).
func (d *dirReplica) serveCall(cn *clusterNode, from string, body []byte) ([]byte, error) {
	var op dirOp
	if err := decodeBody(body, &op); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := cn.decideDir(ctx, op)
	return request(0, &res)
}

// decideDir applies op here as the registrar and sends the decision to
// every other node.
func (cn *clusterNode) decideDir(ctx context.Context, op dirOp) dirResult {
	cn.dir.decide.Lock()
	defer cn.dir.decide.Unlock()
	res, err := cn.applyLocal(ctx, op)
	if err != nil {
		res.Err = dirErrName(err)
		return res
	}
	if res.Err == "" && (res.Created || op.Kind == dirJoin || op.Kind == dirLeave) {
		cn.broadcastDir(res.Op)
	}
	return res
}

// broadcastDir queues op for every other live node, in order per node.
func (cn *clusterNode) broadcastDir(op dirOp) {
	for _, m := range cn.c.Members() {
		if m.Self || !m.Live() {
			continue
		}
		cn.dir.mu.Lock()
		if cn.dir.outbox == nil {
			cn.dir.outbox = map[string]chan []dirOp{}
		}
		ch := cn.dir.outbox[m.Name]
		if ch == nil {
			ch = make(chan []dirOp, 4096)
			cn.dir.outbox[m.Name] = ch
			cn.wg.Add(1)
			go cn.sendDir(m.Name, ch)
		}
		cn.dir.mu.Unlock()
		select {
		case ch <- []dirOp{op}:
		default:
			cn.log.Warn("directory outbox full; the node catches up when it rejoins", "peer", m.Name)
		}
	}
}

// sendDir delivers the registrar's decisions to one peer, in order,
// retrying until it has them or leaves.
func (cn *clusterNode) sendDir(node string, ch chan []dirOp) {
	defer cn.wg.Done()
	defer func() {
		cn.dir.mu.Lock()
		delete(cn.dir.outbox, node)
		cn.dir.mu.Unlock()
	}()
	for {
		var ops []dirOp
		select {
		case <-cn.stop:
			return
		case ops = <-ch:
		}
		for more := true; more; { // batch what is waiting
			select {
			case o := <-ch:
				ops = append(ops, o...)
			default:
				more = false
			}
		}
		body, err := request(opDirApply, &dirApplyReq{Ops: ops})
		if err != nil {
			continue
		}
		for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := cn.c.Call(ctx, node, body)
			cancel()
			if err == nil {
				break
			}
			if errors.Is(err, cluster.ErrPeerGone) || errors.Is(err, cluster.ErrClosed) || errors.Is(err, cluster.ErrUnknownPeer) {
				return // it syncs when it rejoins
			}
			select {
			case <-time.After(backoff):
			case <-cn.stop:
				return
			}
		}
	}
}

// nextUserID is the id the next registration here would get (the store
// allocates in order).
func (cn *clusterNode) nextUserID() uint64 {
	d := cn.srv.im.dir
	d.mu.RLock()
	defer d.mu.RUnlock()
	var hi uint64
	for id := range d.byID {
		hi = max(hi, id)
	}
	return hi + 1
}

// applyDirOp applies a decision of the registrar here.
func (cn *clusterNode) applyDirOp(op dirOp, from string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if op.Kind == dirRegister {
		if a, ok := cn.srv.im.dir.account(op.ID); ok {
			if a.Name != op.Name {
				return fmt.Errorf("account %d is %q here, %q on %s: the directories diverged", op.ID, a.Name, op.Name, from)
			}
			return nil
		}
		if next := cn.nextUserID(); op.ID > next && from != "" {
			if err := cn.dirSync(from); err != nil { // we missed some: catch up first
				return err
			}
			if _, ok := cn.srv.im.dir.account(op.ID); ok {
				return nil
			}
		}
	}
	res, err := cn.applyLocal(ctx, op)
	if err != nil {
		return err
	}
	if op.Kind == dirRegister && res.Op.ID != op.ID {
		return fmt.Errorf("account %q got id %d here, %d on %s: the directories diverged", op.Name, res.Op.ID, op.ID, from)
	}
	return nil
}

// applyLocal applies op to this node's store and directory (api_im.go's
// logic, without going through the registrar).
func (cn *clusterNode) applyLocal(ctx context.Context, op dirOp) (dirResult, error) {
	s := cn.srv
	d := s.im.dir
	res := dirResult{Op: op}
	switch op.Kind {
	case dirRegister:
		if a, ok := d.accountByName(op.Name); ok {
			res.Op.ID, res.Op.Hash, res.Op.Created = a.ID, a.hash, a.Created.UnixMilli()
			return res, nil
		}
		var r *storage.AccountResult
		if err := s.commitWait(ctx, func(b *storage.Batch) { r = b.Register(op.Name, op.Hash) }); err != nil {
			return res, err
		}
		if r.Err != nil {
			return res, r.Err
		}
		d.mu.Lock()
		a := d.putLocked(&r.Account)
		d.mu.Unlock()
		res.Op.ID, res.Op.Hash, res.Op.Created, res.Created = a.ID, a.hash, r.Account.Created, r.New
	case dirCreateGroup:
		if _, ok := d.account(op.User); !ok {
			res.Err = "nouser"
			return res, nil
		}
		var created, joined *storage.GroupResult
		if err := s.commitWait(ctx, func(b *storage.Batch) {
			created = b.CreateGroup(op.Name, op.User)
			joined = b.JoinGroup(op.Name, op.User)
		}); err != nil {
			return res, err
		}
		if created.Err != nil {
			return res, created.Err
		}
		if !created.Changed {
			if _, ok := s.groupInfo(op.Name); ok {
				res.Err = "exists"
				return res, nil
			}
		}
		d.mu.Lock()
		if d.groups[op.Name] == nil {
			d.groups[op.Name] = &group{Group: created.Group, members: map[uint64]bool{}}
		}
		if joined.Err == nil {
			d.joinLocked(op.Name, op.User)
		}
		d.mu.Unlock()
		s.groupSubscription(op.User, op.Name, true)
		res.Created = created.Changed
	case dirJoin:
		if _, ok := d.account(op.User); !ok {
			res.Err = "nouser"
			return res, nil
		}
		if _, ok := s.groupInfo(op.Name); !ok {
			res.Err = "nogroup"
			return res, nil
		}
		var r *storage.GroupResult
		if err := s.commitWait(ctx, func(b *storage.Batch) { r = b.JoinGroup(op.Name, op.User) }); err != nil {
			return res, err
		}
		if r.Err != nil {
			res.Err = "nogroup"
			return res, nil
		}
		d.mu.Lock()
		d.joinLocked(op.Name, op.User)
		d.mu.Unlock()
		s.groupSubscription(op.User, op.Name, true)
	case dirLeave:
		member, exists := d.isMember(op.Name, op.User)
		switch {
		case !exists:
			res.Err = "nogroup"
			return res, nil
		case !member:
			res.Err = "notmember"
			return res, nil
		}
		if err := s.commitWait(ctx, func(b *storage.Batch) { b.LeaveGroup(op.Name, op.User) }); err != nil {
			return res, err
		}
		d.mu.Lock()
		if g := d.groups[op.Name]; g != nil {
			delete(g.members, op.User)
		}
		delete(d.mine[op.User], op.Name)
		d.mu.Unlock()
		s.groupSubscription(op.User, op.Name, false)
	default:
		return res, fmt.Errorf("%w: directory op %d", errWire, op.Kind)
	}
	return res, nil
}

func dirErrName(err error) string {
	switch {
	case errors.Is(err, ErrGroupExists):
		return "exists"
	case errors.Is(err, ErrNoSuchGroup):
		return "nogroup"
	case errors.Is(err, ErrNotMember):
		return "notmember"
	case errors.Is(err, ErrNoSuchUser):
		return "nouser"
	}
	return err.Error()
}

func dirErr(name, what string) error {
	switch name {
	case "exists":
		return fmt.Errorf("%w: %s", ErrGroupExists, what)
	case "nogroup":
		return fmt.Errorf("%w: %s", ErrNoSuchGroup, what)
	case "notmember":
		return fmt.Errorf("%w: %s", ErrNotMember, what)
	case "nouser":
		return ErrNoSuchUser
	}
	return fmt.Errorf("%w: registrar: %s", ErrCluster, name)
}

const dirSyncPage = 1000

// serveSync answers a peer's catch-up: accounts from an id on, and (on the
// first page) every group with its members.
func (d *dirReplica) serveSync(cn *clusterNode, body []byte) ([]byte, error) {
	var req dirSyncReq
	if err := decodeBody(body, &req); err != nil {
		return nil, err
	}
	dir := cn.srv.im.dir
	dir.mu.RLock()
	var resp dirSyncResp
	var ids []uint64
	for id := range dir.byID {
		if id >= req.FromID {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	if len(ids) > dirSyncPage {
		ids, resp.More = ids[:dirSyncPage], true
	}
	for _, id := range ids {
		a := dir.byID[id]
		resp.Accounts = append(resp.Accounts, storage.Account{ID: a.ID, Name: a.Name, Created: a.Created.UnixMilli(), Hash: a.hash})
	}
	if req.FromID <= 1 || !resp.More {
		for _, g := range dir.groups {
			wg := peerGroup{Group: g.Group}
			for u := range g.members {
				wg.Members = append(wg.Members, u)
			}
			slices.Sort(wg.Members)
			resp.Groups = append(resp.Groups, wg)
		}
	}
	dir.mu.RUnlock()
	return request(0, &resp)
}

// dirSync fetches from node what this node's directory lacks and applies
// it in id order. The applier goroutine only.
func (cn *clusterNode) dirSync(node string) error {
	isRegistrar := node == cn.registrar()
	for {
		from := cn.nextUserID()
		body, err := request(opDirSync, &dirSyncReq{FromID: from})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		resp, err := cn.c.Call(ctx, node, body)
		cancel()
		if err != nil {
			return err
		}
		var page dirSyncResp
		if len(resp) < 1 {
			return errWire
		}
		if err := decodeBody(resp[1:], &page); err != nil {
			return err
		}
		for _, a := range page.Accounts {
			if err := cn.applyDirOp(dirOp{Kind: dirRegister, ID: a.ID, Name: a.Name, Hash: a.Hash, Created: a.Created}, ""); err != nil {
				cn.log.Warn("account not synchronised", "peer", node, "account", a.Name, "err", err)
			}
		}
		for _, g := range page.Groups {
			cn.syncGroup(g, isRegistrar)
		}
		if !page.More || len(page.Accounts) == 0 {
			return nil
		}
	}
}

// syncGroup makes a group here look like a peer's: created, its members
// joined; members the registrar does not have leave.
func (cn *clusterNode) syncGroup(g peerGroup, authoritative bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	name := g.Group.Name
	if _, ok := cn.srv.groupInfo(name); !ok {
		if _, err := cn.applyLocal(ctx, dirOp{Kind: dirCreateGroup, Name: name, User: g.Group.Owner}); err != nil {
			cn.log.Warn("group not synchronised", "group", name, "err", err)
			return
		}
	}
	want := map[uint64]bool{}
	for _, u := range g.Members {
		want[u] = true
		if member, _ := cn.srv.im.dir.isMember(name, u); !member {
			_, _ = cn.applyLocal(ctx, dirOp{Kind: dirJoin, Name: name, User: u})
		}
	}
	if !authoritative {
		return
	}
	members, _ := cn.srv.GroupMembers(name)
	for _, a := range members {
		if !want[a.ID] {
			_, _ = cn.applyLocal(ctx, dirOp{Kind: dirLeave, Name: name, User: a.ID})
		}
	}
}

// --- the API's hooks (api_im.go) ---

// clusterRegister registers name through the registrar.
func (cn *clusterNode) register(ctx context.Context, name string, hash []byte) (Account, bool, error) {
	res, err := cn.dirCall(ctx, dirOp{Kind: dirRegister, Name: name, Hash: hash})
	if err != nil {
		return Account{}, false, err
	}
	a, ok := cn.srv.im.dir.account(res.Op.ID)
	if !ok {
		return Account{}, false, fmt.Errorf("%w: account %d not here", ErrCluster, res.Op.ID)
	}
	if res.Created {
		cn.imSession(a.ID) // its inbox exists from now on, here (as Register alone)
	}
	return *a, res.Created, nil
}

func (cn *clusterNode) createGroup(ctx context.Context, name string, owner uint64) (GroupInfo, error) {
	if _, err := cn.dirCall(ctx, dirOp{Kind: dirCreateGroup, Name: name, User: owner}); err != nil {
		return GroupInfo{}, err
	}
	g, _ := cn.srv.groupInfo(name)
	return g, nil
}

func (cn *clusterNode) joinGroup(ctx context.Context, name string, user uint64) (GroupInfo, error) {
	if _, err := cn.dirCall(ctx, dirOp{Kind: dirJoin, Name: name, User: user}); err != nil {
		return GroupInfo{}, err
	}
	g, _ := cn.srv.groupInfo(name)
	return g, nil
}

func (cn *clusterNode) leaveGroup(ctx context.Context, name string, user uint64) error {
	_, err := cn.dirCall(ctx, dirOp{Kind: dirLeave, Name: name, User: user})
	return err
}
