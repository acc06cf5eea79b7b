package storage

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Keyspace prefixes. One byte plus a 0x00 separator keeps every keyspace a
// contiguous range, so a reader (or a range delete) never touches another.
const (
	spaceAccount   = 'a'
	spaceName      = 'n'
	spaceSession   = 's'
	spaceQueue     = 'o'
	spaceRetained  = 'r'
	spaceHistory   = 'h'
	spaceDelayed   = 'd'
	sep            = 0x00
	seqLen         = 8 // big-endian uint64 after the last separator
	prefixLen      = 2 // space byte + separator
	queueSuffixLen = 1 + seqLen
)

// checkName reports whether s can be a key component: non-empty and free of
// the 0x00 separator (a 0x00 inside a client id would make its queue range
// overlap another client's).
func checkName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty %s", ErrInvalidKey, what)
	}
	if strings.IndexByte(s, sep) >= 0 {
		return fmt.Errorf("%w: %s %q contains U+0000", ErrInvalidKey, what, s)
	}
	return nil
}

func appendPrefix(dst []byte, space byte) []byte { return append(dst, space, sep) }

func appendSeq(dst []byte, seq uint64) []byte { return binary.BigEndian.AppendUint64(dst, seq) }

// appendNameKey appends space␀name: s␀<clientID>, r␀<topic>, n␀<userName>.
func appendNameKey(dst []byte, space byte, name string) []byte {
	return append(appendPrefix(dst, space), name...)
}

// appendQueueKey appends o␀<clientID>␀<seq>.
func appendQueueKey(dst []byte, clientID string, seq uint64) []byte {
	dst = append(appendNameKey(dst, spaceQueue, clientID), sep)
	return appendSeq(dst, seq)
}

// appendQueuePrefix appends o␀<clientID>␀, the first key of the client's queue.
func appendQueuePrefix(dst []byte, clientID string) []byte {
	return append(appendNameKey(dst, spaceQueue, clientID), sep)
}

// queueBounds returns [o␀<clientID>␀, o␀<clientID>␁): every key of one
// client's queue and nothing else, because client ids hold no 0x00.
func queueBounds(clientID string) (lo, hi []byte) {
	lo = appendQueuePrefix(nil, clientID)
	hi = append([]byte(nil), lo...)
	hi[len(hi)-1] = sep + 1
	return lo, hi
}

// spaceBounds returns [x␀, x␁): the whole keyspace x.
func spaceBounds(space byte) (lo, hi []byte) {
	return []byte{space, sep}, []byte{space, sep + 1}
}

// splitQueueKey splits o␀<clientID>␀<seq> into its client id (aliasing key)
// and seq.
func splitQueueKey(key []byte) (client []byte, seq uint64, ok bool) {
	if len(key) < prefixLen+1+queueSuffixLen || key[0] != spaceQueue || key[1] != sep ||
		key[len(key)-queueSuffixLen] != sep {
		return nil, 0, false
	}
	return key[prefixLen : len(key)-queueSuffixLen], binary.BigEndian.Uint64(key[len(key)-seqLen:]), true
}

// Keys of the keyspaces the broker does not write through this package yet
// (accounts, names, history, delayed). They are defined here so the layout
// has one owner.

// AccountKey returns a␀<userID>.
func AccountKey(userID uint64) []byte { return appendSeq(appendPrefix(nil, spaceAccount), userID) }

// NameKey returns n␀<userName>.
func NameKey(userName string) []byte { return appendNameKey(nil, spaceName, userName) }

// HistoryKey returns h␀<conversation>␀<seq>.
func HistoryKey(conversation string, seq uint64) []byte {
	return appendSeq(append(appendNameKey(nil, spaceHistory, conversation), sep), seq)
}

// DelayedKey returns d␀<dueUnixMs>␀<msgID>. The due time is a big-endian
// uint64 so a scan from d␀ visits delayed messages in due order.
func DelayedKey(dueUnixMs int64, msgID uint64) []byte {
	k := appendSeq(appendPrefix(nil, spaceDelayed), uint64(dueUnixMs))
	return appendSeq(append(k, sep), msgID)
}
