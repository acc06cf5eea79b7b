package topic

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// Errors returned by ValidName and ValidFilter. They are returned bare (never
// wrapped with the offending topic) so that validating every PUBLISH costs no
// allocation; a caller that logs one has the topic at hand.
var (
	ErrEmpty          = errors.New("topic: empty")
	ErrTooLong        = errors.New("topic: longer than 65535 bytes")
	ErrInvalidUTF8    = errors.New("topic: not valid UTF-8")
	ErrNullChar       = errors.New("topic: contains U+0000")
	ErrWildcardInName = errors.New("topic: wildcard '+' or '#' in a topic name")
	ErrMultiLevel     = errors.New("topic: '#' must be alone in the last level")
	ErrSingleLevel    = errors.New("topic: '+' must be alone in its level")
	ErrShareGroup     = errors.New("topic: $share group name empty or contains '+' or '#'")
	ErrShareNoFilter  = errors.New("topic: $share group without a topic filter")
)

// MaxLen is the longest topic name or filter in bytes: an MQTT UTF-8 string
// carries a two-byte length [MQTT-4.7.3-3].
const MaxLen = 65535

// SharePrefix starts a shared subscription filter: $share/<group>/<filter>.
const SharePrefix = "$share/"

// ValidName reports whether name may be used as the topic of a PUBLISH.
//
// Control characters other than U+0000 and Unicode non-characters are
// accepted: the specification only says a sender SHOULD NOT use them, and
// rejecting them would cut off devices that do.
func ValidName(name string) error {
	if name == "" {
		return ErrEmpty // [MQTT-4.7.3-1]
	}
	if len(name) > MaxLen {
		return ErrTooLong // [MQTT-4.7.3-3]
	}
	// One pass over the bytes; the UTF-8 decoder only runs when a non-ASCII
	// byte was seen, which for device topics is almost never.
	ascii := true
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == 0:
			return ErrNullChar // [MQTT-4.7.3-2], [MQTT-1.5.4-2]
		case c == '+' || c == '#':
			return ErrWildcardInName // [MQTT-3.3.2-2], [MQTT-4.7.1-1] (3.1.1), [MQTT-4.7.0-1] (5.0)
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	if !ascii && !utf8.ValidString(name) {
		return ErrInvalidUTF8 // [MQTT-1.5.3-1], [MQTT-1.5.4-1]; also rejects surrogates
	}
	return nil
}

// ValidFilter reports whether filter may be used in a SUBSCRIBE or
// UNSUBSCRIBE. It accepts shared subscriptions, $share/<group>/<filter>, whose
// group is non-empty and free of '/', '+' and '#', and whose filter is itself
// valid [MQTT-4.8.2-1], [MQTT-4.8.2-2]. A filter that is just "$share" or
// starts "$share" without the slash is an ordinary filter. Whether a client
// may use shared subscriptions at all (MQTT 3.1.1 has none) is the broker's
// call.
func ValidFilter(filter string) error {
	if filter == "" {
		return ErrEmpty // [MQTT-4.7.3-1]
	}
	if len(filter) > MaxLen {
		return ErrTooLong // [MQTT-4.7.3-3]
	}
	ascii := true
	for i := 0; i < len(filter); i++ {
		switch c := filter[i]; {
		case c == 0:
			return ErrNullChar // [MQTT-4.7.3-2]
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	if !ascii && !utf8.ValidString(filter) {
		return ErrInvalidUTF8 // [MQTT-1.5.3-1], [MQTT-1.5.4-1]
	}
	if group, inner, shared := ParseShare(filter); shared {
		if group == "" || strings.ContainsAny(group, "+#") {
			return ErrShareGroup // [MQTT-4.8.2-1], [MQTT-4.8.2-2]; a '/' cannot occur: it ends the group
		}
		if inner == "" {
			return ErrShareNoFilter // [MQTT-4.8.2-2]: the group is followed by "/" and a topic filter
		}
		filter = inner
	}
	for i := 0; i <= len(filter); {
		var level string
		level, i = nextLevel(filter, i)
		if level == "#" {
			if i <= len(filter) {
				return ErrMultiLevel // [MQTT-4.7.1-2]: '#' must be the last level
			}
			continue
		}
		if level == "+" {
			continue
		}
		if strings.IndexByte(level, '#') >= 0 {
			return ErrMultiLevel // [MQTT-4.7.1-2]: '#' must occupy a whole level
		}
		if strings.IndexByte(level, '+') >= 0 {
			return ErrSingleLevel // [MQTT-4.7.1-3]: '+' must occupy a whole level
		}
	}
	return nil
}

// ParseShare splits a shared subscription filter $share/<group>/<inner>.
// inner is always the filter that decides what matches: for a filter not
// starting with "$share/" it is filter itself, with group empty and shared
// false. ParseShare does not validate: "$share/g" yields group "g", inner ""
// and shared true, which ValidFilter rejects. The returned strings are
// substrings of filter.
func ParseShare(filter string) (group, inner string, shared bool) {
	if !strings.HasPrefix(filter, SharePrefix) {
		return "", filter, false
	}
	rest := filter[len(SharePrefix):]
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return rest, "", true
	}
	return rest[:i], rest[i+1:], true
}

// Match reports whether the topic filter matches the topic name. A shared
// filter matches through its inner filter, as the trie does. A filter that
// starts with a wildcard does not match a name that starts with '$'
// [MQTT-4.7.2-1], so "#" does not see $SYS topics. Match does not validate
// either argument and does not allocate.
func Match(filter, name string) bool {
	_, filter, _ = ParseShare(filter)
	if name != "" && name[0] == '$' && filter != "" && (filter[0] == '+' || filter[0] == '#') {
		return false // [MQTT-4.7.2-1]
	}
	// Both strings are walked level by level; an index past the end of a
	// string (len+1) means its last level has been consumed.
	fi, ni := 0, 0
	for fi <= len(filter) {
		var fl, nl string
		fl, fi = nextLevel(filter, fi)
		if fl == "#" {
			return true // matches the remaining levels, or none: "a/#" matches "a" [MQTT-4.7.1-2]
		}
		if ni > len(name) {
			return false
		}
		nl, ni = nextLevel(name, ni)
		if fl != "+" && fl != nl {
			return false
		}
	}
	return ni > len(name)
}

// nextLevel returns the level of s that starts at byte i and the start of the
// level after it. When the returned level is the last one, next is len(s)+1,
// so "a/" has two levels, "a" and "", as the specification counts them.
// Callers loop while i <= len(s).
func nextLevel(s string, i int) (level string, next int) {
	j := strings.IndexByte(s[i:], '/')
	if j < 0 {
		return s[i:], len(s) + 1
	}
	return s[i : i+j], i + j + 1
}
