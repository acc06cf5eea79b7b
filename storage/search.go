package storage

import (
	"bytes"
	"container/heap"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble"
	"golang.org/x/text/cases"
	"golang.org/x/text/transform"
)

// History search reads, there is no word index: one reverse iterator per
// conversation, merged newest first by message id, each message's payload
// case-folded (full Unicode case folding, golang.org/x/text/cases: "STRASSE"
// finds "straße", "ΣΊΣΥΦΟΣ" finds "σίσυφος") and searched for the folded
// keyword. Only the payload is looked at until a message matches. The cost
// is therefore linear in the messages examined; the benchmark in
// search_test.go measures it, and MaxScan bounds it per call (a page may
// then come back short, with Next set to continue).

// MaxSearchConversations bounds SearchQuery.Conversations (one iterator each).
const MaxSearchConversations = 1024

// Search page sizes.
const (
	DefaultSearchLimit = 20
	MaxSearchLimit     = 1000
)

// SearchQuery is one page of a history search.
type SearchQuery struct {
	Conversations []string // searched together; duplicates are ignored
	// Keyword is matched, case-folded, anywhere in the payload. Empty
	// matches every message (a merged, newest-first view).
	Keyword string
	Before  uint64 // only ids below it; 0: from the newest
	Since   int64  // only messages Created at or after it (unix ms); 0: all
	Limit   int    // hits per page; 0: DefaultSearchLimit; at most MaxSearchLimit
	MaxScan int    // messages examined before a page returns short; 0: no bound
}

// SearchHit is one message found.
type SearchHit struct {
	Conversation string
	Message      *Message
}

// SearchResult is one page of results, newest first.
type SearchResult struct {
	Hits []SearchHit
	// Next is the Before of the next page; 0 when the search reached the
	// oldest message (or Since). Message ids are taken to be unique across
	// the conversations searched, as server ids are.
	Next uint64
	// The cost of the page: messages examined, their key and value bytes,
	// and the sstable block bytes the iterators loaded (from the block
	// cache or the disk; memtable reads are not counted there).
	Scanned    int
	BytesRead  int64
	BlockBytes uint64
}

// SearchHistory runs q. It reads Pebble directly: run it off the loops.
func (db *DB) SearchHistory(q SearchQuery) (res SearchResult, err error) {
	if len(q.Conversations) > MaxSearchConversations {
		return res, fmt.Errorf("%w: %d conversations (max %d)", ErrInvalidArgument, len(q.Conversations), MaxSearchConversations)
	}
	switch {
	case q.Limit == 0:
		q.Limit = DefaultSearchLimit
	case q.Limit < 0 || q.Limit > MaxSearchLimit:
		return res, fmt.Errorf("%w: search limit %d (want 1 to %d)", ErrInvalidArgument, q.Limit, MaxSearchLimit)
	}
	if q.MaxScan < 0 {
		return res, fmt.Errorf("%w: search MaxScan %d (want >= 0)", ErrInvalidArgument, q.MaxScan)
	}
	seen := make(map[string]bool, len(q.Conversations))
	for _, c := range q.Conversations {
		if err := checkName("conversation", c); err != nil {
			return res, err
		}
		seen[c] = true
	}
	pdb, err := db.rlock()
	if err != nil {
		return res, err
	}
	defer db.rmu.RUnlock()

	var f folder
	kw := bytes.Clone(f.fold([]byte(q.Keyword)))
	kwASCII := isASCII(kw)
	cs := make(cursors, 0, len(seen))
	defer func() { // with res a named result, so the page's cost reaches the caller
		for _, c := range cs {
			res.BlockBytes += c.it.Stats().InternalStats.BlockBytes
			if cerr := c.it.Close(); err == nil && cerr != nil {
				err = readError(cerr)
			}
		}
	}()
	for conv := range seen {
		lo, hi := historyBounds(conv, q.Before)
		it, err := pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return res, readError(err)
		}
		c := &cursor{it: it, conv: conv}
		cs = append(cs, c)
		if c.step(true) {
			continue
		}
		if err := it.Error(); err != nil {
			return res, readError(err)
		}
	}
	live := cs[:0:0]
	for _, c := range cs {
		if c.ok {
			live = append(live, c)
		}
	}
	heap.Init(&live)
	for len(live) > 0 {
		c := live[0]
		k, v := c.it.Key(), c.it.Value()
		id := c.id
		res.Scanned++
		res.BytesRead += int64(len(k) + len(v))
		if q.Since != 0 {
			if created, _, err := decodeMsgTimes(v); err != nil {
				return res, corrupt(k, err)
			} else if created < q.Since {
				heap.Pop(&live) // ids are time-ordered: the rest is older still
				continue
			}
		}
		p, err := messagePayload(v)
		if err != nil {
			return res, corrupt(k, err)
		}
		if len(kw) == 0 || (kwASCII || !isASCII(p)) && bytes.Contains(f.fold(p), kw) {
			m := new(Message)
			if err := decodeMessage(v, m); err != nil {
				return res, corrupt(k, err)
			}
			res.Hits = append(res.Hits, SearchHit{Conversation: c.conv, Message: m})
		}
		if c.step(false) {
			// Still the newest when it beats both children of the root
			// (one conversation often holds a run of the newest messages).
			if len(live) > 1 && !live.Less(0, 1) || len(live) > 2 && !live.Less(0, 2) {
				heap.Fix(&live, 0)
			}
		} else {
			if err := c.it.Error(); err != nil {
				return res, readError(err)
			}
			heap.Pop(&live)
		}
		if len(res.Hits) == q.Limit || q.MaxScan > 0 && res.Scanned >= q.MaxScan {
			if len(live) > 0 {
				res.Next = id
			}
			break
		}
	}
	return res, nil
}

// cursor is one conversation's reverse iterator, positioned at id.
type cursor struct {
	it   *pebble.Iterator
	conv string
	id   uint64
	ok   bool
}

// step moves to the newest message (first) or the next older one and
// reports whether there is one.
func (c *cursor) step(first bool) bool {
	if first {
		c.ok = c.it.Last()
	} else {
		c.ok = c.it.Prev()
	}
	for c.ok {
		if _, id, good := splitNameSeqKey(spaceHistory, c.it.Key()); good {
			c.id = id
			return true
		}
		c.ok = c.it.Prev() // not a history key: skip it
	}
	return false
}

// cursors is a max-heap of cursors by id (then conversation, so the order
// is total).
type cursors []*cursor

func (h cursors) Len() int { return len(h) }
func (h cursors) Less(i, j int) bool {
	if h[i].id != h[j].id {
		return h[i].id > h[j].id
	}
	return h[i].conv < h[j].conv
}
func (h cursors) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *cursors) Push(x any)   { *h = append(*h, x.(*cursor)) }
func (h *cursors) Pop() any {
	old := *h
	c := old[len(old)-1]
	*h = old[:len(old)-1]
	return c
}

// folder case-folds text into a buffer it reuses. ASCII (most chat text
// and every keyword typed in English) is folded by a byte loop, which is
// what full case folding does to ASCII; anything else goes through
// cases.Fold. Invalid UTF-8 is passed through as is.
type folder struct {
	caser cases.Caser
	init  bool
	buf   []byte
}

func (f *folder) fold(p []byte) []byte {
	f.buf = slices.Grow(f.buf[:0], len(p))[:len(p)]
	buf := f.buf
	for i, c := range p {
		if c >= 0x80 {
			f.buf = buf[:i]
			return f.foldUnicode(p[i:])
		}
		buf[i] = asciiFold[c]
	}
	return buf
}

// asciiFold maps each ASCII byte to its case folding (A-Z to a-z).
var asciiFold = func() (t [128]byte) {
	for i := range t {
		t[i] = byte(i)
		if 'A' <= i && i <= 'Z' {
			t[i] += 'a' - 'A'
		}
	}
	return t
}()

func (f *folder) foldUnicode(rest []byte) []byte {
	if !f.init {
		f.caser, f.init = cases.Fold(), true
	}
	f.caser.Reset()
	for {
		// Transform straight into the reused buffer (transform.Append
		// allocates on every call); folding rarely grows text by half.
		f.buf = slices.Grow(f.buf, len(rest)+len(rest)/2+8)
		nDst, nSrc, err := f.caser.Transform(f.buf[len(f.buf):cap(f.buf)], rest, true)
		f.buf = f.buf[:len(f.buf)+nDst]
		rest = rest[nSrc:]
		switch {
		case err == transform.ErrShortDst:
			continue
		case err != nil: // cannot happen for Fold; keep the text unfolded rather than lose it
			f.buf = append(f.buf, rest...)
		}
		return f.buf
	}
}

func isASCII(p []byte) bool {
	for _, c := range p {
		if c >= 0x80 {
			return false
		}
	}
	return true
}
