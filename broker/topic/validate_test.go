package topic

import (
	"errors"
	"strings"
	"testing"
)

// refMatch is a deliberately naive matcher (split on '/', compare levels)
// that the index-walking Match, the Trie and the Index are checked against.
func refMatch(filter, name string) bool {
	if strings.HasPrefix(filter, SharePrefix) {
		parts := strings.SplitN(filter, "/", 3)
		if len(parts) < 3 {
			filter = ""
		} else {
			filter = parts[2]
		}
	}
	if strings.HasPrefix(name, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	f, n := strings.Split(filter, "/"), strings.Split(name, "/")
	for i, l := range f {
		if l == "#" {
			return true
		}
		if i >= len(n) || (l != "+" && l != n[i]) {
			return false
		}
	}
	return len(f) == len(n)
}

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want error
	}{
		{"a", nil},
		{"/", nil},
		{"a/b/c", nil},
		{"/finance", nil},
		{"a//b/", nil},
		{"$SYS/broker/clients", nil},
		{"sport/tennis/player1", nil},
		{"cim/u/alice", nil},
		{" ", nil},
		{"\x01ctl", nil}, // control characters are discouraged, not forbidden
		{"café/日本語", nil},
		{strings.Repeat("a", MaxLen), nil},

		{"", ErrEmpty},
		{strings.Repeat("a", MaxLen+1), ErrTooLong},
		{"a\x00b", ErrNullChar},
		{"\x00", ErrNullChar},
		{"sport/tennis/#", ErrWildcardInName},
		{"sport/+/player1", ErrWildcardInName},
		{"+", ErrWildcardInName},
		{"#", ErrWildcardInName},
		{"a+b", ErrWildcardInName},
		{"a#", ErrWildcardInName},
		{"\xff", ErrInvalidUTF8},
		{"a/\xc3", ErrInvalidUTF8},           // truncated sequence
		{"\xed\xa0\x80", ErrInvalidUTF8},     // UTF-16 surrogate U+D800
		{"\xc0\xaf", ErrInvalidUTF8},         // overlong '/'
		{"\xf4\x90\x80\x80", ErrInvalidUTF8}, // above U+10FFFF
	} {
		if got := ValidName(tc.name); !errors.Is(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("ValidName(%.40q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestValidFilter(t *testing.T) {
	for _, tc := range []struct {
		filter string
		want   error
	}{
		{"a", nil},
		{"#", nil},
		{"+", nil},
		{"/", nil},
		{"+/+", nil},
		{"/+", nil},
		{"+/#", nil},
		{"a//b", nil},
		{"sport/tennis/player1/#", nil},
		{"sport/tennis/#", nil},
		{"sport/+/player1", nil},
		{"+/tennis/#", nil},
		{"$SYS/#", nil},
		{"$SYS/monitor/+", nil},
		{"café/+/日本語", nil},
		{strings.Repeat("a", MaxLen), nil},
		{"$share", nil},      // no slash: an ordinary filter
		{"$sharefoo/x", nil}, // not the share prefix
		{"$share/g/a/b", nil},
		{"$share/g/#", nil},
		{"$share/g/+/x", nil},
		{"$share/g/$SYS/#", nil},
		{"$share/group-1/sport/tennis/+", nil},
		{"$share/g//", nil}, // inner filter "/" is two empty levels

		{"", ErrEmpty},
		{strings.Repeat("a", MaxLen+1), ErrTooLong},
		{"a\x00", ErrNullChar},
		{"$share/g/a\x00", ErrNullChar},
		{"\xff/#", ErrInvalidUTF8},
		{"sport/tennis#", ErrMultiLevel},
		{"sport/tennis/#/ranking", ErrMultiLevel},
		{"#/a", ErrMultiLevel},
		{"a/#b", ErrMultiLevel},
		{"##", ErrMultiLevel},
		{"#/", ErrMultiLevel},
		{"sport+", ErrSingleLevel},
		{"a/+b/c", ErrSingleLevel},
		{"++", ErrSingleLevel},
		{"+a", ErrSingleLevel},
		{"$share//a", ErrShareGroup},
		{"$share/", ErrShareGroup},
		{"$share/g+/a", ErrShareGroup},
		{"$share/g#/a", ErrShareGroup},
		{"$share/+/a", ErrShareGroup},
		{"$share/g", ErrShareNoFilter},
		{"$share/g/", ErrShareNoFilter},
		{"$share/g/a/#/b", ErrMultiLevel},
		{"$share/g/a+", ErrSingleLevel},
	} {
		if got := ValidFilter(tc.filter); !errors.Is(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("ValidFilter(%.40q) = %v, want %v", tc.filter, got, tc.want)
		}
	}
}

func TestParseShare(t *testing.T) {
	for _, tc := range []struct {
		filter, group, inner string
		shared               bool
	}{
		{"a/b", "", "a/b", false},
		{"$share", "", "$share", false},
		{"$SHARE/g/a", "", "$SHARE/g/a", false}, // the prefix is case-sensitive
		{"$share/g/a/b", "g", "a/b", true},
		{"$share/g/#", "g", "#", true},
		{"$share/g", "g", "", true},
		{"$share/g/", "g", "", true},
		{"$share//a", "", "a", true},
		{"$share/", "", "", true},
	} {
		g, in, sh := ParseShare(tc.filter)
		if g != tc.group || in != tc.inner || sh != tc.shared {
			t.Errorf("ParseShare(%q) = %q, %q, %v; want %q, %q, %v",
				tc.filter, g, in, sh, tc.group, tc.inner, tc.shared)
		}
	}
}

// matchCases are the examples of MQTT 5.0 §4.7 and some edges around them.
var matchCases = []struct {
	filter, name string
	want         bool
}{
	// §4.7.1.2 multi-level wildcard.
	{"sport/tennis/player1/#", "sport/tennis/player1", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
	{"sport/#", "sport", true},
	{"sport/tennis/#", "sport/tennis", true},
	{"sport/tennis/#", "sport/tennis/player1/ranking", true},
	{"sport/tennis/#", "sport/tennisplayer1", false},
	{"sport/tennis/#", "sport", false},
	{"#", "a", true},
	{"#", "/", true},
	{"#", "a/b/c", true},
	// §4.7.1.3 single-level wildcard.
	{"sport/tennis/+", "sport/tennis/player1", true},
	{"sport/tennis/+", "sport/tennis/player2", true},
	{"sport/tennis/+", "sport/tennis/player1/ranking", false},
	{"sport/+", "sport", false},
	{"sport/+", "sport/", true},
	{"+/+", "/finance", true},
	{"/+", "/finance", true},
	{"+", "/finance", false},
	{"+/tennis/#", "sport/tennis/player1", true},
	{"+/tennis/#", "sport/tennis", true},
	{"+/tennis/#", "sport/golf", false},
	{"sport/+/player1", "sport/tennis/player1", true},
	{"+/+/+", "//", true},
	{"+", "", true}, // not a valid name, but consistent: one empty level
	// §4.7.2 topics beginning with $.
	{"#", "$SYS/x", false},
	{"#", "$SYS", false},
	{"+/monitor/Clients", "$SYS/monitor/Clients", false},
	{"$SYS/#", "$SYS/monitor/Clients", true},
	{"$SYS/#", "$SYS/a", true},
	{"$SYS/#", "$SYS", true},
	{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
	{"+", "$a", false},
	{"a/+", "a/$b", true}, // the rule is about the first level only
	{"a/#", "a/$b", true},
	// §4.7.3 topic semantics: case-sensitive, exact, empty levels count.
	{"ACCOUNTS", "Accounts", false},
	{"a", "a", true},
	{"a", "b", false},
	{"a/b", "a", false},
	{"a", "a/b", false},
	{"a/b", "a/b/", false},
	{"a/b/#", "a/b/", true},
	{"/", "/", true},
	{"/", "", false},
	{"a//b", "a//b", true},
	{"a/+/b", "a//b", true},
	{"café/+", "café/x", true},
	// Shared subscriptions match through their inner filter.
	{"$share/g/#", "$SYS/x", false},
	{"$share/g/a/+", "a/b", true},
	{"$share/g/a/+", "a", false},
	{"$share/g/#", "a", true},
	{"$share/g/$SYS/#", "$SYS/x", true},
}

func TestMatch(t *testing.T) {
	for _, tc := range matchCases {
		if got := Match(tc.filter, tc.name); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.filter, tc.name, got, tc.want)
		}
		if ref := refMatch(tc.filter, tc.name); ref != tc.want {
			t.Errorf("refMatch(%q, %q) = %v, want %v (bad reference)", tc.filter, tc.name, ref, tc.want)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	sink := false
	for name, f := range map[string]func(){
		"Match":       func() { sink = Match("$share/g/sport/+/player1/#", "sport/tennis/player1/ranking") },
		"ValidName":   func() { sink = ValidName("sport/tennis/player1/日本語") == nil },
		"ValidFilter": func() { sink = ValidFilter("$share/g/sport/+/player1/#") == nil },
		"ParseShare":  func() { _, _, sink = ParseShare("$share/g/sport/+") },
		"BadFilter":   func() { sink = ValidFilter("sport/tennis#") == nil },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", name, n)
		}
	}
	_ = sink
}
