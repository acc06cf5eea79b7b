package storage

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Keyspace prefixes. One byte plus a 0x00 separator keeps every keyspace a
// contiguous range, so a reader (or a range delete) never touches another.
// doc.go draws each one.
const (
	spaceAccount      = 'a'
	spaceName         = 'n'
	spaceSession      = 's'
	spaceQueue        = 'o'
	spaceRetained     = 'r'
	spaceHistory      = 'h'
	spaceConversation = 'c' // a user's conversations (search index)
	spaceDelayed      = 'd'
	spaceGroup        = 'g'
	spaceMember       = 'p' // group -> members
	spaceUserGroup    = 'u' // user -> groups
	spaceDedup        = 'i'
	spaceDedupMark    = 'j' // sender -> the highest numeric client message id recorded
	spaceMeta         = 'm'
	// Used only while migrating a version-1 store (migrate.go).
	spaceMigSession = 'S'
	spaceMigQueue   = 'O'

	sep            = 0x00
	seqLen         = 8 // big-endian uint64 after the last separator
	prefixLen      = 2 // space byte + separator
	queueSuffixLen = 1 + seqLen
)

// MaxNameLen bounds every string that is part of a key (a client id, a
// topic, a user, group or conversation name, a dedup sender or client
// message id): 65535 bytes, the longest MQTT string.
const MaxNameLen = 65535

// checkName reports whether s can be a key component: non-empty, at most
// MaxNameLen bytes, and free of the 0x00 separator (a 0x00 inside a client
// id would make its queue range overlap another client's).
func checkName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty %s", ErrInvalidKey, what)
	case len(s) > MaxNameLen:
		return fmt.Errorf("%w: %s of %d bytes (max %d)", ErrInvalidKey, what, len(s), MaxNameLen)
	case strings.IndexByte(s, sep) >= 0:
		return fmt.Errorf("%w: %s %q contains U+0000", ErrInvalidKey, what, s)
	}
	return nil
}

// SessionKey is the key of a session and of its queue: the protocol byte,
// then the client id (MQTT) or user id (native). Keying by the pair keeps
// MQTT client "alice" and native user "alice" apart. Every DB method that
// takes a session key wants one built here.
func SessionKey(protocol byte, id string) string {
	b := make([]byte, 0, 1+len(id))
	return string(append(append(b, protocol), id...))
}

// SplitSessionKey is the inverse of SessionKey. ok is false for a string
// SessionKey did not build (no known protocol byte, or no id).
func SplitSessionKey(key string) (protocol byte, id string, ok bool) {
	if len(key) < 2 || !knownProtocol(key[0]) {
		return 0, "", false
	}
	return key[0], key[1:], true
}

func knownProtocol(p byte) bool { return p == ProtocolMQTT || p == ProtocolNative }

// checkSessionKey validates a key from SessionKey.
func checkSessionKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty session key", ErrInvalidKey)
	}
	if !knownProtocol(key[0]) {
		return fmt.Errorf("%w: session key %q does not start with a protocol byte (use SessionKey)", ErrInvalidKey, key)
	}
	return checkName("session id", key[1:])
}

func appendPrefix(dst []byte, space byte) []byte { return append(dst, space, sep) }

func appendSeq(dst []byte, seq uint64) []byte { return binary.BigEndian.AppendUint64(dst, seq) }

// appendNameKey appends space␀name: s␀<sessionKey>, r␀<topic>, n␀<userName>.
func appendNameKey(dst []byte, space byte, name string) []byte {
	return append(appendPrefix(dst, space), name...)
}

// appendIDKey appends space␀<id u64>: a␀<userID>.
func appendIDKey(dst []byte, space byte, id uint64) []byte {
	return appendSeq(appendPrefix(dst, space), id)
}

// appendNameSeqKey appends space␀name␀<seq>: o␀, h␀.
func appendNameSeqKey(dst []byte, space byte, name string, seq uint64) []byte {
	return appendSeq(append(appendNameKey(dst, space, name), sep), seq)
}

// appendPairKey appends space␀a␀b: p␀<group>␀<userID> style keys with a
// string first and a string (or encoded integer) second.
func appendPairKey(dst []byte, space byte, a string, b []byte) []byte {
	return append(append(appendNameKey(dst, space, a), sep), b...)
}

// appendQueueKey appends o␀<sessionKey>␀<seq>.
func appendQueueKey(dst []byte, key string, seq uint64) []byte {
	return appendNameSeqKey(dst, spaceQueue, key, seq)
}

// ownerBounds returns [x␀<name>␀, x␀<name>␁): every key one owner holds in
// keyspace x (a session's queue, a conversation's history, a group's
// members) and nothing else, because names hold no 0x00.
func ownerBounds(space byte, name string) (lo, hi []byte) {
	lo = append(appendNameKey(nil, space, name), sep)
	hi = append([]byte(nil), lo...)
	hi[len(hi)-1] = sep + 1
	return lo, hi
}

// idBounds is ownerBounds for a keyspace owned by a u64: u␀<userID>␀.
func idBounds(space byte, id uint64) (lo, hi []byte) {
	lo = append(appendIDKey(nil, space, id), sep)
	hi = append([]byte(nil), lo...)
	hi[len(hi)-1] = sep + 1
	return lo, hi
}

// queueBounds returns the key range of one session's queue.
func queueBounds(key string) (lo, hi []byte) { return ownerBounds(spaceQueue, key) }

// spaceBounds returns [x␀, x␁): the whole keyspace x.
func spaceBounds(space byte) (lo, hi []byte) {
	return []byte{space, sep}, []byte{space, sep + 1}
}

// splitNameSeqKey splits x␀<name>␀<seq> into its name (aliasing key) and seq.
func splitNameSeqKey(space byte, key []byte) (name []byte, seq uint64, ok bool) {
	if len(key) < prefixLen+1+queueSuffixLen || key[0] != space || key[1] != sep ||
		key[len(key)-queueSuffixLen] != sep {
		return nil, 0, false
	}
	return key[prefixLen : len(key)-queueSuffixLen], binary.BigEndian.Uint64(key[len(key)-seqLen:]), true
}

// splitQueueKey splits o␀<sessionKey>␀<seq>.
func splitQueueKey(key []byte) (session []byte, seq uint64, ok bool) {
	return splitNameSeqKey(spaceQueue, key)
}

// delayedKey returns d␀<dueUnixMs>␀<msgID>. The due time is a big-endian
// uint64 so a scan from d␀ visits delayed messages in due order.
func delayedKey(dst []byte, due int64, msgID uint64) []byte {
	dst = appendSeq(appendPrefix(dst, spaceDelayed), uint64(due))
	return appendSeq(append(dst, sep), msgID)
}

func splitDelayedKey(key []byte) (due int64, msgID uint64, ok bool) {
	if len(key) != prefixLen+seqLen+1+seqLen || key[0] != spaceDelayed || key[1] != sep || key[prefixLen+seqLen] != sep {
		return 0, 0, false
	}
	return int64(binary.BigEndian.Uint64(key[prefixLen:])), binary.BigEndian.Uint64(key[len(key)-seqLen:]), true
}

// Meta keys (m␀<name>).
var (
	metaFormat    = appendNameKey(nil, spaceMeta, "format")    // uint: the key layout version
	metaMigrating = appendNameKey(nil, spaceMeta, "migrating") // uint: migration phase, while one runs
	metaNextUser  = appendNameKey(nil, spaceMeta, "next-user") // uint: the next user id to assign
)
