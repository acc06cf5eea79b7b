package storage

import (
	"bytes"
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func fullSession() *Session {
	return &Session{
		ClientID: "dev-1", Protocol: ProtocolMQTT, Version: 5,
		Subs: []Sub{
			{Filter: "a/+/c", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, ID: 7},
			{Filter: "cim/u/alice", QoS: 2},
		},
		ExpiryInterval: NeverExpire, DisconnectedAt: 1700000000123, Node: "node-a", NextSeq: 1 << 40,
		Rx: []uint16{1, 65535},
	}
}

func fullMessage() *Message {
	return &Message{
		ID: 1<<63 + 5, Topic: "cim/g/devs", Payload: []byte{0, 1, 2, 0xff}, QoS: 2, Retain: true,
		From: "alice", Created: 1700000000000, Expiry: 1700000060000, Props: []byte{0x26, 0, 1, 'k', 0, 1, 'v'},
		PacketID: 65535, Sent: true, SenderID: 1 << 40, SenderName: "Zoë", ClientMsgID: "c-17", SubIDs: []uint32{1, 268435455},
	}
}

// TestRecordRoundTrip stores every record kind with every field set and
// reads it back through the public readers (Account through msgpack, as
// nothing writes it yet).
func TestRecordRoundTrip(t *testing.T) {
	db, _ := openMem(t, nil)
	s, m := fullSession(), fullMessage()
	empty := &Session{ClientID: "bare", Protocol: ProtocolNative}
	mustCommit(t, db, func(b *Batch) {
		b.PutSession(s)
		b.PutSession(empty)
		b.PutQueued(mk("dev-1"), 3, m)
		b.PutRetained(m)
	})
	var got []*Session
	if err := db.LoadSessions(func(s *Session) error { got = append(got, s); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []*Session{s, empty}; !reflect.DeepEqual(got, want) { // session key order: MQTT first
		t.Fatalf("sessions:\n got %+v\nwant %+v", got, want)
	}
	gs, err := db.GetSession(mk("dev-1"))
	if err != nil || !reflect.DeepEqual(gs, s) {
		t.Fatalf("GetSession = %+v, %v", gs, err)
	}
	if _, err := db.GetSession(mk("nobody")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetSession(mk(nobody)) err = %v, want ErrNotFound", err)
	}
	seqs, msgs := loadQueue(t, db, mk("dev-1"))
	if !reflect.DeepEqual(seqs, []uint64{3}) || !reflect.DeepEqual(msgs[0], m) {
		t.Fatalf("queue: %v %+v", seqs, msgs)
	}
	var ret []*Message
	if err := db.LoadRetained(func(m *Message) error { ret = append(ret, m); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(ret) != 1 || !reflect.DeepEqual(ret[0], m) {
		t.Fatalf("retained: %+v", ret)
	}

	a := Account{ID: 42, Name: "alice", Created: 1700000000000, Hash: []byte("$argon2id$...")}
	raw, err := msgpack.Marshal(&a)
	if err != nil {
		t.Fatal(err)
	}
	var a2 Account
	if err := msgpack.Unmarshal(raw, &a2); err != nil || !reflect.DeepEqual(a, a2) {
		t.Fatalf("account round trip: %+v, %v", a2, err)
	}
}

// TestMessageEncodingIsCompact pins the on-disk size of a typical queued
// message: the short tags and omitempty are what keep a million of them small.
func TestMessageEncodingIsCompact(t *testing.T) {
	db, _ := openMem(t, nil)
	b := db.NewBatch()
	b.PutQueued(mk("c"), 1, &Message{Topic: "t/1", Payload: make([]byte, 64), QoS: 1, Created: 1700000000000})
	o := b.ops[0]
	if o.valLen > 90 { // 64 payload + ~20 of map header, tags, topic, qos, compact int
		t.Fatalf("64-byte message encodes to %d bytes", o.valLen)
	}
	var m Message
	if err := msgpack.Unmarshal(b.buf[o.off+o.keyLen:o.off+o.keyLen+o.valLen], &m); err != nil || m.Created != 1700000000000 {
		t.Fatalf("decode: %+v %v", m, err)
	}
}

func TestKeys(t *testing.T) {
	// Big-endian seqs sort numerically across byte boundaries.
	seqs := []uint64{0, 1, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, 1<<64 - 1}
	var keys [][]byte
	for i := len(seqs) - 1; i >= 0; i-- {
		keys = append(keys, appendQueueKey(nil, "c", seqs[i]))
	}
	sort.Slice(keys, func(i, j int) bool { return bytes.Compare(keys[i], keys[j]) < 0 })
	for i, k := range keys {
		client, seq, ok := splitQueueKey(k)
		if !ok || string(client) != "c" || seq != seqs[i] {
			t.Fatalf("key %d = %q: client %q seq %d ok %v, want seq %d", i, k, client, seq, ok, seqs[i])
		}
	}
	// A queue range holds its client's keys and no one else's, even a client
	// whose id extends this one.
	lo, hi := queueBounds("ab")
	in := func(k []byte) bool { return bytes.Compare(k, lo) >= 0 && bytes.Compare(k, hi) < 0 }
	for _, k := range [][]byte{appendQueueKey(nil, "ab", 0), appendQueueKey(nil, "ab", 1<<64-1)} {
		if !in(k) {
			t.Errorf("%q not in its own range", k)
		}
	}
	for _, k := range [][]byte{appendQueueKey(nil, "a", 1<<64-1), appendQueueKey(nil, "abc", 0),
		appendQueueKey(nil, "ab\x01", 0), appendNameKey(nil, spaceSession, "ab")} {
		if in(k) {
			t.Errorf("%q inside range of \"ab\"", k)
		}
	}
	if _, _, ok := splitQueueKey([]byte("s\x00abc")); ok {
		t.Error("session key parsed as queue key")
	}
	if got, want := delayedKey(nil, 256, 1), []byte("d\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"); !bytes.Equal(got, want) {
		t.Errorf("delayedKey = %q, want %q", got, want)
	}
	if got := string(appendNameSeqKey(nil, spaceHistory, "g1", 2)); got != "h\x00g1\x00\x00\x00\x00\x00\x00\x00\x00\x02" {
		t.Errorf("history key = %q", got)
	}
	if got := string(appendIDKey(nil, spaceAccount, 1)); got != "a\x00\x00\x00\x00\x00\x00\x00\x00\x01" {
		t.Errorf("account key = %q", got)
	}
	if got := string(appendNameKey(nil, spaceName, "bob")); got != "n\x00bob" {
		t.Errorf("name key = %q", got)
	}
}

func TestInvalidKeysFailTheBatch(t *testing.T) {
	db, c := openMem(t, nil)
	for name, fill := range map[string]func(*Batch){
		"empty client": func(b *Batch) { b.PutQueued(mk(""), 1, qmsg(c, "x")) },
		"nul client":   func(b *Batch) { b.DeleteSession(mk("a\x00b")) },
		"nul topic":    func(b *Batch) { b.PutRetained(&Message{Topic: "a\x00"}) },
		"empty topic":  func(b *Batch) { b.DeleteRetained("") },
		"nil session":  func(b *Batch) { b.PutSession(nil) },
		"nil message":  func(b *Batch) { b.PutQueued(mk("c"), 1, nil) },
		"bare id":      func(b *Batch) { b.PutQueued("alice", 1, qmsg(c, "x")) }, // not from SessionKey
		"no protocol":  func(b *Batch) { b.PutSession(&Session{ClientID: "x"}) },
		"long name":    func(b *Batch) { b.PutRetained(&Message{Topic: strings.Repeat("t", MaxNameLen+1)}) },
	} {
		b := db.NewBatch()
		b.PutSession(&Session{ClientID: "ok", Protocol: ProtocolMQTT})
		fill(b)
		err := db.Commit(b, func(error) { t.Errorf("%s: done called", name) })
		if !errors.Is(err, ErrInvalidKey) && !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("%s: Commit err = %v", name, err)
		}
	}
	if _, err := db.GetSession(mk("ok")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("part of a failed batch was written: %v", err)
	}
}
