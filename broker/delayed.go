package broker

import (
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cimgo/cim/storage"
)

// Delayed messages: a message sent with a delay (native `Send.Delay`, the
// HTTP API, or an MQTT publish to `$delayed/<seconds>/<topic>`, EMQX's
// convention) is stored at d␀<due>␀<id> and routed when its time comes, by
// one scheduler goroutine (no timer per message) that sleeps until the
// earliest due time. The routing and the deletion of the stored copy are
// one batch, so a crash delivers it at worst once more (at least once, as
// QoS 1), never not at all; a restart delivers what fell due while the
// node was down.

type delayedSched struct {
	srv  *Server
	wake chan struct{}
	mu   sync.Mutex
	next int64 // REQUIRES: mu held. earliest due time known (unix ms), 0: none
}

func newDelayedSched(srv *Server) *delayedSched {
	return &delayedSched{srv: srv, wake: make(chan struct{}, 1)}
}

// schedule stores rec to be routed at due (unix ms) with what fill adds to
// the same batch, and calls done once it is stored. Any goroutine.
func (d *delayedSched) schedule(rec *storage.Message, due int64, fill func(*storage.Batch), done func(error)) {
	db := d.srv.store
	b := db.NewBatch()
	b.PutDelayed(due, rec)
	fill(b)
	after := func(err error) {
		if err == nil {
			d.mu.Lock()
			if d.next == 0 || due < d.next {
				d.next = due
				select {
				case d.wake <- struct{}{}:
				default:
				}
			}
			d.mu.Unlock()
		}
		done(err)
	}
	if err := db.Commit(b, after); err != nil {
		after(err)
	}
}

// run delivers delayed messages as they fall due until stop closes.
func (d *delayedSched) run(stop <-chan struct{}) {
	for {
		next, ok, err := d.srv.store.NextDue()
		wait := time.Hour
		switch {
		case err != nil:
			d.srv.log.Error("delayed messages: reading the next due", "err", err)
			wait = time.Second
		case ok:
			wait = time.Until(time.UnixMilli(next.At))
		}
		d.mu.Lock()
		d.next = 0
		if ok {
			d.next = next.At
		}
		d.mu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-stop:
				t.Stop()
				return
			case <-d.wake:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		d.deliverDue()
		select {
		case <-stop:
			return
		default:
		}
	}
}

// deliverDue routes every message due now, a page at a time.
func (d *delayedSched) deliverDue() {
	srv := d.srv
	now := srv.opts.Now().UnixMilli()
	var after storage.Due
	for {
		type due struct {
			at  storage.Due
			rec *storage.Message
		}
		var page []due
		n, err := srv.store.ReadDue(now, after, 256, func(at storage.Due, m *storage.Message) error {
			page = append(page, due{at, m})
			return nil
		})
		if err != nil {
			srv.log.Error("delayed messages: reading what is due", "err", err)
			return
		}
		var wg sync.WaitGroup
		for _, e := range page {
			wg.Add(1)
			srv.routeDelayed(e.rec, e.at, func() { wg.Done() })
			after = e.at
		}
		wg.Wait() // deleted before the next page is read
		if n < 256 {
			return
		}
	}
}

// routeDelayed routes a delayed message that fell due and deletes its
// stored copy in the same batch. Any goroutine.
func (srv *Server) routeDelayed(rec *storage.Message, at storage.Due, done func()) {
	m := loadMessage(rec)
	m.Created = srv.now() // it is published now
	var from *session
	if m.Sender != 0 {
		from = srv.sessions.lookup(nativeKey(m.Sender)) // (no-local for groups and everyone)
	}
	conv, indexFor := conversationOf(m)
	srv.routeWith(m, from, func(_ int, err error) {
		if err != nil {
			srv.log.Error("delayed message not delivered: retried later", "id", m.ID, "err", err)
		}
		done()
	}, func(lb *lazyBatch) {
		b := lb.get()
		b.DeleteDelayed(at)
		if conv != "" {
			b.PutHistory(conv, storeMessage(m), indexFor...)
		}
	})
}

// conversationOf is the history conversation of a native message on its
// topic, "" for none.
func conversationOf(m *Message) (string, []uint64) {
	if m.Sender == 0 {
		return "", nil
	}
	switch t := m.Topic; {
	case t == allTopic:
		return allConversation, nil
	case strings.HasPrefix(t, inboxPrefix):
		if to, err := strconv.ParseUint(t[len(inboxPrefix):], 10, 64); err == nil {
			return privateConversation(m.Sender, to), []uint64{m.Sender, to}
		}
	case strings.HasPrefix(t, groupPrefix):
		return groupConversation(t[len(groupPrefix):]), nil
	}
	return "", nil
}

// parseDelayedTopic splits an MQTT "$delayed/<seconds>/<topic>"; ok is
// false if name is not one.
func parseDelayedTopic(name string) (delay time.Duration, topic string, ok bool) {
	rest, found := strings.CutPrefix(name, "$delayed/")
	if !found {
		return 0, "", false
	}
	secs, t, found := strings.Cut(rest, "/")
	n, err := strconv.ParseUint(secs, 10, 32)
	if !found || err != nil || t == "" {
		return 0, "", false
	}
	return time.Duration(n) * time.Second, t, true
}
