package broker

import (
	"cmp"
	"errors"
	"slices"
	"time"

	"github.com/cimgo/cim/storage"
)

// A stored session's queue can be far longer than what it keeps in memory.
// Every QoS 1/2 message queued for a persistent session is stored (o␀) the
// moment it is routed; memory holds at most Options.MaxQueued of them. Past
// that the queue continues on disk only: from seq diskFrom on, messages are
// stored but not kept in memory, and so is every message after them, so the
// order holds. When the client is connected and the memory queue runs low,
// the next page is read back from disk off the event loop (pageIn), and the
// disk part shrinks until it is gone. A node restarting is the same case:
// its sessions' queues start wholly on disk. Only the store's own caps
// (storage.Options: messages and bytes per session, drop-oldest by default)
// ever discard an acknowledged message, and those drops are counted in
// $SYS, reported by the store per batch and logged once per session.
//
// A page may only read what the store already has: a message routed to the
// session a moment ago sits in its router's batch until that commits. So the
// seqs of disk-only messages whose batch is not committed yet are kept
// (unsaved), and a page stops below the oldest of them.

// spill is a session's disk-only part of its queue.
type spill struct {
	from    uint64   // the first seq not in memory
	unsaved []uint64 // disk-only seqs whose batch is not committed yet, ascending
	paging  bool     // a page is being read
}

// spillLocked keeps q, a stored message, on disk only.
// REQUIRES: s.mu held.
func (s *session) spillLocked(q queued, lb *lazyBatch) {
	x := s.rareLocked()
	if x.disk == nil {
		x.disk = &spill{from: q.seq}
	}
	x.disk.unsaved = append(x.disk.unsaved, q.seq)
	lb.spilled = append(lb.spilled, spilled{s, q.seq})
}

// spilled is one disk-only message in a batch being committed.
type spilled struct {
	s   *session
	seq uint64
}

// saved is told that the batch holding disk-only message seq committed
// (err nil) or failed. Any goroutine.
func (s *session) saved(seq uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.diskLocked()
	if d == nil {
		return
	}
	if i := slices.Index(d.unsaved, seq); i >= 0 {
		d.unsaved = slices.Delete(d.unsaved, i, i+1)
	}
	if err == nil {
		s.pumpLocked(s.srv.now())
	}
}

// pageInLocked starts reading the next page of the disk part, if the client
// is there to take it and memory has room. REQUIRES: s.mu held.
func (s *session) pageInLocked() {
	d := s.diskLocked()
	if d == nil || d.paging || s.ep == nil || !s.ready || s.ended || len(s.queueLocked()) > s.srv.opts.MaxQueued/2 {
		return
	}
	upTo := s.seqLocked()
	if len(d.unsaved) > 0 {
		upTo = d.unsaved[0] - 1
	}
	if upTo < d.from {
		return // the next message is still being written: its commit pumps again
	}
	d.paging = true
	go s.srv.pageIn(s, d.from, upTo, max(s.srv.opts.MaxQueued/2, 1))
}

var errPageFull = errors.New("broker: page full")

// pageIn reads at most max messages of s's disk part, seqs from..upTo, and
// appends them to its memory queue. Off the event loops (disk I/O).
func (srv *Server) pageIn(s *session, from, upTo uint64, max int) {
	var page, released []*queued
	_, err := srv.store.ReadQueue(s.key.storeKey(), from, max, func(seq uint64, r *storage.Message) error {
		if seq > upTo {
			return errPageFull
		}
		q := &queued{m: loadMessage(r), subIDs: r.SubIDs, qos: r.QoS, retain: r.Retain, seq: seq, tag: r.PacketID, offline: true}
		if r.QoS == 2 && r.Sent {
			released = append(released, q) // its PUBREC came before a restart: only the release is due
		} else {
			page = append(page, q)
		}
		return nil
	})
	if errors.Is(err, errPageFull) {
		err = nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.diskLocked()
	if d == nil || s.ended || d.from != from {
		return
	}
	d.paging = false
	if err != nil {
		srv.log.Error("reading a stored queue", "client", s.key.id, "err", err)
		go func() { // the store may be recovering: try again shortly
			time.Sleep(time.Second)
			s.mu.Lock()
			s.pageInLocked()
			s.mu.Unlock()
		}()
		return
	}
	s.restoreReleasedLocked(released)
	x := s.rareLocked()
	x.queue = append(x.queue, page...)
	page = append(page, released...) // for the count below
	slices.SortFunc(page, func(a, b *queued) int { return cmp.Compare(a.seq, b.seq) })
	next := upTo + 1 // everything up to upTo was read or is gone
	if len(page) == max {
		next = page[len(page)-1].seq + 1 // a full page: more may follow
	}
	if next > s.seqLocked() && len(d.unsaved) == 0 {
		s.rare.disk = nil // the disk part is all in memory again
	} else {
		d.from = next
	}
	s.pumpLocked(srv.now())
}

// restoreReleasedLocked puts QoS 2 deliveries whose first phase completed
// before a restart back in flight, released, under their recorded tag, and
// resends their release if the client is there. REQUIRES: s.mu held.
func (s *session) restoreReleasedLocked(list []*queued) {
	for _, q := range list {
		if _, used := s.inflight[q.tag]; used || q.tag == 0 {
			s.dropQueuedLocked(q.seq) // cannot be resumed under its id: the receiver has the message
			continue
		}
		if s.inflight == nil {
			s.inflight = make(map[uint16]*inflight)
		}
		s.sendSeq++
		f := &inflight{queued: *q, order: s.sendSeq, tag: q.tag, rel: true}
		f.m = nil
		s.inflight[q.tag] = f
		if s.ep != nil && s.ready {
			s.ep.deliver(delivery{tag: f.tag, qos: 2, dup: true, released: true})
		}
	}
}
