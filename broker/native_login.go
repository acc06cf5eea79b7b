package broker

import (
	"strconv"

	"github.com/cimgo/cim/broker/topic"
	"github.com/cimgo/cim/broker/wire"
	"github.com/cimgo/cim/storage"
	"golang.org/x/crypto/bcrypt"
)

// A native login names an account by id or name (both: they must agree)
// and proves it with the account's password (bcrypt, checked off the loop)
// or a token from an earlier login ack (token.go). An account registered
// without a password (cim's accounts had none) logs in by id and name
// alone. A refusal is a login ack with 9100 (9101 for an expired token),
// then the connection closes.

// handleLogin checks a login. Loop only.
func (c *nativeConn) handleLogin(l *wire.Login) {
	srv := c.loop.srv
	if srv.store == nil {
		c.refuseLogin(wire.CodeFailure, ErrNoStore.Error())
		return
	}
	var acct *Account
	switch {
	case l.User != 0:
		a, ok := srv.im.dir.account(l.User)
		if !ok || l.Name != "" && a.Name != l.Name {
			c.refuseLogin(wire.CodeAccountMismatch, "no such account")
			return
		}
		acct = a
	case l.Name != "":
		a, ok := srv.im.dir.accountByName(l.Name)
		if !ok {
			c.refuseLogin(wire.CodeAccountMismatch, "no such account")
			return
		}
		acct = a
	default:
		c.refuseLogin(wire.CodeBadArgument, "login: user id or name required")
		return
	}
	ka := l.Keepalive
	switch {
	case l.Token != "":
		id, err := srv.im.tokens.verify(l.Token, srv.opts.Now())
		switch {
		case err == errTokenExpired:
			c.refuseLogin(wire.CodeTokenExpired, "token expired: log in with the password")
		case err != nil || id != acct.ID:
			c.refuseLogin(wire.CodeAccountMismatch, "bad token")
		default:
			c.finishLogin(acct, ka)
		}
	case acct.hash != nil:
		hash, pass := acct.hash, []byte(l.Password) // (a copy: the frame aliases the read buffer)
		offLoop(&c.transport, func() bool { return bcrypt.CompareHashAndPassword(hash, pass) == nil }, func(ok bool) {
			if !ok {
				c.refuseLogin(wire.CodeAccountMismatch, "wrong password")
				return
			}
			c.finishLogin(acct, ka)
		})
	default:
		c.finishLogin(acct, ka)
	}
}

// refuseLogin answers a login with code and closes. Loop only.
func (c *nativeConn) refuseLogin(code wire.Code, why string) {
	srv := c.loop.srv
	srv.log.Info("auth failed", "protocol", "native", "remote", c.gc.RemoteAddr(), "code", uint16(code), "why", why)
	c.appendFrame(&wire.LoginAck{Code: code, Text: why, Time: srv.opts.Now().UnixMilli()})
	c.linger()
}

// nativeKeepalive is the keepalive a client gets when it asks for none.
const nativeKeepalive = 60

// finishLogin attaches the user's session, answers the login and lets the
// session send what waited for it (offline messages). Loop only.
func (c *nativeConn) finishLogin(acct *Account, askedKa uint32) {
	srv := c.loop.srv
	ka := int(askedKa)
	if ka == 0 {
		ka = nativeKeepalive
	}
	if max := srv.opts.MaxKeepalive; max > 0 && ka > max {
		ka = max
	}
	c.acct = acct
	c.id = acct.ident
	c.kaSpan = int32(ka) + int32(ka+1)/2
	a := attachment{key: nativeKey(acct.ID), ident: c.id, expiry: foreverExpiry, window: srv.opts.MaxInflight, version: 1}
	if o := srv.opts.Owner; o != nil {
		offLoop(&c.transport, func() ownerResult { return acquire(o, a.key) }, func(r ownerResult) {
			if r.err != nil {
				c.refuseLogin(wire.CodeNoServer, "session owner unreachable")
				return
			}
			a.moved = r.snap
			c.attach(a, ka)
		})
		return
	}
	c.attach(a, ka)
}

func nativeKey(user uint64) skey { return skey{storage.ProtocolNative, strconv.FormatUint(user, 10)} }

// attach binds the session and answers the login. Loop only.
func (c *nativeConn) attach(a attachment, ka int) {
	srv := c.loop.srv
	now := srv.now()
	s, _ := srv.sessions.attach(a, c, now)
	c.sess = s
	c.lastSeen = uint32(now)
	c.state = stateActive
	srv.stats.ClientsConnected.Add(1)
	srv.im.dir.setOnline(c.acct.ID, +1)
	srv.imSubscriptions(s, c.acct.ID)
	wall := srv.opts.Now()
	token, exp := srv.im.tokens.sign(c.acct.ID, c.acct.Name, wall)
	c.appendFrame(&wire.LoginAck{Code: wire.CodeOK, User: c.acct.ID, Name: c.acct.Name, Token: token,
		TokenExpires: exp.UnixMilli(), Time: wall.UnixMilli(), Node: srv.opts.NodeName, Keepalive: uint32(ka),
		MaxFrame: srv.opts.MaxPacketSize})
	srv.log.Info("client connected", "protocol", "native", "user", c.acct.Name, "id", c.acct.ID, "remote", c.gc.RemoteAddr(), "keepalive_s", ka)
	c.loop.wheel.add(&c.transport, now+int64(max(c.kaSpan, 1)))
	s.start(c, now) // offline messages follow the login ack
}

// imSubscriptions gives a user's session the subscriptions every native
// session has: its inbox, everyone, and its groups (sent to by others, not
// echoed to the sender). Any goroutine; never with s.mu held.
func (srv *Server) imSubscriptions(s *session, user uint64) {
	want := []subEntry{
		{inboxTopic(user), topic.Subscription{QoS: 1}},
		{allTopic, topic.Subscription{QoS: 0, NoLocal: true}},
	}
	for _, g := range srv.im.dir.groupsOf(user) {
		want = append(want, subEntry{groupTopic(g), topic.Subscription{QoS: 1, NoLocal: true}})
	}
	s.mu.Lock()
	have := make(map[string]bool, len(s.subs))
	for _, e := range s.subs {
		have[e.filter] = true
	}
	changed := false
	for _, w := range want {
		if !have[w.filter] {
			srv.subscribeLocked(s, w.filter, w.sub)
			changed = true
		}
	}
	if changed {
		s.saveLocked(0)
	}
	s.mu.Unlock()
}

// hashPassword makes a credential hash for a new account (off the loops:
// bcrypt is slow on purpose). An empty password makes none.
func hashPassword(password string) ([]byte, error) {
	if password == "" {
		return nil, nil
	}
	return bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
}

// imSession returns the session of a native user, making it (offline,
// subscribed to its inbox, everyone and its groups, stored) if the user
// never logged in: a message for a user who has not logged in yet waits in
// that session's queue. Any goroutine; never with a session lock held.
func (srv *Server) imSession(user uint64) *session {
	if cn := srv.clusterNode(); cn != nil {
		return cn.imSession(user) // cluster hook (cluster_sync.go): nil when it lives on another node
	}
	s, created := srv.sessions.ensure(nativeKey(user), foreverExpiry, 1)
	if created {
		srv.imSubscriptions(s, user)
	}
	return s
}
